import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let fencingCases: [ConformanceCase] = [
        ConformanceCase("everyWriteUnderARevokedLeaseIsRefused") { h in
            let id = try await h.enqueue(h.spec())
            let old = try await h.claimOne("node-a")
            _ = try await h.store.cancel(jobID: id, reason: "operator")
            _ = try await h.store.redrive(jobID: id)
            let current = try await h.claimOne("node-b")
            #expect(current.fence > old.fence)

            #expect(try await h.store.heartbeat([old]).first?.isLost == true)
            #expect(try await h.store.complete(old).refusal?.code == .staleLease)
            await expectError(.staleLease, "fail under the revoked lease") {
                _ = try await h.store.fail(old, failure: .fatal("exit_code", "1"), report: .empty)
            }
            await expectError(.staleLease, "release under the revoked lease") {
                try await h.store.release(old, reason: "shutdown")
            }

            let job = try await h.record(id)
            #expect(job.state == .running)
            #expect(job.leaseNode == "node-b")
            #expect(job.fence == current.fence)
            #expect(job.attempts == 1)
            #expect(try await h.store.heartbeat([current]).first?.isLost == false)
            #expect(try await h.store.complete(current) == .succeeded)
            let completed = try await h.events(id, .completed)
            #expect(completed.map(\.nodeID) == ["node-b"])
        },

        ConformanceCase("fenceGrowsWithEveryClaimWhateverEndedThePreviousOne") { h in
            let id = try await h.enqueue(h.spec())
            var fences: [Int64] = []
            let released = try await h.claimOne("node-a")
            fences.append(released.fence)
            try await h.store.release(released, reason: "reload")
            fences.append(try await h.claimAndLose("node-b").fence)
            let cancelled = try await h.claimOne("node-c")
            fences.append(cancelled.fence)
            _ = try await h.store.cancel(jobID: id, reason: "operator")
            _ = try await h.store.redrive(jobID: id)
            let last = try await h.claimOne("node-d")
            fences.append(last.fence)
            #expect(fences == [1, 2, 3, 4])
            #expect(try await h.record(id).fence == 4)
        },
    ]
}
