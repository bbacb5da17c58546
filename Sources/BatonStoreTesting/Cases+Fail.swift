import BatonCore
import BatonStore
import Foundation
import Testing

/// Stores keep times in milliseconds: a delay read back may differ from the one decided by
/// less than this.
let storedTimeTolerance = 0.002

extension ClosedRange<Double> {
    func containsWithinStoredPrecision(_ value: Double) -> Bool {
        value >= lowerBound - storedTimeTolerance && value <= upperBound + storedTimeTolerance
    }
}

extension JobStoreConformance {
    static let failureCases: [ConformanceCase] = [
        ConformanceCase("transientFailureWithAttemptsLeftWaitsABackoffWithinThePolicyBounds") { h in
            let policy = RetryPolicy(maxAttempts: 5, initialSec: 10, multiplier: 2, maxSec: 300, jitter: 0.5)
            let id = try await h.enqueue(h.spec(retry: policy))
            var lease = try await h.claimOne("node-a")
            var total = 0.0
            for attempt in 1...2 {
                h.clock.advance(by: 2)
                let result = try await h.store.fail(lease, failure: .transient("exit_code", "exited with status 75"),
                                                    report: AttemptReport(exitCode: 75))
                guard case .retrying(let at, let delay) = result else {
                    Issue.record("attempt \(attempt): expected a retry, got \(result)")
                    return
                }
                #expect(policy.delayBounds(afterAttempt: attempt).containsWithinStoredPrecision(delay),
                        "attempt \(attempt): delay \(delay) outside \(policy.delayBounds(afterAttempt: attempt))")
                #expect(abs(at.timeIntervalSince(h.clock.now) - delay) < storedTimeTolerance)
                total += delay

                let job = try await h.record(id)
                #expect(job.state == .retryWait)
                #expect(abs(job.runAt.timeIntervalSince(at)) < storedTimeTolerance)
                #expect(job.retryCount == attempt)
                #expect(abs(job.cumulativeBackoffSec - total) < storedTimeTolerance * Double(attempt))
                #expect(job.leaseNode == nil)
                #expect(job.lastErrorClass == .transient)
                #expect(job.lastReason == "exit_code")
                let retried = try #require(try await h.events(id, .retried).last)
                #expect(retried.detail["reason"] == "exit_code")
                let loggedDelay = try #require(retried.detail["delay_sec"].flatMap(Double.init))
                #expect(abs(loggedDelay - delay) < storedTimeTolerance)

                h.clock.set(job.runAt)
                lease = try await h.claimOne("node-a")
                #expect(lease.attempt == attempt + 1)
            }
        },

        ConformanceCase("retryAfterOverridesTheComputedBackoffExactly") { h in
            let id = try await h.enqueue(h.spec(retry: RetryPolicy(maxAttempts: 5, initialSec: 1, jitter: 0.2)))
            let lease = try await h.claimOne("node-a")
            let failure = Failure.transient("http_429", "rate limited", retryAfterSec: 42)
            let result = try await h.store.fail(lease, failure: failure, report: .empty)
            let at = h.clock.now.addingTimeInterval(42)
            guard case .retrying(let retryAt, let delay) = result else {
                Issue.record("expected a retry, got \(result)")
                return
            }
            #expect(delay == 42)
            #expect(ms(retryAt) == ms(at))
            let job = try await h.record(id)
            #expect(ms(job.runAt) == ms(at))
            #expect(abs(job.cumulativeBackoffSec - 42) < storedTimeTolerance)
        },

        ConformanceCase("fatalFailureDeadLettersAtOnceAndKeepsTheAttemptReport") { h in
            let id = try await h.enqueue(h.spec(retry: RetryPolicy(maxAttempts: 5)))
            let lease = try await h.claimOne("node-a")
            h.clock.advance(by: 4)
            let report = AttemptReport(exitCode: 1, stdout: "step 3", stderr: "HTTP 422", logPath: "/logs/1.log")
            let result = try await h.store.fail(lease, failure: .fatal("http_422", "unprocessable entity"), report: report)
            #expect(result == .deadLettered(reason: "http_422"))

            let detail = try await h.detail(id)
            #expect(detail.job.state == .dead)
            #expect(detail.job.attempts == 1)
            #expect(detail.job.lastErrorClass == .fatal)
            #expect(detail.job.lastReason == "http_422")
            #expect(detail.job.lastMessage == "unprocessable entity")
            #expect(ms(detail.job.finishedAt) == ms(h.clock.now))
            #expect(detail.job.leaseNode == nil)
            #expect(detail.events.map(\.kind).contains(.deadLettered))
            let attempt = try #require(detail.attempts.first)
            #expect(attempt.outcome == .failed)
            #expect(attempt.errorClass == .fatal)
            #expect(attempt.reason == "http_422")
            #expect(attempt.message == "unprocessable entity")
            #expect(attempt.report == report)
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-b", limit: 1)).isEmpty)
        },

        ConformanceCase("transientFailureOnTheLastAttemptDeadLettersAsAttemptsExhausted") { h in
            let id = try await h.enqueue(h.spec(retry: RetryPolicy(maxAttempts: 2, initialSec: 1, jitter: 0)))
            let first = try await h.claimOne("node-a")
            let retry = try await h.store.fail(first, failure: .transient("exec_timeout", "timed out"), report: .empty)
            guard case .retrying(let at, _) = retry else {
                Issue.record("expected a retry after attempt 1, got \(retry)")
                return
            }
            h.clock.set(at)
            let second = try await h.claimOne("node-b")
            #expect(second.attempt == 2)
            let result = try await h.store.fail(second, failure: .transient("exec_timeout", "timed out"), report: .empty)
            #expect(result == .deadLettered(reason: "attempts_exhausted"))
            let job = try await h.record(id)
            #expect(job.state == .dead)
            #expect(job.attempts == 2)
            #expect(job.lastReason == "attempts_exhausted")
        },

        ConformanceCase("retryThatWouldOutliveTheTTLExpiresTheJobInstead") { h in
            let id = try await h.enqueue(h.spec(ttlSec: 100))
            let lease = try await h.claimOne("node-a")
            let failure = Failure.transient("http_503", "unavailable", retryAfterSec: 200)
            #expect(try await h.store.fail(lease, failure: failure, report: .empty) == .expired(reason: "ttl"))
            let job = try await h.record(id)
            #expect(job.state == .expired)
            #expect(job.lastReason == "ttl")
            #expect(job.finishedAt != nil)
        },

        ConformanceCase("failUnderAStaleLeaseThrowsStaleLeaseAndChangesNothing") { h in
            let id = try await h.enqueue(h.spec())
            let stale = try await h.claimAndLose("node-a")
            _ = try await h.claimOne("node-b")
            await expectError(.staleLease, "fail under node-a's lost lease") {
                _ = try await h.store.fail(stale, failure: .fatal("exit_code", "1"), report: .empty)
            }
            let job = try await h.record(id)
            #expect(job.state == .running)
            #expect(job.leaseNode == "node-b")
            #expect(job.retryCount == 0)
            #expect(try await h.events(id, .deadLettered).isEmpty)
        },
    ]
}
