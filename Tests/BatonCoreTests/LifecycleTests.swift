import BatonCore
import Foundation
import Testing

private let oneDay: Double = 86_400

// MARK: - After a failed attempt

@Test func fatalFailureDeadLettersWithItsReason() {
    let clock = ManualClock()
    let decision = Lifecycle.afterFailure(attempt: 1, policy: .standard, failure: .fatal("exit_code", "exited with status 1"),
                                          now: clock.now, deadline: clock.now.addingTimeInterval(oneDay), jitterUnit: 0)
    #expect(decision == .deadLetter(reason: "exit_code"))
}

@Test func transientFailureWithAttemptsLeftRetriesAfterTheBackoff() {
    let clock = ManualClock()
    clock.advance(by: 42)
    let now = clock.now
    let deadline = now.addingTimeInterval(oneDay)
    let failure = Failure.transient("exec_timeout", "timed out")
    #expect(Lifecycle.afterFailure(attempt: 1, policy: .standard, failure: failure, now: now, deadline: deadline, jitterUnit: 0)
        == .retry(at: now.addingTimeInterval(1), delaySec: 1))
    #expect(Lifecycle.afterFailure(attempt: 3, policy: .standard, failure: failure, now: now, deadline: deadline, jitterUnit: 0)
        == .retry(at: now.addingTimeInterval(4), delaySec: 4))
}

@Test func transientFailureBackoffIncludesJitter() throws {
    let clock = ManualClock()
    let decision = Lifecycle.afterFailure(attempt: 2, policy: .standard, failure: .transient("exit_code", "75"),
                                          now: clock.now, deadline: clock.now.addingTimeInterval(oneDay), jitterUnit: 1)
    guard case .retry(let at, let delay) = decision else {
        Issue.record("expected a retry, got \(decision)")
        return
    }
    #expect(abs(delay - 2.4) < 1e-9)
    #expect(at == clock.now.addingTimeInterval(delay))
}

@Test func transientFailureOnTheLastAttemptDeadLettersAsAttemptsExhausted() {
    let clock = ManualClock()
    let decision = Lifecycle.afterFailure(attempt: 5, policy: .standard, failure: .transient("exit_code", "75"),
                                          now: clock.now, deadline: clock.now.addingTimeInterval(oneDay), jitterUnit: 0)
    #expect(decision == .deadLetter(reason: "attempts_exhausted"))
}

@Test func retryAfterOverridesTheComputedBackoff() {
    let clock = ManualClock()
    let failure = Failure.transient("http_429", "slow down", retryAfterSec: 30)
    let decision = Lifecycle.afterFailure(attempt: 1, policy: .standard, failure: failure,
                                          now: clock.now, deadline: clock.now.addingTimeInterval(oneDay), jitterUnit: 1)
    #expect(decision == .retry(at: clock.now.addingTimeInterval(30), delaySec: 30))
}

@Test func retryAfterLargerThanMaxSecIsStillHonoured() {
    let clock = ManualClock()
    let failure = Failure.transient("http_503", "maintenance", retryAfterSec: 1000)
    let decision = Lifecycle.afterFailure(attempt: 1, policy: .standard, failure: failure,
                                          now: clock.now, deadline: clock.now.addingTimeInterval(oneDay), jitterUnit: 0)
    #expect(decision == .retry(at: clock.now.addingTimeInterval(1000), delaySec: 1000))
}

@Test func negativeRetryAfterRetriesAtOnce() {
    let clock = ManualClock()
    let failure = Failure.transient("http_429", "slow down", retryAfterSec: -5)
    let decision = Lifecycle.afterFailure(attempt: 1, policy: .standard, failure: failure,
                                          now: clock.now, deadline: clock.now.addingTimeInterval(oneDay), jitterUnit: 0)
    #expect(decision == .retry(at: clock.now, delaySec: 0))
}

@Test func retryAfterDoesNotGrantAttemptsBeyondMaxAttempts() {
    let clock = ManualClock()
    let failure = Failure.transient("http_429", "slow down", retryAfterSec: 1)
    let decision = Lifecycle.afterFailure(attempt: 5, policy: .standard, failure: failure,
                                          now: clock.now, deadline: clock.now.addingTimeInterval(oneDay), jitterUnit: 0)
    #expect(decision == .deadLetter(reason: "attempts_exhausted"))
}

@Test func retryThatWouldLandPastTheTTLExpiresTheJob() {
    let clock = ManualClock()
    let policy = RetryPolicy(maxAttempts: 10, jitter: 0)
    // Attempt 5 backs off 16 s, past a deadline 10 s away.
    let decision = Lifecycle.afterFailure(attempt: 5, policy: policy, failure: .transient("exit_code", "75"),
                                          now: clock.now, deadline: clock.now.addingTimeInterval(10), jitterUnit: 0)
    #expect(decision == .expire(reason: "ttl"))
}

