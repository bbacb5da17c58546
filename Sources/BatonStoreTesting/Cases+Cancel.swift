import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let cancelCases: [ConformanceCase] = [
        ConformanceCase("cancelOfAQueuedJobCancelsItForGood") { h in
            let id = try await h.enqueue(h.spec())
            h.clock.advance(by: 2)
            let returned = try await h.store.cancel(jobID: id, reason: "operator changed their mind")
            #expect(returned.id == id)
            #expect(returned.state == .cancelled)
            let job = try await h.record(id)
            #expect(job.state == .cancelled)
            #expect(ms(job.finishedAt) == ms(h.clock.now))
            let cancelled = try #require(try await h.store.events(jobID: id).last)
            #expect(cancelled.kind == .cancelled)
            #expect(cancelled.detail["reason"] == "operator changed their mind")
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-a", limit: 1)).isEmpty)
        },

        ConformanceCase("cancelOfARunningJobRevokesItsLease") { h in
            let id = try await h.enqueue(h.spec())
            let lease = try await h.claimOne("node-a")
            let returned = try await h.store.cancel(jobID: id, reason: "stop")
            #expect(returned.state == .cancelled)
            #expect(returned.leaseNode == nil)
            #expect(try await h.store.heartbeat([lease]).first?.isLost == true)
            #expect(try await h.store.complete(lease).refusal?.code == .staleLease)
            let detail = try await h.detail(id)
            #expect(detail.job.state == .cancelled)
            #expect(detail.attempts.first?.outcome == .cancelled)
            #expect(!detail.events.map(\.kind).contains(.completed))
            #expect(detail.events.map(\.kind).contains(.staleWriteRefused))
        },

        ConformanceCase("cancelOfAFinishedJobThrowsInvalidState") { h in
            try await h.enqueue(h.spec(id: "done"))
            _ = try await h.runToSuccess("node-a")
            await expectError(.invalidState, "cancel of a succeeded job") {
                _ = try await h.store.cancel(jobID: "done", reason: "too late")
            }
            #expect(try await h.record("done").state == .succeeded)

            try await h.enqueue(h.spec(id: "already-cancelled"))
            _ = try await h.store.cancel(jobID: "already-cancelled", reason: "first")
            await expectError(.invalidState, "a second cancel") {
                _ = try await h.store.cancel(jobID: "already-cancelled", reason: "second")
            }
            #expect(try await h.events("already-cancelled", .cancelled).count == 1)
        },

        ConformanceCase("cancelOfAnUnknownJobThrowsNotFound") { h in
            await expectError(.notFound, "cancel of an unknown job") {
                _ = try await h.store.cancel(jobID: "no-such-job", reason: "x")
            }
        },
    ]
}
