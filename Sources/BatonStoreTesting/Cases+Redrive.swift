import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let redriveCases: [ConformanceCase] = [
        ConformanceCase("redriveQueuesADeadJobWithAFreshAttemptBudget") { h in
            let id = try await h.enqueue(h.spec(retry: RetryPolicy(maxAttempts: 2, initialSec: 1, jitter: 0)))
            let transient = Failure.transient("exit_code", "exited with status 75")
            for _ in 1...2 {
                let lease = try await h.claimOne("node-a")
                if case .retrying(let at, _) = try await h.store.fail(lease, failure: transient, report: .empty) {
                    h.clock.set(at)
                }
            }
            #expect(try await h.record(id).state == .dead)

            h.clock.advance(by: 10)
            let redriven = try await h.store.redrive(jobID: id)
            #expect(redriven.state == .queued)
            #expect(redriven.attempts == 0)
            #expect(redriven.finishedAt == nil)
            #expect(try await h.store.events(jobID: id).last?.kind == .redriven)

            let first = try await h.claimOne("node-b")
            #expect(first.attempt == 1)
            #expect(first.fence == 3)
            // A fresh budget: the first failure after the redrive is retried, not dead-lettered.
            let result = try await h.store.fail(first, failure: transient, report: .empty)
            guard case .retrying(let at, _) = result else {
                Issue.record("expected a retry after the redrive, got \(result)")
                return
            }
            h.clock.set(at)
            _ = try await h.runToSuccess("node-b")
            #expect(try await h.record(id).state == .succeeded)
        },

        ConformanceCase("redriveResumesAtTheStageThatFailed") { h in
            let id = try await h.enqueue(h.spec(stages: 3))
            let first = try await h.claimOne("node-a")
            let second = try #require(try await h.store.complete(first).nextLease)
            _ = try await h.store.fail(second, failure: .fatal("exit_code", "exited with status 2"), report: .empty)
            let dead = try await h.record(id)
            #expect(dead.state == .dead)
            #expect(dead.stageIndex == 1)
            #expect(dead.lastSuccessfulStage == "s1")

            _ = try await h.store.redrive(jobID: id)
            let resumed = try await h.claimOne("node-b")
            #expect(resumed.stageIndex == 1)
            #expect(resumed.stage.name == "s2")
            let last = try #require(try await h.store.complete(resumed).nextLease)
            #expect(try await h.store.complete(last) == .succeeded)
            let ran = try await h.events(id, .stageCompleted).compactMap(\.stage)
            #expect(ran == ["s1", "s2"], "s1 must not run again after the redrive")
        },

        ConformanceCase("redriveOfAJobThatIsNotADeadLetterThrowsInvalidState") { h in
            let queued = try await h.enqueue(h.spec(id: "queued"))
            await expectError(.invalidState, "redrive of a queued job") {
                _ = try await h.store.redrive(jobID: queued)
            }
            _ = try await h.claimOne("node-a")
            await expectError(.invalidState, "redrive of a running job") {
                _ = try await h.store.redrive(jobID: queued)
            }
            try await h.enqueue(h.spec(id: "done"))
            _ = try await h.runToSuccess("node-a")
            await expectError(.invalidState, "redrive of a succeeded job") {
                _ = try await h.store.redrive(jobID: "done")
            }
            await expectError(.notFound, "redrive of an unknown job") {
                _ = try await h.store.redrive(jobID: "no-such-job")
            }
            #expect(try await h.record(queued).state == .running)
            #expect(try await h.record("done").state == .succeeded)
        },

        ConformanceCase("redriveAllRedrivesOnlyDeadAndExpiredJobs") { h in
            try await h.enqueue(h.spec(id: "will-die"))
            let dying = try await h.claimOne("node-a")
            _ = try await h.store.fail(dying, failure: .fatal("exit_code", "1"), report: .empty)
            try await h.enqueue(h.spec(id: "will-succeed"))
            _ = try await h.runToSuccess("node-a")
            try await h.enqueue(h.spec(id: "will-expire", queueTimeoutSec: 10))
            h.clock.advance(by: 11)
            _ = try await h.store.rescue()
            try await h.enqueue(h.spec(id: "cancelled"))
            _ = try await h.store.cancel(jobID: "cancelled", reason: "no")
            try await h.enqueue(h.spec(id: "waiting"))

            let redriven = try await h.store.redriveAll()
            #expect(Set(redriven) == ["will-die", "will-expire"])
            #expect(redriven.count == 2)
            #expect(try await h.record("will-die").state == .queued)
            #expect(try await h.record("will-expire").state == .queued)
            #expect(try await h.record("will-succeed").state == .succeeded)
            #expect(try await h.record("cancelled").state == .cancelled)
            #expect(try await h.record("waiting").state == .queued)
            #expect(try await h.events("waiting", .redriven).isEmpty)
            #expect(try await h.store.redriveAll().isEmpty)
        },
    ]
}