@Test func retryLandingExactlyOnTheTTLDeadlineExpires() {
    let clock = ManualClock()
    let decision = Lifecycle.afterFailure(attempt: 1, policy: .standard, failure: .transient("exit_code", "75"),
                                          now: clock.now, deadline: clock.now.addingTimeInterval(1), jitterUnit: 0)
    #expect(decision == .expire(reason: "ttl"))
}

@Test func retryAfterPastTheTTLExpiresTheJob() {
    let clock = ManualClock()
    let failure = Failure.transient("http_503", "later", retryAfterSec: 3600)
    let decision = Lifecycle.afterFailure(attempt: 1, policy: .standard, failure: failure,
                                          now: clock.now, deadline: clock.now.addingTimeInterval(600), jitterUnit: 0)
    #expect(decision == .expire(reason: "ttl"))
}

@Test func cancelledFailureCancelsEvenOnTheLastAttempt() {
    let clock = ManualClock()
    let failure = Failure(.cancelled, reason: "cancelled", message: "operator")
    for attempt in [1, 5] {
        let decision = Lifecycle.afterFailure(attempt: attempt, policy: .standard, failure: failure,
                                              now: clock.now, deadline: clock.now.addingTimeInterval(oneDay), jitterUnit: 0)
        #expect(decision == .cancel)
    }
}

// MARK: - After a lease expired

@Test func expiredLeaseWithAttemptsLeftRequeuesAtOnce() {
    let clock = ManualClock()
    clock.advance(by: 90)
    let decision = Lifecycle.afterLeaseExpired(attempt: 2, policy: .standard, now: clock.now,
                                               deadline: clock.now.addingTimeInterval(oneDay))
    #expect(decision == .retry(at: clock.now, delaySec: 0))
}

@Test func expiredLeaseOnTheLastAttemptDeadLettersAsLeaseExpired() {
    let clock = ManualClock()
    let decision = Lifecycle.afterLeaseExpired(attempt: 5, policy: .standard, now: clock.now,
                                               deadline: clock.now.addingTimeInterval(oneDay))
    #expect(decision == .deadLetter(reason: "lease_expired"))
}

@Test func expiredLeasePastTheTTLExpiresTheJob() {
    let clock = ManualClock()
    let enqueuedAt = clock.now
    clock.advance(by: 3600)
    let decision = Lifecycle.afterLeaseExpired(attempt: 1, policy: .standard, now: clock.now,
                                               deadline: enqueuedAt.addingTimeInterval(3600))
    #expect(decision == .expire(reason: "ttl"))
}

// MARK: - Expiry of waiting jobs

@Test func queueTimeoutExpiresAJobNeverClaimed() {
    let clock = ManualClock()
    let enqueuedAt = clock.now
    func reason() -> String? {
        Lifecycle.expiryReason(enqueuedAt: enqueuedAt, queueTimeoutSec: 60, ttlSec: 3600, everClaimed: false, now: clock.now)
    }
    #expect(reason() == nil)
    clock.advance(by: 59)
    #expect(reason() == nil)
    clock.advance(by: 1)
    #expect(reason() == "queue_timeout")
    clock.advance(by: 3540)
    #expect(reason() == "ttl")
}

@Test func queueTimeoutNoLongerAppliesOnceClaimed() {
    let clock = ManualClock()
    let enqueuedAt = clock.now
    func reason() -> String? {
        Lifecycle.expiryReason(enqueuedAt: enqueuedAt, queueTimeoutSec: 60, ttlSec: 3600, everClaimed: true, now: clock.now)
    }
    clock.advance(by: 60)
    #expect(reason() == nil)
    clock.advance(by: 3539)
    #expect(reason() == nil)
    clock.advance(by: 1)
    #expect(reason() == "ttl")
}

@Test func withoutQueueTimeoutOnlyTheTTLExpires() {
    let clock = ManualClock()
    let enqueuedAt = clock.now
    clock.advance(by: 3599)
    #expect(Lifecycle.expiryReason(enqueuedAt: enqueuedAt, queueTimeoutSec: nil, ttlSec: 3600,
                                   everClaimed: false, now: clock.now) == nil)
    clock.advance(by: 1)
    #expect(Lifecycle.expiryReason(enqueuedAt: enqueuedAt, queueTimeoutSec: nil, ttlSec: 3600,
                                   everClaimed: false, now: clock.now) == "ttl")
}

@Test func claimDeadlineIsTheQueueTimeoutBeforeTheFirstClaim() {
    let enqueuedAt = ManualClock().now
    #expect(Lifecycle.claimDeadline(enqueuedAt: enqueuedAt, queueTimeoutSec: 60, ttlSec: 3600, everClaimed: false)
        == enqueuedAt.addingTimeInterval(60))
}

@Test func claimDeadlineIsTheTTLAfterTheFirstClaim() {
    let enqueuedAt = ManualClock().now
    #expect(Lifecycle.claimDeadline(enqueuedAt: enqueuedAt, queueTimeoutSec: 60, ttlSec: 3600, everClaimed: true)
        == enqueuedAt.addingTimeInterval(3600))
}

