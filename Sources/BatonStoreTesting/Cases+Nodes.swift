import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let nodeCases: [ConformanceCase] = [
        ConformanceCase("registeredNodeIsListedWithEverythingItSaidAboutItself") { h in
            let info = h.node("mini-1", region: "eu")
            let registered = try await h.register(info)
            #expect(registered.previous == nil)
            #expect(registered.rescued.isEmpty)
            let nodes = try await h.store.nodes()
            #expect(nodes.map(\.id) == ["mini-1"])
            let record = try #require(nodes.first)
            #expect(record.info == info)
            #expect(record.state == .live)
            #expect(ms(record.startedAt) == ms(h.clock.now))
            #expect(ms(record.lastSeen) == ms(h.clock.now))
            #expect(record.inFlight == 0)
            #expect(record.health(at: h.clock.now) == .healthy)
        },

        ConformanceCase("secondProcessWithALiveNodeIDIsRefusedAndChangesNothing") { h in
            let first = h.node("mini-1", instance: "first")
            try await h.register(first)
            h.clock.advance(by: 2.5)  // late (missed a heartbeat), not yet dead (3 s)
            let second = h.node("mini-1", instance: "second", host: "host-2", pid: 99)
            guard case .conflict(let existing) = try await h.store.registerNode(second, replacing: nil) else {
                Issue.record("a second live instance of mini-1 was accepted")
                return
            }
            #expect(existing.info == first)
            #expect(existing.health(at: h.clock.now) == .late)
            // Naming an instance that does not hold the id does not help either.
            guard case .conflict = try await h.store.registerNode(second, replacing: "someone-else") else {
                Issue.record("replacing a wrong instance was accepted")
                return
            }
            #expect(try await h.nodeRecord("mini-1").info.instance == "first")
        },

        ConformanceCase("restartOfTheSameInstanceReRegistersFreely") { h in
            let info = h.node("mini-1")
            try await h.register(info)
            h.clock.advance(by: 0.5)
            var changed = info
            changed.capacity = 16
            changed.configHash = "fedcba9876543210"
            let again = try await h.register(changed)
            #expect(again.previous == nil)
            #expect(try await h.nodeRecord("mini-1").info.capacity == 16)
        },

        ConformanceCase("nodeIDOfADeadOrStoppedProcessCanBeTakenOver") { h in
            try await h.register(h.node("mini-1", instance: "first"))
            h.clock.advance(by: 3)  // silent for the whole threshold
            let taken = try await h.register(h.node("mini-1", instance: "second"))
            #expect(taken.previous?.info.instance == "first")

            try await h.store.deregisterNode(id: "mini-1", instance: "second")
            #expect(try await h.nodeRecord("mini-1").state == .stopped)
            #expect(try await h.nodeRecord("mini-1").health(at: h.clock.now) == .stopped)
            let third = try await h.register(h.node("mini-1", instance: "third"))
            #expect(third.previous?.state == .stopped)
        },

        ConformanceCase("deregisterByAnInstanceThatNoLongerHoldsTheIDChangesNothing") { h in
            try await h.register(h.node("mini-1", instance: "first"))
            h.clock.advance(by: 3)
            try await h.register(h.node("mini-1", instance: "second"))
            try await h.store.deregisterNode(id: "mini-1", instance: "first")
            let record = try await h.nodeRecord("mini-1")
            #expect(record.state == .live)
            #expect(record.info.instance == "second")
        },

        ConformanceCase("restartReplacingItsProvenGonePredecessorRescuesItsJobsAtOnce") { h in
            let id = try await h.enqueue(h.spec(leaseTTLSec: 60))
            try await h.register(h.node("mini-1", instance: "crashed"))
            let lease = try await h.claimOne("mini-1")
            h.clock.advance(by: 1)
            let restarted = try await h.register(h.node("mini-1", instance: "restarted"), replacing: "crashed")
            #expect(restarted.previous?.info.instance == "crashed")
            #expect(restarted.rescued == [id])

            let detail = try await h.detail(id)
            #expect(detail.job.state == .queued)
            #expect(detail.job.leaseNode == nil)
            let rescued = try #require(detail.events.last)
            #expect(rescued.kind == .rescued)
            #expect(rescued.detail["reason"] == "node_restarted")
            #expect(rescued.detail["from_node"] == "mini-1")
            #expect(detail.attempts.first?.outcome == .leaseExpired)
            #expect(detail.attempts.first?.reason == "node_restarted")
            // The crashed process's lease is fenced off.
            #expect(try await h.store.heartbeat([lease]).first?.isLost == true)
            #expect(try await h.claimOne("mini-1").jobID == id)
        },

        ConformanceCase("heartbeatKeepsTheNodeHealthyAndRecordsItsLoad") { h in
            var info = h.node("mini-1")
            try await h.register(info)
            for _ in 0..<5 {
                h.clock.advance(by: 1)
                #expect(try await h.store.nodeHeartbeat(info, inFlight: 3) == .ok)
            }
            info.configHash = "fedcba9876543210"
            #expect(try await h.store.nodeHeartbeat(info, inFlight: 2) == .ok)
            let record = try await h.nodeRecord("mini-1")
            #expect(ms(record.lastSeen) == ms(h.clock.now))
            #expect(record.inFlight == 2)
            #expect(record.info.configHash == "fedcba9876543210")
            #expect(record.health(at: h.clock.now) == .healthy)
            #expect(try await h.store.rescue().deadNodes.isEmpty)
            #expect(record.health(at: h.clock.now.addingTimeInterval(2)) == .late)
            #expect(record.health(at: h.clock.now.addingTimeInterval(3)) == .dead)
        },

        ConformanceCase("heartbeatOfAReplacedInstanceIsToldWhoHoldsTheID") { h in
            let first = h.node("mini-1", instance: "first")
            try await h.register(first)
            h.clock.advance(by: 3)
            try await h.register(h.node("mini-1", instance: "second", pid: 777))
            guard case .replaced(let holder) = try await h.store.nodeHeartbeat(first, inFlight: 0) else {
                Issue.record("the replaced instance's heartbeat was accepted")
                return
            }
            #expect(holder.info.instance == "second")
            #expect(holder.info.pid == 777)
            #expect(try await h.nodeRecord("mini-1").info.instance == "second")
        },

        ConformanceCase("silentNodeIsDeclaredDeadAndItsJobsRescuedBeforeTheirLeasesRunOut") { h in
            let id = try await h.enqueue(h.spec(leaseTTLSec: 300))
            let other = try await h.enqueue(h.spec(leaseTTLSec: 300))
            try await h.register(h.node("mini-1", interval: 1, missed: 3))
            try await h.register(h.node("mini-2", interval: 1, missed: 3))
            let lease = try await h.claimOne("mini-1")
            #expect(lease.jobID == id)
            let kept = try await h.claimOne("mini-2")
            h.clock.advance(by: 2)
            #expect(try await h.store.nodeHeartbeat(h.node("mini-2"), inFlight: 1) == .ok)
            #expect(try await h.store.rescue().isEmpty, "mini-1 is late, not dead")
            h.clock.advance(by: 1)
            let report = try await h.store.rescue()
            #expect(report.deadNodes == ["mini-1"])
            #expect(report.requeued == [id])
            #expect(try await h.nodeRecord("mini-1").state == .dead)
            #expect(try await h.nodeRecord("mini-2").state == .live)

            let detail = try await h.detail(id)
            #expect(detail.job.state == .queued)
            #expect(detail.job.attempts == 1)
            #expect(detail.job.lastReason == "node_dead")
            let lost = try #require(detail.events.first { $0.kind == .heartbeatLost })
            #expect(lost.nodeID == "mini-1")
            #expect(lost.detail["reason"] == "node_dead")
            #expect(lost.detail["silent_ms"] == "3000")
            let rescued = try #require(detail.events.last)
            #expect(rescued.kind == .rescued)
            #expect(rescued.detail["from_node"] == "mini-1")
            #expect(try await h.record(other).leaseNode == "mini-2")
            #expect(try await h.store.heartbeat([kept]).first?.isLost == false)
            #expect(try await h.store.heartbeat([lease]).first?.isLost == true)
            // Declared once: the next pass finds nothing more to do.
            #expect(try await h.store.rescue().isEmpty)
        },

        ConformanceCase("nodeDeclaredDeadThatHeartbeatsAgainIsRevivedButKeepsNoLease") { h in
            let id = try await h.enqueue(h.spec(leaseTTLSec: 300))
            let info = h.node("mini-1")
            try await h.register(info)
            let lease = try await h.claimOne("mini-1")
            h.clock.advance(by: 4)
            #expect(try await h.store.rescue().deadNodes == ["mini-1"])
            #expect(try await h.store.nodeHeartbeat(info, inFlight: 1) == .revived)
            #expect(try await h.nodeRecord("mini-1").state == .live)
            #expect(try await h.store.heartbeat([lease]).first?.isLost == true)
            #expect(try await h.store.complete(lease).refusal?.code == .staleLease)
            #expect(try await h.record(id).state == .queued)
        },

        ConformanceCase("stoppedNodeIsNeverDeclaredDead") { h in
            try await h.register(h.node("mini-1"))
            try await h.store.deregisterNode(id: "mini-1", instance: "mini-1-1")
            h.clock.advance(by: 3600)
            #expect(try await h.store.rescue().deadNodes.isEmpty)
            #expect(try await h.nodeRecord("mini-1").state == .stopped)
        },
    ]

    static let handoverCases: [ConformanceCase] = [
        ConformanceCase("firstClaimNamesItsNodeAndNoPreviousHolder") { h in
            let id = try await h.enqueue(h.spec())
            h.clock.advance(by: 0.25)
            _ = try await h.claimOne("node-a")
            let claimed = try #require(try await h.events(id, .claimed).first)
            #expect(claimed.detail["to_node"] == "node-a")
            #expect(claimed.detail["wait_ms"] == "250")
            #expect(claimed.detail["from_node"] == nil)
            #expect(claimed.detail["handover_ms"] == nil)
            let job = try await h.record(id)
            #expect(job.lastNode == "node-a")
            #expect(ms(job.lastNodeAt) == ms(h.clock.now))
        },

        ConformanceCase("reclaimAfterRescueNamesBothNodesAndTheTimeSinceTheLostNodeWasLastHeard") { h in
            let id = try await h.enqueue(h.spec(leaseTTLSec: 30))
            let lease = try await h.claimOne("node-a")
            h.clock.advance(by: 10)
            _ = try await h.store.heartbeat([lease])
            let lastHeard = h.clock.now
            #expect(ms(try await h.record(id).lastNodeAt) == ms(lastHeard))
            h.clock.advance(by: 31)  // the renewed lease ran out a second ago
            #expect(try await h.store.rescue().requeued == [id])
            let rescued = try #require(try await h.events(id, .rescued).first)
            #expect(rescued.detail["silent_ms"] == "31000")
            h.clock.advance(by: 2)
            _ = try await h.claimOne("node-b")
            let claims = try await h.events(id, .claimed)
            #expect(claims.count == 2)
            let handover = try #require(claims.last)
            #expect(handover.nodeID == "node-b")
            #expect(handover.detail["from_node"] == "node-a")
            #expect(handover.detail["to_node"] == "node-b")
            #expect(handover.detail["handover_ms"] == "33000")
        },

        ConformanceCase("reclaimAfterReleaseMeasuresFromTheRelease") { h in
            let id = try await h.enqueue(h.spec(stages: 2))
            let first = try await h.claimOne("node-a")
            h.clock.advance(by: 5)
            let second = try #require(try await h.store.complete(first).nextLease)
            h.clock.advance(by: 1)
            try await h.store.release(second, reason: "shutdown")
            h.clock.advance(by: 0.5)
            let next = try await h.claimOne("node-b")
            #expect(next.stageIndex == 1)
            let handover = try #require(try await h.events(id, .claimed).last)
            #expect(handover.detail["from_node"] == "node-a")
            #expect(handover.detail["handover_ms"] == "500")
            #expect(handover.stage == "s2")
        },

        ConformanceCase("regionBoundJobFallsBackToAnyNodeOnlyAfterItsWait") { h in
            let id = try await h.enqueue(h.spec(region: "eu", regionFallbackAfterSec: 60))
            try await h.enqueue(h.spec(id: "strict", region: "eu"))
            h.clock.advance(by: 59)
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-us", region: "us", limit: 10)).isEmpty)
            h.clock.advance(by: 1)
            let taken = try await h.store.claim(ClaimRequest(nodeID: "node-us", region: "us", limit: 10))
            #expect(taken.map(\.jobID) == [id], "only the job with a fallback leaves its region")
            let claimed = try #require(try await h.events(id, .claimed).first)
            #expect(claimed.detail["region_fallback"] == "true")
            #expect(claimed.detail["region_affinity"] == "eu")
            #expect(claimed.detail["node_region"] == "us")
            #expect(try await h.record(id).spec.regionFallbackAfterSec == 60)
        },

        ConformanceCase("regionBoundJobClaimedInItsRegionIsNoFallback") { h in
            let id = try await h.enqueue(h.spec(region: "eu", regionFallbackAfterSec: 60))
            h.clock.advance(by: 120)
            _ = try await h.claimOne("node-eu", region: "eu")
            let claimed = try #require(try await h.events(id, .claimed).first)
            #expect(claimed.detail["region_fallback"] == nil)
            #expect(claimed.detail["node_region"] == nil)
        },
    ]
}
