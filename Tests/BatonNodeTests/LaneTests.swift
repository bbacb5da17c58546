import BatonCore
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Lane caps and sessions held by real worker processes sharing one store.
extension MultiProcessTests {
@Suite(.serialized) struct LaneTests {
    static func sleeper(_ id: String, lane: String, seconds: Double, session: String? = nil) -> JobSpec {
        JobSpec(id: id, lane: lane, sessionKey: session, stages: [StageSpec(name: "run", run: .sleep(seconds))], leaseTTLSec: 10)
    }

    /// Samples running jobs per lane from the store every 50 ms for `seconds`.
    static func sample(_ h: ProcessHarness, for seconds: Double) async throws -> [[String: Int]] {
        var samples: [[String: Int]] = []
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            let lanes = try await h.store.lanes()
            samples.append(Dictionary(uniqueKeysWithValues: lanes.map { ($0.name, $0.running) }))
            try await Task.sleep(for: .milliseconds(50))
        }
        return samples
    }

    /// The #16055 regression: `agents.defaults.maxConcurrent` caps the main lane across three
    /// nodes of capacity 10, another lane runs beside it, and raising the cap by a reload
    /// (SIGHUP) lets that many run.
    @Test(.enabled(if: TestPostgresServer.enabled))
    func laneCapHoldsAcrossThreeNodesAndARaiseByReloadTakesEffect() async throws {
        let h = try await ProcessHarness(.postgres)
        defer { h.finish() }
        let main = (0..<60).map { Self.sleeper("main-\($0)", lane: "main", seconds: 1.5) }
        let other = (0..<12).map { Self.sleeper("bulk-\($0)", lane: "bulk", seconds: 3) }
        _ = try await h.store.enqueue(main + other)
        let nodes = ["cap-a", "cap-b", "cap-c"]
        var workers: [Process] = []
        for node in nodes {
            workers.append(try h.startWorker(node, capacity: 10, extra: "agents: {defaults: {maxConcurrent: 4}}"))
        }
        try await h.waitUntil(timeout: 30, "the main lane to fill up to its cap") {
            try await h.store.lanes().first { $0.name == "main" }?.running == 4
        }
        let before = try await Self.sample(h, for: 2)
        let mainBefore = before.map { $0["main", default: 0] }
        #expect(mainBefore.max() == 4, "main never above its cap of 4, and at it: \(mainBefore)")
        #expect(before.contains { $0["main", default: 0] > 0 && $0["bulk", default: 0] > 0 },
                "another lane runs while main is at its cap")

        for node in nodes {
            _ = try h.config(node: node, capacity: 10, extra: "agents: {defaults: {maxConcurrent: 10}}")
        }
        for worker in workers { h.signal(worker, SIGHUP) }
        try await h.waitUntil(timeout: 10, "the raised cap to reach the store") {
            try await h.store.lanes().first { $0.name == "main" }?.cap == 10
        }
        try await h.waitUntil(timeout: 30, "the main lane to fill up to its raised cap") {
            try await h.store.lanes().first { $0.name == "main" }?.running == 10
        }
        let after = try await Self.sample(h, for: 1)
        let mainAfter = after.map { $0["main", default: 0] }
        #expect(mainAfter.max() == 10, "after the reload 10 run at once, never more: \(mainAfter)")
        try await h.waitUntil(timeout: 60, "every job to finish") {
            try await h.store.counts()[.succeeded] == main.count + other.count
        }
        for node in nodes { #expect(h.log(of: node).contains("configuration reloaded")) }
    }

    @Test(arguments: [ProcessHarness.Engine.sqlite, .postgres])
    func sessionsRunOneJobAtATimeInSubmissionOrderAcrossNodes(_ engine: ProcessHarness.Engine) async throws {
        if engine == .postgres && !TestPostgresServer.enabled { return }
        let h = try await ProcessHarness(engine)
        defer { h.finish() }
        let sessions = 50, perSession = 20
        var specs: [JobSpec] = []
        for round in 0..<perSession {
            for session in 0..<sessions {
                specs.append(Self.sleeper("s\(session)-\(round)", lane: "chat", seconds: 0.01, session: "chat:\(session)"))
            }
        }
        _ = try await h.store.enqueue(specs)
        let nodes = ["session-a", "session-b", "session-c"]
        for node in nodes { try h.startWorker(node, capacity: 10, extra: "lanes: {chat: 30}") }
        try await h.waitUntil(timeout: 120, "all \(specs.count) jobs to succeed") {
            try await h.store.counts()[.succeeded] == specs.count
        }
        // Order is proved by the event log's sequence numbers, not its times: an event's time is
        // taken when its node starts the write, while its number is drawn inside the write,
        // after everything the write could see had committed. A claim that saw the previous
        // job finished therefore always has the higher number.
        var claimers = Set<String>()
        for session in 0..<sessions {
            var previousEnd: Int64?
            for round in 0..<perSession {
                let events = try await h.store.events(jobID: "s\(session)-\(round)")
                let start = try #require(events.first { $0.kind == .claimed })
                let end = try #require(events.first { $0.kind == .completed })
                #expect(events.filter { $0.kind == .claimed }.count == 1, "s\(session)-\(round) ran once")
                claimers.insert(start.nodeID ?? "")
                if let previousEnd {
                    #expect(start.seq > previousEnd, "s\(session)-\(round) started before s\(session)-\(round - 1) finished")
                }
                previousEnd = end.seq
            }
        }
        #expect(claimers == Set(nodes), "every node took part")
    }

    @Test func aSaturatedCronLaneDoesNotDelayMainLaneJobs() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        _ = try await h.store.enqueue((0..<10).map { Self.sleeper("cron-\($0)", lane: "cron", seconds: 20) })
        try h.startWorker("starve-a", capacity: 4, pollIntervalMs: 250)
        try await h.waitUntil(timeout: 20, "the cron lane to fill up") {
            try await h.store.lanes().first { $0.name == "cron" }?.running == 2
        }
        _ = try await h.store.enqueue(Self.sleeper("chat", lane: "main", seconds: 0))
        try await h.waitUntil(timeout: 20, "the main-lane job to finish") { try await h.store.job(id: "chat")?.state == .succeeded }
        let claim = try #require(try await h.store.events(jobID: "chat").first { $0.kind == .claimed })
        let wait = try #require(claim.detail["wait_ms"].flatMap(Int.init))
        #expect(wait <= 250 + 100, "the chat job waited \(wait) ms behind a saturated cron lane (poll 250 ms)")
        #expect(try await h.store.lanes().first { $0.name == "cron" }?.running == 2, "cron stays at its cap of 2")
    }
}
}
