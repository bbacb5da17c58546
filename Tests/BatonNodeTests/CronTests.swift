import BatonCore
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

/// Schedules fired by real worker processes (each runs the scheduler) sharing one store.
extension MultiProcessTests {
@Suite(.serialized) struct CronTests {
    static func schedule(_ id: String, _ fields: String, job: String) -> String {
        """
        schedules:
          - id: \(id)
            \(fields)
            job: \(job)
        """
    }

    /// The acceptance run: three nodes on one PostgreSQL, an `@every 1s` schedule for 60 s.
    /// Every tick from the first to the last has exactly one job, read from the store.
    @Test(.enabled(if: TestPostgresServer.enabled))
    func threeNodesFireEachTickOfAnEverySecondScheduleExactlyOnce() async throws {
        let h = try await ProcessHarness(.postgres)
        defer { h.finish() }
        let extra = Self.schedule("pulse", "every: 1s\n    misfire: all\n    overlap: allow",
                                  job: "{stages: [{name: ping, run: {noop: {}}}]}")
        for node in ["cron-a", "cron-b", "cron-c"] { try h.startWorker(node, capacity: 4, logLevel: "info", extra: extra) }
        try await Task.sleep(for: .seconds(62))
        h.killWorkers()
        let runs = try await h.store.scheduleRuns(id: "pulse", limit: 1000).reversed()
        let ticks = runs.compactMap { $0.jobID == nil ? nil : $0.tick.epochMilliseconds }
        #expect(ticks.count >= 55, "one job a second for a minute, got \(ticks.count)")
        #expect(Set(ticks).count == ticks.count, "no tick has two jobs")
        let gaps = zip(ticks, ticks.dropFirst()).filter { $1 - $0 != 1000 }
        #expect(gaps.isEmpty, "every second from the first tick to the last has its job: gaps \(gaps)")
        #expect(runs.allSatisfy { $0.note == nil }, "no tick was missed: \(runs.compactMap(\.note))")
        // Seen from the jobs themselves: one job per idempotency key, all of the schedule's.
        let jobs = try await h.store.jobs(matching: JobFilter(limit: 10_000)).filter { $0.spec.idempotencyKey?.hasPrefix("cron:pulse:") == true }
        #expect(jobs.count == ticks.count)
        #expect(Set(jobs.compactMap(\.spec.idempotencyKey)).count == jobs.count)
        let firing = ["cron-a", "cron-b", "cron-c"].filter { h.log(of: $0).contains("schedule fired") }
        #expect(!firing.isEmpty)
    }

    /// A job longer than the interval: with overlap skip its runs never overlap, and the ticks
    /// that came while it ran are recorded as skipped.
    @Test func aRunLongerThanTheIntervalNeverOverlapsTheNextTick() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        try h.startWorker("overlap-a", capacity: 4, logLevel: "info",
                          extra: Self.schedule("slow", "every: 1s", job: "{stages: [{name: work, run: {sleep: 2.5}}]}"))
        try await h.waitUntil(timeout: 30, "two runs of the slow schedule to finish") {
            try await h.store.counts()[.succeeded] ?? 0 >= 2
        }
        h.killWorkers()
        let runs = try await h.store.scheduleRuns(id: "slow", limit: 100)
        #expect(runs.contains { $0.note?.contains("(overlap: skip)") == true }, "ticks during a run are skipped")
        var spans: [(Date, Date)] = []
        for run in runs {
            guard let id = run.jobID, let detail = try await h.store.detail(id: id) else { continue }
            for attempt in detail.attempts { spans.append((attempt.startedAt, attempt.finishedAt ?? .distantFuture)) }
        }
        spans.sort { $0.0 < $1.0 }
        for (earlier, later) in zip(spans, spans.dropFirst()) {
            #expect(later.0 >= earlier.1, "a run started at \(later.0) while the previous ran until \(earlier.1)")
        }
    }

