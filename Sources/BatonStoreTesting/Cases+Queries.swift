import BatonCore
import BatonStore
import Foundation
import Testing

/// True when `needles` appear in `haystack` in order, other elements allowed between them.
func isSubsequence<T: Equatable>(_ needles: [T], of haystack: [T]) -> Bool {
    var rest = haystack[...]
    for needle in needles {
        guard let index = rest.firstIndex(of: needle) else { return false }
        rest = rest[(index + 1)...]
    }
    return true
}

extension JobStoreConformance {
    static let queryCases: [ConformanceCase] = [
        ConformanceCase("jobsFiltersByStateAndLaneNewestFirstWithinTheLimit") { h in
            var ids: [String] = []
            for lane in ["main", "builds", "main", "main", "main"] {
                ids.append(try await h.enqueue(h.spec(lane: lane)))
                h.clock.advance(by: 1)
            }
            #expect(try await h.claimOne("node-a").jobID == ids[0])

            let list = { (states: [JobState], lane: String?, limit: Int) in
                try await h.store.jobs(matching: JobFilter(states: states, lane: lane, limit: limit)).map(\.id)
            }
            #expect(try await list([], nil, 100) == ids.reversed())
            #expect(try await list([.queued], "main", 100) == [ids[4], ids[3], ids[2]])
            #expect(try await list([.queued], "main", 2) == [ids[4], ids[3]])
            #expect(try await list([.running], nil, 100) == [ids[0]])
            #expect(try await list([], "builds", 100) == [ids[1]])
            #expect(try await list([.queued, .running], "main", 100) == [ids[4], ids[3], ids[2], ids[0]])
            #expect(try await list([.dead], nil, 100).isEmpty)
        },

        ConformanceCase("jobsListsTheMostRecentlyEnqueuedFirstWhateverTheirIDs") { h in
            for id in ["zeta", "alpha", "mike"] {
                try await h.enqueue(h.spec(id: id))
                h.clock.advance(by: 1)
            }
            let listed = try await h.store.jobs(matching: JobFilter()).map(\.id)
            #expect(listed == ["mike", "alpha", "zeta"])
        },

        ConformanceCase("countsReportJobsPerState") { h in
            try await h.enqueue(h.spec(id: "succeeded"))
            _ = try await h.runToSuccess("node-a")
            try await h.enqueue(h.spec(id: "dead"))
            let dying = try await h.claimOne("node-a")
            _ = try await h.store.fail(dying, failure: .fatal("exit_code", "1"), report: .empty)
            try await h.enqueue(h.spec(id: "running"))
            _ = try await h.claimOne("node-a")
            try await h.enqueue(h.spec(id: "queued-1"))
            try await h.enqueue(h.spec(id: "queued-2"))
            try await h.enqueue(h.spec(id: "cancelled"))
            _ = try await h.store.cancel(jobID: "cancelled", reason: "no")

            let counts = try await h.store.counts().filter { $0.value != 0 }
            #expect(counts == [.succeeded: 1, .dead: 1, .running: 1, .queued: 2, .cancelled: 1])
        },

        ConformanceCase("detailListsAttemptsAndEventsOldestFirst") { h in
            let id = try await h.enqueue(h.spec())
            let first = try await h.claimOne("node-a")
            h.clock.advance(by: 1)
            _ = try await h.store.fail(first, failure: .transient("http_503", "unavailable", retryAfterSec: 5), report: .empty)
            h.clock.advance(by: 5)
            let second = try await h.claimOne("node-b")
            h.clock.advance(by: 1)
            #expect(try await h.store.complete(second) == .succeeded)

            let detail = try await h.detail(id)
            #expect(detail.job.id == id)
            #expect(detail.attempts.map(\.fence) == [1, 2])
            #expect(detail.attempts.map(\.nodeID) == ["node-a", "node-b"])
            #expect(detail.attempts.map(\.outcome) == [.failed, .succeeded])
            #expect(detail.attempts.map(\.attempt) == [1, 2])

            let kinds = detail.events.map(\.kind)
            #expect(kinds.first == .enqueued)
            #expect(kinds.last == .completed)
            #expect(isSubsequence([.enqueued, .claimed, .retried, .claimed, .completed], of: kinds), "events: \(kinds)")
            #expect(detail.events.allSatisfy { $0.jobID == id })
            #expect(zip(detail.events, detail.events.dropFirst()).allSatisfy { $0.seq < $1.seq && $0.at <= $1.at })
        },

        ConformanceCase("unknownJobReadsAsNil") { h in
            try await h.enqueue(h.spec(id: "known"))
            #expect(try await h.store.job(id: "unknown") == nil)
            #expect(try await h.store.detail(id: "unknown") == nil)
            #expect(try await h.store.events(jobID: "unknown").isEmpty)
        },

        ConformanceCase("waitForWorkReturnsWithinItsBound") { h in
            let started = ContinuousClock.now
            await h.store.waitForWork(upTo: 0.1)
            #expect(ContinuousClock.now - started < .seconds(10))
        },
    ]
}