@Test func claimDeadlineNeverPassesTheTTL() {
    let enqueuedAt = ManualClock().now
    #expect(Lifecycle.claimDeadline(enqueuedAt: enqueuedAt, queueTimeoutSec: 7200, ttlSec: 3600, everClaimed: false)
        == enqueuedAt.addingTimeInterval(3600))
    #expect(Lifecycle.claimDeadline(enqueuedAt: enqueuedAt, queueTimeoutSec: nil, ttlSec: 3600, everClaimed: false)
        == enqueuedAt.addingTimeInterval(3600))
}

// MARK: - State transitions

struct Move: Sendable, CustomTestStringConvertible {
    let from: JobState
    let to: JobState
    let allowed: Bool

    init(_ from: JobState, _ to: JobState, _ allowed: Bool) {
        self.from = from
        self.to = to
        self.allowed = allowed
    }

    var testDescription: String { "\(from.rawValue) → \(to.rawValue): \(allowed ? "allowed" : "refused")" }
}

private let moves: [Move] = [
    Move(.queued, .running, true),
    Move(.queued, .cancelled, true),
    Move(.queued, .expired, true),
    Move(.running, .succeeded, true),
    Move(.running, .retryWait, true),
    Move(.running, .queued, true),
    Move(.running, .dead, true),
    Move(.running, .cancelled, true),
    Move(.retryWait, .queued, true),
    Move(.retryWait, .running, true),
    Move(.retryWait, .expired, true),
    Move(.dead, .queued, true),
    Move(.expired, .queued, true),
    Move(.cancelled, .queued, true),
    Move(.queued, .succeeded, false),
    Move(.queued, .dead, false),
    Move(.queued, .retryWait, false),
    Move(.retryWait, .succeeded, false),
    Move(.succeeded, .queued, false),
    Move(.succeeded, .running, false),
    Move(.dead, .running, false),
    Move(.cancelled, .running, false),
    Move(.expired, .running, false),
    Move(.running, .running, false),
]

@Test(arguments: moves)
func stateMachineAllowsOnlyTheDocumentedTransitions(_ move: Move) {
    #expect(move.from.canMove(to: move.to) == move.allowed)
}

@Test func succeededIsFinal() {
    #expect(JobState.allCases.allSatisfy { !JobState.succeeded.canMove(to: $0) })
}

@Test func terminalStatesAreTheFourEndings() {
    #expect(Set(JobState.allCases.filter(\.isTerminal)) == [.succeeded, .dead, .cancelled, .expired])
    #expect(Set(JobState.deadLetterStates) == [.dead, .expired])
}

@Test func stateParsesFromItsStoredName() throws {
    #expect(try JobState.parse("retry_wait") == .retryWait)
    #expect(try JobState.parse("queued") == .queued)
}

@Test func unknownStateNameIsRefusedListingTheStates() {
    let error = #expect(throws: BatonError.self) { try JobState.parse("done") }
    #expect(error?.field == "state")
    #expect(error?.message.contains("retry_wait") == true)
    #expect(error?.message.contains(#""done""#) == true)
}

// MARK: - Exit codes and heartbeats

@Test func exitZeroIsSuccess() {
    #expect(Lifecycle.classifyExit(code: 0, transientCodes: [1]) == nil)
}

@Test func exitSeventyFiveIsTransient() {
    let failure = Lifecycle.classifyExit(code: 75, transientCodes: [])
    #expect(failure?.errorClass == .transient)
    #expect(failure?.reason == "exit_code")
    #expect(failure?.message.contains("75") == true)
}

@Test func listedTransientExitCodeIsTransient() {
    #expect(Lifecycle.classifyExit(code: 42, transientCodes: [6, 42])?.errorClass == .transient)
}

@Test func otherExitCodesAreFatal() {
    #expect(Lifecycle.classifyExit(code: 1, transientCodes: [42])?.errorClass == .fatal)
    #expect(Lifecycle.classifyExit(code: 137, transientCodes: [42])?.errorClass == .fatal)
}

@Test func heartbeatsThreeTimesPerLease() {
    #expect(Lifecycle.heartbeatInterval(leaseTTLSec: 60) == 20)
    #expect(Lifecycle.heartbeatInterval(leaseTTLSec: 30) == 10)
    #expect(abs(Lifecycle.heartbeatInterval(leaseTTLSec: 1) - 1.0 / 3) < 1e-9)
}

@Test func heartbeatIntervalHasAFloor() {
    #expect(Lifecycle.heartbeatInterval(leaseTTLSec: 0) == 0.2)
}

// MARK: - Clocks

@Test func manualClockMovesOnlyWhenTold() {
    let start = Date(timeIntervalSince1970: 1_000)
    let clock = ManualClock(start)
    let baton = clock.clock
    #expect(baton.now() == start)
    clock.advance(by: 2.5)
    #expect(baton.now() == start.addingTimeInterval(2.5))
    clock.set(start)
    #expect(clock.now == start)
}

@Test func epochMillisecondsRoundTrip() {
    let date = Date(epochMilliseconds: 1_700_000_000_123)
    #expect(date.epochMilliseconds == 1_700_000_000_123)
}
