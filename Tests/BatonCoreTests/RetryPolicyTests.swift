import BatonCore
import Foundation
import Testing

private func isClose(_ a: Double, _ b: Double) -> Bool { abs(a - b) < 1e-9 }

@Test func delaysDoubleFromInitialUntilCappedAtMaxSec() {
    let policy = RetryPolicy.standard
    let delays = (1...12).map { policy.delay(afterAttempt: $0, jitterUnit: 0) }
    #expect(delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300])
}

@Test func delaysFollowACustomMultiplierAndInitialDelay() {
    let policy = RetryPolicy(maxAttempts: 10, initialSec: 0.5, multiplier: 3, maxSec: 20, jitter: 0)
    let delays = (1...5).map { policy.delay(afterAttempt: $0, jitterUnit: 0) }
    #expect(delays == [0.5, 1.5, 4.5, 13.5, 20])
}

@Test func multiplierOfOneGivesAConstantDelay() {
    let policy = RetryPolicy(maxAttempts: 10, initialSec: 7, multiplier: 1, maxSec: 60, jitter: 0)
    #expect((1...6).map { policy.delay(afterAttempt: $0, jitterUnit: 0) } == Array(repeating: 7, count: 6))
}

@Test func attemptZeroOrBelowCountsAsTheFirst() {
    #expect(RetryPolicy.standard.delay(afterAttempt: 0, jitterUnit: 0) == 1)
    #expect(RetryPolicy.standard.delay(afterAttempt: -3, jitterUnit: 0) == 1)
}

@Test func jitterScalesTheDelayByUpToItsFraction() {
    let bounds = RetryPolicy.standard.delayBounds(afterAttempt: 1)
    #expect(isClose(bounds.lowerBound, 0.8))
    #expect(isClose(bounds.upperBound, 1.2))
    let third = RetryPolicy.standard.delayBounds(afterAttempt: 3)
    #expect(isClose(third.lowerBound, 3.2))
    #expect(isClose(third.upperBound, 4.8))
}

@Test func jitterUnitOutsideMinusOneToOneIsClamped() {
    let policy = RetryPolicy.standard
    #expect(policy.delay(afterAttempt: 1, jitterUnit: 5) == policy.delay(afterAttempt: 1, jitterUnit: 1))
    #expect(policy.delay(afterAttempt: 1, jitterUnit: -5) == policy.delay(afterAttempt: 1, jitterUnit: -1))
}

@Test func delayNeverExceedsMaxSecEvenWithJitter() {
    let policy = RetryPolicy.standard
    // Attempt 9 has a base of 256 s; +20 % would be 307.2 s.
    #expect(policy.delay(afterAttempt: 9, jitterUnit: 1) == 300)
    #expect(policy.delay(afterAttempt: 50, jitterUnit: 1) == 300)
    #expect(policy.delay(afterAttempt: 10_000, jitterUnit: 1) == 300)
    #expect(isClose(policy.delay(afterAttempt: 50, jitterUnit: -1), 240))
}

@Test func randomJitterStaysWithinBoundsAndUnderMaxSec() {
    let policy = RetryPolicy(maxAttempts: 20, initialSec: 1, multiplier: 2, maxSec: 100, jitter: 0.5)
    for attempt in 1...20 {
        let bounds = policy.delayBounds(afterAttempt: attempt)
        for _ in 0..<50 {
            let delay = policy.delay(afterAttempt: attempt, jitterUnit: Double.random(in: -1...1))
            #expect(bounds.contains(delay))
            #expect(delay <= 100)
            #expect(delay >= 0)
        }
    }
}

@Test func zeroJitterGivesASinglePointRange() {
    let policy = RetryPolicy(maxAttempts: 3, initialSec: 2, multiplier: 2, maxSec: 60, jitter: 0)
    #expect(policy.delayBounds(afterAttempt: 2) == 4...4)
}

@Test func fullJitterCanReachZeroButNotBelow() {
    let policy = RetryPolicy(maxAttempts: 3, initialSec: 2, multiplier: 2, maxSec: 60, jitter: 1)
    #expect(policy.delayBounds(afterAttempt: 1) == 0...4)
}

@Test func attemptsAreLeftUntilMaxAttemptsIsReached() {
    let policy = RetryPolicy(maxAttempts: 3)
    #expect(policy.hasAttemptsLeft(after: 1))
    #expect(policy.hasAttemptsLeft(after: 2))
    #expect(!policy.hasAttemptsLeft(after: 3))
    #expect(!policy.hasAttemptsLeft(after: 4))
}

@Test func singleAttemptPolicyNeverRetries() {
    #expect(!RetryPolicy(maxAttempts: 1).hasAttemptsLeft(after: 1))
}

@Test func standardPolicyIsFiveAttemptsFromOneSecondDoublingToFiveMinutes() {
    #expect(RetryPolicy.standard == RetryPolicy(maxAttempts: 5, initialSec: 1, multiplier: 2, maxSec: 300, jitter: 0.2))
}

@Test func readFillsAbsentRetryFieldsFromTheDefaults() throws {
    let policy = try RetryPolicy.read(.object(["jitter": .double(0.5), "max_sec": .int(30)]),
                                      path: "retry", defaults: .standard)
    #expect(policy == RetryPolicy(maxAttempts: 5, initialSec: 1, multiplier: 2, maxSec: 30, jitter: 0.5))
}

@Test func initialSecAboveTheDefaultMaxSecBlamesInitialSec() {
    // initial_sec 500 is above the default max_sec of 300; max_sec was never written, so the
    // error names initial_sec and says where 300 came from.
    let error = #expect(throws: BatonError.self) {
        try RetryPolicy.read(.object(["initial_sec": .int(500)]), path: "retry", defaults: .standard)
    }
    #expect(error?.description == "retry.initial_sec: expected a value no larger than max_sec (300 by default), got 500")
}

@Test func maxSecBelowTheDefaultInitialSecBlamesMaxSec() {
    let defaults = RetryPolicy(initialSec: 10)
    let error = #expect(throws: BatonError.self) {
        try RetryPolicy.read(.object(["max_sec": .int(5)]), path: "retry", defaults: defaults)
    }
    #expect(error?.description == "retry.max_sec: expected a value no smaller than initial_sec (10 by default), got 5")
}

@Test func maxSecBelowAGivenInitialSecBlamesMaxSec() {
    let error = #expect(throws: BatonError.self) {
        try RetryPolicy.read(.object(["initial_sec": .int(10), "max_sec": .int(5)]), path: "retry", defaults: .standard)
    }
    #expect(error?.description == "retry.max_sec: expected a value no smaller than initial_sec (10), got 5")
}

@Test func jsonFormReadsBackToTheSamePolicy() throws {
    let policy = RetryPolicy(maxAttempts: 7, initialSec: 0.25, multiplier: 1.5, maxSec: 90, jitter: 0.1)
    #expect(try RetryPolicy.read(policy.json, path: "retry", defaults: .standard) == policy)
}

@Test func codableFormRoundTrips() throws {
    let policy = RetryPolicy(maxAttempts: 7, initialSec: 0.25, multiplier: 1.5, maxSec: 90, jitter: 0.1)
    let data = try JSONEncoder().encode(policy)
    #expect(try JSONDecoder().decode(RetryPolicy.self, from: data) == policy)
}
