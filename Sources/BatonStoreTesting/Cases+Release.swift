import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let releaseCases: [ConformanceCase] = [
        ConformanceCase("releaseHandsTheJobBackWithoutCountingTheAttempt") { h in
            let id = try await h.enqueue(h.spec())
            let lease = try await h.claimOne("node-a")
            h.clock.advance(by: 5)
            try await h.store.release(lease, reason: "shutdown")

            let detail = try await h.detail(id)
            #expect(detail.job.state == .queued)
            #expect(detail.job.attempts == 0)
            #expect(detail.job.leaseNode == nil)
            #expect(detail.job.retryCount == 0)
            let released = try #require(detail.events.last)
            #expect(released.kind == .released)
            #expect(released.nodeID == "node-a")
            #expect(detail.attempts.first?.outcome == .released)

            let next = try await h.claimOne("node-b")
            #expect(next.jobID == id)
            #expect(next.attempt == 1)
            #expect(next.fence == 2)
        },

        ConformanceCase("releaseUnderAStaleLeaseThrowsStaleLease") { h in
            let id = try await h.enqueue(h.spec())
            let lease = try await h.claimOne("node-a")
            try await h.store.release(lease, reason: "reload")
            await expectError(.staleLease, "a second release of the same lease") {
                try await h.store.release(lease, reason: "reload")
            }
            let current = try await h.claimOne("node-b")
            await expectError(.staleLease, "release under node-a's old lease") {
                try await h.store.release(lease, reason: "reload")
            }
            let job = try await h.record(id)
            #expect(job.state == .running)
            #expect(job.leaseNode == "node-b")
            #expect(job.fence == current.fence)
            #expect(job.attempts == 1)
        },
    ]
}
