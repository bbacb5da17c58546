import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let completionCases: [ConformanceCase] = [
        ConformanceCase("completingTheOnlyStageSucceedsTheJobAndKeepsTheReport") { h in
            let id = try await h.enqueue(h.spec())
            let lease = try await h.claimOne("node-a")
            h.clock.advance(by: 3)
            let report = AttemptReport(exitCode: 0, stdout: "built 3 targets", stderr: "warning: x", logPath: "/var/log/b.log")
            #expect(try await h.store.complete(lease, report: report) == .succeeded)

            let detail = try await h.detail(id)
            #expect(detail.job.state == .succeeded)
            #expect(ms(detail.job.finishedAt) == ms(h.clock.now))
            #expect(detail.job.leaseNode == nil)
            #expect(detail.events.map(\.kind) == [.enqueued, .claimed, .completed])
            #expect(detail.events.last?.nodeID == "node-a")
            let attempt = try #require(detail.attempts.first)
            #expect(detail.attempts.count == 1)
            #expect(attempt.outcome == .succeeded)
            #expect(ms(attempt.finishedAt) == ms(h.clock.now))
            #expect(attempt.report == report)
        },

        ConformanceCase("completingAStageOfAChainHandsOverTheNextStageUnderTheSameFence") { h in
            let id = try await h.enqueue(h.spec(stages: 3, leaseTTLSec: 30))
            let first = try await h.claimOne("node-a")
            h.clock.advance(by: 10)
            let second = try #require(try await h.store.complete(first).nextLease)
            #expect(second.stageIndex == 1)
            #expect(second.fence == first.fence)
            #expect(second.attempt == first.attempt)
            #expect(second.nodeID == "node-a")
            #expect(second.stage.name == "s2")
            #expect(ms(second.expiresAt) == ms(h.clock.now.addingTimeInterval(30)))
            let midway = try await h.record(id)
            #expect(midway.state == .running)
            #expect(midway.stageIndex == 1)
            #expect(midway.lastSuccessfulStage == "s1")

            let third = try #require(try await h.store.complete(second).nextLease)
            #expect(third.stageIndex == 2)
            #expect(third.fence == first.fence)
            #expect(try await h.store.complete(third) == .succeeded)

            #expect(try await h.record(id).state == .succeeded)
            let events = try await h.store.events(jobID: id)
            #expect(events.map(\.kind) == [.enqueued, .claimed, .stageCompleted, .stageCompleted, .completed])
            #expect(events.filter { $0.kind == .stageCompleted }.map(\.stage) == ["s1", "s2"])
            let attempts = try await h.detail(id).attempts
            #expect(attempts.map(\.stageName) == ["s1", "s2", "s3"])
            #expect(attempts.allSatisfy { $0.outcome == .succeeded })
        },

        ConformanceCase("staleCompletionIsRefusedAndLoggedWhileTheCurrentHolderCompletes") { h in
            let id = try await h.enqueue(h.spec())
            let stale = try await h.claimAndLose("node-a")
            let current = try await h.claimOne("node-b")
            #expect(current.fence > stale.fence)

            let refused = try await h.store.complete(stale)
            #expect(refused.refusal?.code == .staleLease)
            let afterRefusal = try await h.record(id)
            #expect(afterRefusal.state == .running)
            #expect(afterRefusal.leaseNode == "node-b")
            let refusals = try await h.events(id, .staleWriteRefused)
            #expect(refusals.count == 1)
            #expect(refusals.first?.nodeID == "node-a")

            #expect(try await h.store.complete(current) == .succeeded)
            #expect(try await h.record(id).state == .succeeded)
            let completed = try await h.events(id, .completed)
            #expect(completed.count == 1)
            #expect(completed.first?.nodeID == "node-b")
        },

        ConformanceCase("batchCompletionAnswersEachLeaseOnItsOwn") { h in
            try await h.enqueue(h.spec(id: "lost-one"))
            let stale = try await h.claimAndLose("node-a")
            _ = try await h.claimOne("node-b")
            try await h.enqueue(h.spec(id: "fine-one"))
            let fine = try await h.claimOne("node-a")
            let results = try await h.store.complete([Completion(lease: stale), Completion(lease: fine)])
            #expect(results.count == 2)
            #expect(results.first?.refusal?.code == .staleLease)
            #expect(results.last == .succeeded)
            #expect(try await h.record("lost-one").state == .running)
            #expect(try await h.record("fine-one").state == .succeeded)
        },

        ConformanceCase("secondCompletionOfTheSameStageIsRefused") { h in
            let id = try await h.enqueue(h.spec(stages: 2))
            let first = try await h.claimOne("node-a")
            let second = try #require(try await h.store.complete(first).nextLease)
            #expect(try await h.store.complete(first).refusal?.code == .staleLease)
            #expect(try await h.record(id).stageIndex == 1)
            #expect(try await h.store.complete(second) == .succeeded)
            #expect(try await h.store.complete(second).refusal?.code == .staleLease)
            #expect(try await h.events(id, .stageCompleted).count == 1)
            #expect(try await h.events(id, .completed).count == 1)
            #expect(try await h.record(id).state == .succeeded)
        },

        ConformanceCase("retriesAndRescuesOfAChainResumeAtItsUnfinishedStage") { h in
            let id = try await h.enqueue(h.spec(stages: 3, retry: RetryPolicy(maxAttempts: 5, initialSec: 1, jitter: 0)))
            let first = try await h.claimOne("node-a")
            let onS2 = try #require(try await h.store.complete(first).nextLease)
            // Node a dies on s2: the rescued job resumes at s2 on node b.
            h.expire(onS2)
            _ = try await h.store.rescue()
            let rescued = try await h.claimOne("node-b")
            #expect(rescued.stageIndex == 1)
            // s2 fails transiently: the retry resumes at s2 again.
            let result = try await h.store.fail(rescued, failure: .transient("exit_code", "75"), report: .empty)
            guard case .retrying(let at, _) = result else {
                Issue.record("expected a retry, got \(result)")
                return
            }
            h.clock.set(at)
            let retried = try await h.claimOne("node-c")
            #expect(retried.stageIndex == 1)
            #expect(retried.attempt == 3)
            let onS3 = try #require(try await h.store.complete(retried).nextLease)
            #expect(try await h.store.complete(onS3) == .succeeded)
            let ran = try await h.events(id, .stageCompleted).compactMap(\.stage)
            #expect(ran == ["s1", "s2"], "a finished stage must never run again")
        },
    ]
}
