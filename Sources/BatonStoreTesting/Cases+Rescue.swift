import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let rescueCases: [ConformanceCase] = [
        ConformanceCase("rescueRequeuesAJobWhoseLeaseExpiredAndCountsTheAttempt") { h in
            let id = try await h.enqueue(h.spec(leaseTTLSec: 30))
            let lost = try await h.claimOne("node-a")
            h.clock.advance(by: 31)
            let report = try await h.store.rescue()
            #expect(report == RescueReport(requeued: [id]))

            let detail = try await h.detail(id)
            #expect(detail.job.state == .queued)
            #expect(detail.job.leaseNode == nil)
            #expect(detail.job.attempts == 1)
            #expect(Array(detail.events.map(\.kind).suffix(2)) == [.heartbeatLost, .rescued])
            for event in detail.events.suffix(2) {
                #expect(names(event, "node-a"), "\(event.kind) should name the node that lost the lease")
            }
            let attempt = try #require(detail.attempts.first)
            #expect(attempt.fence == lost.fence)
            #expect(attempt.outcome == .leaseExpired)
            #expect(attempt.nodeID == "node-a")

            let next = try await h.claimOne("node-b")
            #expect(next.jobID == id)
            #expect(next.attempt == 2)
            #expect(next.fence == lost.fence + 1)
        },

        ConformanceCase("rescueDeadLettersAnExpiredLeaseOnTheLastAttempt") { h in
            let id = try await h.enqueue(h.spec(retry: RetryPolicy(maxAttempts: 2)))
            _ = try await h.claimAndLose("node-a")
            let last = try await h.claimOne("node-b")
            #expect(last.attempt == 2)
            h.expire(last)
            let report = try await h.store.rescue()
            #expect(report == RescueReport(deadLettered: [id]))
            let job = try await h.record(id)
            #expect(job.state == .dead)
            #expect(job.lastReason == "lease_expired")
            #expect(job.attempts == 2)
            #expect(job.finishedAt != nil)
            #expect(try await h.eventKinds(id).contains(.deadLettered))
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-c", limit: 1)).isEmpty)
        },

        ConformanceCase("rescueLeavesAJobInsideItsLeaseAlone") { h in
            let id = try await h.enqueue(h.spec(leaseTTLSec: 30))
            let lease = try await h.claimOne("node-a")
            h.clock.advance(by: 29)
            #expect(try await h.store.rescue().isEmpty)
            let job = try await h.record(id)
            #expect(job.state == .running)
            #expect(job.leaseNode == "node-a")
            #expect(try await h.store.heartbeat([lease]).first?.isLost == false)
        },

        ConformanceCase("queuedJobPastItsQueueTimeoutExpires") { h in
            let id = try await h.enqueue(h.spec(queueTimeoutSec: 60))
            h.clock.advance(by: 61)
            #expect(try await h.store.rescue() == RescueReport(expired: [id]))
            let job = try await h.record(id)
            #expect(job.state == .expired)
            #expect(job.lastReason == "queue_timeout")
            #expect(ms(job.finishedAt) == ms(h.clock.now))
            let expired = try #require(try await h.events(id, .expired).first)
            #expect(expired.detail["reason"] == "queue_timeout")
        },

        ConformanceCase("queueTimeoutNoLongerAppliesOnceTheJobWasClaimed") { h in
            let id = try await h.enqueue(h.spec(queueTimeoutSec: 60, leaseTTLSec: 30, ttlSec: 3600))
            let lease = try await h.claimOne("node-a")
            try await h.store.release(lease, reason: "shutdown")
            h.clock.advance(by: 120)
            #expect(try await h.store.rescue().isEmpty)
            #expect(try await h.record(id).state == .queued)
            let again = try await h.claimOne("node-b")
            #expect(again.jobID == id)
        },

        ConformanceCase("waitingJobPastItsTTLExpires") { h in
            let id = try await h.enqueue(h.spec(ttlSec: 100))
            h.clock.advance(by: 101)
            #expect(try await h.store.rescue() == RescueReport(expired: [id]))
            let job = try await h.record(id)
            #expect(job.state == .expired)
            #expect(job.lastReason == "ttl")
            #expect(try await h.events(id, .expired).first?.detail["reason"] == "ttl")
        },

        ConformanceCase("jobPastItsDeadlineIsNeverClaimedBeforeOrAfterRescue") { h in
            try await h.enqueue(h.spec(id: "ttl-passed", ttlSec: 100))
            try await h.enqueue(h.spec(id: "queue-timeout-passed", queueTimeoutSec: 50))
            h.clock.advance(by: 101)
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-a", limit: 10)).isEmpty)
            #expect(Set(try await h.store.rescue().expired) == ["ttl-passed", "queue-timeout-passed"])
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-a", limit: 10)).isEmpty)
            #expect(try await h.store.counts()[.expired] == 2)
        },

        ConformanceCase("leaseLostAfterTheTTLPassedExpiresTheJob") { h in
            let id = try await h.enqueue(h.spec(leaseTTLSec: 30, ttlSec: 100))
            h.clock.advance(by: 80)
            let lease = try await h.claimOne("node-a")
            h.expire(lease)
            #expect(try await h.store.rescue() == RescueReport(expired: [id]))
            let job = try await h.record(id)
            #expect(job.state == .expired)
            #expect(job.lastReason == "ttl")
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-b", limit: 1)).isEmpty)
        },
    ]
}
