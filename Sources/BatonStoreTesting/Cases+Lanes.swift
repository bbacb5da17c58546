import BatonCore
import BatonStore
import Foundation
import Testing

extension StoreHarness {
    func job(lane: String = "main", session: String? = nil, id: String? = nil, priority: Int = 0,
             retry: RetryPolicy = RetryPolicy(maxAttempts: 3, initialSec: 5, jitter: 0)) -> JobSpec {
        JobSpec(id: id ?? JobID.make(at: clock.now), lane: lane, sessionKey: session, priority: priority,
                stages: [StageSpec(name: "run", run: .noop)], leaseTTLSec: 30, retry: retry)
    }

    func claim(_ node: String, limit: Int) async throws -> [Lease] {
        try await store.claim(ClaimRequest(nodeID: node, limit: limit))
    }
}

extension JobStoreConformance {
    static let laneCases: [ConformanceCase] = [
        ConformanceCase("aLaneCapLimitsRunningJobsAcrossEveryNode") { h in
            try await h.store.setLaneCaps(["cron": 2])
            for index in 0..<5 { try await h.enqueue(h.job(lane: "cron", id: "cron-\(index)")) }
            for index in 0..<3 { try await h.enqueue(h.job(lane: "main", id: "main-\(index)")) }
            let first = try await h.claim("node-a", limit: 10)
            #expect(first.filter { $0.spec.lane == "cron" }.map(\.jobID) == ["cron-0", "cron-1"])
            #expect(first.filter { $0.spec.lane == "main" }.count == 3, "a lane without a cap is not held back")
            #expect(try await h.claim("node-b", limit: 10).isEmpty, "the cap holds across nodes")
            _ = try await h.store.complete(try #require(first.first { $0.jobID == "cron-0" }))
            #expect(try await h.claim("node-b", limit: 10).map(\.jobID) == ["cron-2"])
        },

        ConformanceCase("aFullLaneDoesNotHideTheJobsOfOtherLanes") { h in
            try await h.store.setLaneCaps(["cron": 1, "main": 4])
            for index in 0..<30 { try await h.enqueue(h.job(lane: "cron", id: "cron-\(String(format: "%02d", index))")) }
            h.clock.advance(by: 1)
            try await h.enqueue(h.job(lane: "main", id: "chat"))
            let leases = try await h.claim("node-a", limit: 2)
            #expect(Set(leases.map(\.jobID)) == ["cron-00", "chat"])
        },

        ConformanceCase("raisingALaneCapLetsMoreJobsRunAndLoweringItStopsNone") { h in
            try await h.store.setLaneCaps(["batch": 1])
            for index in 0..<4 { try await h.enqueue(h.job(lane: "batch", id: "b-\(index)")) }
            let one = try await h.claim("node-a", limit: 10)
            #expect(one.count == 1)
            try await h.store.setLaneCaps(["batch": 3])
            #expect(try await h.claim("node-b", limit: 10).count == 2)
            try await h.store.setLaneCaps(["batch": 1])
            #expect(try await h.claim("node-b", limit: 10).isEmpty)
            // Jobs already running keep their leases.
            #expect(try await h.store.heartbeat(one) == [.extended(until: h.clock.now.addingTimeInterval(30))])
            try await h.store.setLaneCaps([:])
            #expect(try await h.claim("node-c", limit: 10).count == 1, "no cap once the lane is not named")
        },

        ConformanceCase("aSessionRunsOneJobAtATimeInSubmissionOrder") { h in
            for index in 0..<3 {
                try await h.enqueue(h.job(session: "telegram:42", id: "s42-\(index)"))
                h.clock.advance(by: 0.01)
            }
            try await h.enqueue(h.job(session: "telegram:7", id: "s7-0"))
            let first = try await h.claim("node-a", limit: 10)
            #expect(Set(first.map(\.jobID)) == ["s42-0", "s7-0"])
            #expect(try await h.claim("node-b", limit: 10).isEmpty, "the session's next job waits for the running one")
            _ = try await h.store.complete(try #require(first.first { $0.jobID == "s42-0" }))
            let second = try await h.claim("node-b", limit: 10)
            #expect(second.map(\.jobID) == ["s42-1"])
        },

        ConformanceCase("aHigherPriorityJobDoesNotOvertakeItsSession") { h in
            try await h.enqueue(h.job(session: "s", id: "older"))
            h.clock.advance(by: 0.01)
            try await h.enqueue(h.job(session: "s", id: "urgent", priority: 100))
            #expect(try await h.claim("node-a", limit: 10).map(\.jobID) == ["older"])
        },

        ConformanceCase("aSessionsRetryingJobHoldsItsPlace") { h in
            try await h.enqueue(h.job(session: "s", id: "first"))
            h.clock.advance(by: 0.01)
            try await h.enqueue(h.job(session: "s", id: "second"))
            let first = try await h.claimOne("node-a")
            guard case .retrying(let at, _) = try await h.store.fail(first, failure: .transient("exit_code", "75"), report: .empty) else {
                Issue.record("expected a retry")
                return
            }
            #expect(try await h.claim("node-b", limit: 10).isEmpty, "the later job must not overtake one in backoff")
            h.clock.set(at)
            #expect(try await h.claim("node-b", limit: 10).map(\.jobID) == ["first"])
        },

        ConformanceCase("aDeadLetteredJobFreesItsSession") { h in
            try await h.enqueue(h.job(session: "s", id: "first"))
            h.clock.advance(by: 0.01)
            try await h.enqueue(h.job(session: "s", id: "second"))
            let first = try await h.claimOne("node-a")
            _ = try await h.store.fail(first, failure: .fatal("http_400", "bad request"), report: .empty)
            #expect(try await h.claim("node-b", limit: 10).map(\.jobID) == ["second"])
        },

        ConformanceCase("aLowPriorityJobThatWaitedLongEnoughAgesPastNewerHigherPriorityWork") { h in
            try await h.enqueue(h.job(id: "old-low", priority: 0))
            h.clock.advance(by: 150)
            try await h.enqueue(h.job(id: "new-high", priority: 2))
            h.clock.advance(by: 31)
            _ = try await h.store.rescue()
            // 181 s at one step per 60 s: three steps, past the newer job's 2.
            #expect(try await h.claim("node-a", limit: 1).map(\.jobID) == ["old-low"])
            h.clock.advance(by: 3600)
            _ = try await h.store.rescue()
            #expect(try await h.record("new-high").spec.priority == 2, "the envelope keeps the priority it was given")
        },

        ConformanceCase("laneStatsShowCapsDepthRunningOldestWaitAndWaits") { h in
            try await h.store.setLaneCaps(["cron": 1, "idle": 2])
            try await h.enqueue(h.job(lane: "cron", id: "c1"))
            try await h.enqueue(h.job(lane: "cron", id: "c2"))
            h.clock.advance(by: 3)
            _ = try await h.claim("node-a", limit: 10)
            h.clock.advance(by: 2)
            let lanes = try await h.store.lanes()
            #expect(lanes.map(\.name) == ["cron", "idle"])
            let cron = try #require(lanes.first)
            #expect(cron.cap == 1)
            #expect(cron.running == 1)
            #expect(cron.waiting == 1)
            #expect(cron.ready == 1)
            #expect(cron.oldestReadySec == 5)
            #expect(cron.wait.count == 1)
            #expect(cron.wait.p50Ms == 3000)
            #expect(lanes[1] == LaneStats(name: "idle", cap: 2, waiting: 0, ready: 0, running: 0, oldestReadySec: nil, wait: .empty))
            #expect(try await h.store.startsInLane("cron", since: h.clock.now.addingTimeInterval(-5)) == 1)
            #expect(try await h.store.startsInLane("cron", since: h.clock.now.addingTimeInterval(-1)) == 0)
        },
    ]
}