    /// A tick whose job fails transiently twice completes on its third attempt; the schedule
    /// stays active and keeps firing.
    @Test func aTransientFailureRetriesInsideTheTickAndTheScheduleStaysActive() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let counter = h.directory.appendingPathComponent("runs").path
        let script = "n=$(( $(cat \(counter) 2>/dev/null || echo 0) + 1 )); echo $n > \(counter); [ $n -ge 3 ] || exit 75"
        try h.startWorker("retry-a", capacity: 2, logLevel: "info",
                          extra: Self.schedule("flaky", "every: 2s", job: """
                              {stages: [{name: call, run: {shell: "\(script)"}}], retry: {max_attempts: 5, initial_sec: 0.2, jitter: 0}}
                              """))
        try await h.waitUntil(timeout: 30, "the schedule's second run to succeed") {
            try await h.store.counts()[.succeeded] ?? 0 >= 2
        }
        let runs = try await h.store.scheduleRuns(id: "flaky", limit: 100).reversed().filter { $0.jobID != nil }
        let firstID = try #require(runs.first?.jobID)
        let first = try #require(try await h.store.job(id: firstID))
        #expect(first.state == .succeeded)
        #expect(first.attempts == 3 && first.retryCount == 2, "two transient failures, then success inside the one tick")
        let record = try #require(try await h.store.schedules().first { $0.id == "flaky" })
        #expect(record.state == .active)
    }

    /// Fatal failures pause the schedule with its reason and an alert; `baton cron resume`
    /// starts it again.
    @Test func repeatedFatalFailuresPauseTheScheduleVisiblyAndResumeWorks() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        try h.startWorker("fatal-a", capacity: 2, logLevel: "info",
                          extra: Self.schedule("broken", "every: 1s\n    pause_after_failures: 2",
                                               job: "{stages: [{name: call, run: {shell: \"echo boom >&2; exit 1\"}}]}"))
        try await h.waitUntil(timeout: 30, "the schedule to pause") {
            try await h.store.schedules().first { $0.id == "broken" }?.state == .paused
        }
        let record = try #require(try await h.store.schedules().first { $0.id == "broken" })
        #expect(record.reason?.hasPrefix("2 consecutive runs failed") == true, "\(record.reason ?? "")")
        #expect(h.log(of: "fatal-a").contains("schedule paused after repeated failures"), "the alert is logged")
        let list = try await h.cli(["cron", "list", "--config", try h.config(node: "cli")])
        #expect(list.output.contains("paused: 2 consecutive runs failed"), "\(list.output)")
        let jobs = try await h.store.counts()[.dead] ?? 0
        try await Task.sleep(for: .seconds(2))
        #expect(try await h.store.counts()[.dead] ?? 0 == jobs, "a paused schedule fires nothing")
        let resume = try await h.cli(["cron", "resume", "broken", "--config", try h.config(node: "cli")])
        #expect(resume.status == 0, "\(resume.output)")
        try await h.waitUntil(timeout: 20, "the resumed schedule to fire again") {
            try await h.store.counts()[.dead] ?? 0 > jobs
        }
    }

    /// `baton cron add` with a bad flag names the flag and stores nothing; a good one lists
    /// with its next fire time.
    @Test func cronAddNamesTheBadFlagAndStoresNothing() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let config = try h.config(node: "cli")
        let job = h.directory.appendingPathComponent("job.json")
        try #"{"stages": [{"name": "s", "run": {"noop": {}}}]}"#.write(to: job, atomically: true, encoding: .utf8)
        let bad = try await h.cli(["cron", "add", "nightly", "--cron", "0 25 * * *", "--job", job.path, "--config", config])
        #expect(bad.status == 65)
        #expect(bad.output.contains("--cron: hour field \"25\": 25 is outside 0-23"), "\(bad.output)")
        #expect(try await h.store.schedules().isEmpty)
        let good = try await h.cli(["cron", "add", "nightly", "--cron", "0 3 * * *", "--timezone", "Asia/Tokyo", "--job", job.path,
                                    "--config", config])
        #expect(good.status == 0, "\(good.output)")
        let list = try await h.cli(["cron", "list", "--config", config])
        #expect(list.output.contains("cron 0 3 * * * (Asia/Tokyo)") && list.output.contains("T18:00:00.000Z"), "\(list.output)")
        #expect(try await h.cli(["cron", "remove", "nightly", "--config", config]).status == 0)
        #expect(try await h.cli(["cron", "remove", "nightly", "--config", config]).status == 1)
    }

    /// Schedules follow the configuration on SIGHUP: a new one is written, a removed one goes
    /// (one added with `baton cron add` stays).
    @Test func aReloadWritesNewConfigSchedulesAndRemovesDroppedOnes() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let job = "{stages: [{name: s, run: {noop: {}}}]}"
        let worker = try h.startWorker("reload-a", logLevel: "info", extra: Self.schedule("first", "every: 1h", job: job))
        try await h.waitUntil(timeout: 20, "the first schedule to be written") {
            try await h.store.schedules().map(\.id) == ["first"]
        }
        let byHand = try ScheduleSpec.read(.object([
            "id": .string("by-hand"), "every": .string("1h"),
            "job": .object(["stages": .array([.object(["name": .string("s"), "run": .object(["noop": .object([:])])])])]),
        ]), path: "")
        _ = try await h.store.putSchedule(byHand, source: .api)
        _ = try h.config(node: "reload-a", logLevel: "info", extra: Self.schedule("second", "cron: '0 6 * * *'", job: job))
        h.signal(worker, SIGHUP)
        try await h.waitUntil(timeout: 20, "the reloaded schedules to be written") {
            try await h.store.schedules().map(\.id) == ["by-hand", "second"]
        }
    }
}
}
