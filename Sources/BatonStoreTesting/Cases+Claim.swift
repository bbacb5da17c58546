import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let claimCases: [ConformanceCase] = [
        ConformanceCase("claimLeasesAJobAtFenceOneAttemptOneUntilNowPlusLeaseTTL") { h in
            let spec = h.spec(leaseTTLSec: 30)
            try await h.enqueue(spec)
            h.clock.advance(by: 5)
            let lease = try await h.claimOne("node-a")
            #expect(lease.jobID == spec.id)
            #expect(lease.nodeID == "node-a")
            #expect(lease.fence == 1)
            #expect(lease.attempt == 1)
            #expect(lease.stageIndex == 0)
            #expect(ms(lease.expiresAt) == ms(h.clock.now.addingTimeInterval(30)))
            #expect(lease.spec == spec)

            let job = try await h.record(spec.id)
            #expect(job.state == .running)
            #expect(job.attempts == 1)
            #expect(job.fence == 1)
            #expect(job.leaseNode == "node-a")
            #expect(ms(job.leaseExpiresAt) == ms(lease.expiresAt))

            let detail = try await h.detail(spec.id)
            #expect(detail.events.map(\.kind) == [.enqueued, .claimed])
            let claimed = try #require(detail.events.last)
            #expect(claimed.nodeID == "node-a")
            #expect(claimed.fence == 1)
            #expect(claimed.attempt == 1)
            #expect(claimed.stage == "s1")
            let attempt = try #require(detail.attempts.first)
            #expect(detail.attempts.count == 1)
            #expect(attempt.outcome == .running)
            #expect(attempt.nodeID == "node-a")
            #expect(attempt.fence == 1)
            #expect(attempt.attempt == 1)
            #expect(attempt.stageName == "s1")
            #expect(ms(attempt.startedAt) == ms(h.clock.now))
        },

        ConformanceCase("claimRespectsItsLimit") { h in
            _ = try await h.store.enqueue((0..<5).map { i in h.spec(id: "limit-\(i)") })
            let request = { (limit: Int) in ClaimRequest(nodeID: "node-a", limit: limit) }
            #expect(try await h.store.claim(request(0)).isEmpty)
            #expect(try await h.store.claim(request(3)).count == 3)
            #expect(try await h.store.claim(request(10)).count == 2)
            #expect(try await h.store.claim(request(10)).isEmpty)
        },

        ConformanceCase("claimTakesHigherPriorityFirstThenOldestFirst") { h in
            for (id, priority) in [("low-old", 0), ("mid-old", 5), ("high", 10), ("low-new", 0), ("mid-new", 5)] {
                try await h.enqueue(h.spec(id: id, priority: priority))
                h.clock.advance(by: 1)
            }
            var order: [String] = []
            for _ in 0..<5 { order.append(try await h.claimOne("node-a").jobID) }
            #expect(order == ["high", "mid-old", "mid-new", "low-old", "low-new"])
        },

        ConformanceCase("concurrentClaimsNeverHandOutTheSameJobTwice") { h in
            let ids = (0..<20).map { i in "job-\(i)" }
            _ = try await h.store.enqueue(ids.map { h.spec(id: $0) })
            let store = h.store
            let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
                for node in 0..<10 {
                    group.addTask {
                        try await store.claim(ClaimRequest(nodeID: "node-\(node)", limit: 3)).map(\.jobID)
                    }
                }
                var all: [String] = []
                for try await batch in group { all += batch }
                return all
            }
            #expect(claimed.count == 20)
            #expect(Set(claimed) == Set(ids))
            #expect(try await h.store.claim(ClaimRequest(nodeID: "late", limit: 5)).isEmpty)
        },

        ConformanceCase("claimSkipsRetryWaitUntilItsBackoffElapsed") { h in
            let spec = h.spec(retry: RetryPolicy(maxAttempts: 3, initialSec: 10, jitter: 0))
            try await h.enqueue(spec)
            let first = try await h.claimOne("node-a")
            let result = try await h.store.fail(first, failure: .transient("exit_code", "75"), report: .empty)
            guard case .retrying(let at, _) = result else {
                Issue.record("expected a retry, got \(result)")
                return
            }
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-b", limit: 1)).isEmpty)
            h.clock.set(at.addingTimeInterval(-0.5))
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-b", limit: 1)).isEmpty)
            h.clock.set(at)
            let second = try await h.claimOne("node-b")
            #expect(second.jobID == spec.id)
            #expect(second.attempt == 2)
            #expect(second.fence == 2)
        },

        ConformanceCase("regionAffinityJobGoesOnlyToANodeInThatRegion") { h in
            try await h.enqueue(h.spec(id: "eu-only", region: "eu"))
            try await h.enqueue(h.spec(id: "anywhere"))
            let us = try await h.store.claim(ClaimRequest(nodeID: "node-us", region: "us", limit: 10))
            #expect(us.map(\.jobID) == ["anywhere"])
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-unplaced", region: nil, limit: 10)).isEmpty)
            let eu = try await h.store.claim(ClaimRequest(nodeID: "node-eu", region: "eu", limit: 10))
            #expect(eu.map(\.jobID) == ["eu-only"])
        },
    ]
}
