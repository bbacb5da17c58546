import BatonCore
import BatonStore
import Foundation
import Testing

extension StoreHarness {
    func schedule(_ trigger: [String: JSONValue], _ extra: [String: JSONValue] = [:]) throws -> ScheduleSpec {
        try schedule("tick", trigger, extra)
    }

    func schedule(_ id: String, _ trigger: [String: JSONValue], _ extra: [String: JSONValue] = [:]) throws -> ScheduleSpec {
        var fields = trigger.merging(extra) { $1 }
        fields["id"] = .string(id)
        fields["job"] = .object(["stages": .array([.object(["name": .string("s"), "run": .object(["noop": .object([:])])])]),
                                 "retry": .object(["max_attempts": .int(3), "initial_sec": .double(1)])])
        return try ScheduleSpec.read(.object(fields), path: "schedule")
    }

    func pass() async throws -> SchedulerPass.Outcome {
        try await SchedulerPass(store: store).run(now: clock.now)
    }

    func scheduleRecord(_ id: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> ScheduleRecord {
        try #require(try await store.schedules().first { $0.id == id }, "schedule \(id) should exist", sourceLocation: sourceLocation)
    }

    /// The ticks that got a job, oldest first (from the store's run history).
    func firedTicks(_ id: String) async throws -> [Date] {
        try await store.scheduleRuns(id: id, limit: 10_000).filter { $0.jobID != nil }.map(\.tick).reversed()
    }

    /// Claims the schedule's newest job and fails it fatally.
    func failNewestRun(_ id: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let lease = try await claimOne("n1", sourceLocation: sourceLocation)
        _ = try await store.fail(lease, failure: .fatal("exit_code", "exited with status 1"), report: .empty)
    }
}

private func at(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }

extension JobStoreConformance {
    static let scheduleCases: [ConformanceCase] = [
        ConformanceCase("aTickFiresOnceWhenSeveralNodesPassAtTheSameTime") { h in
            h.clock.set(at("2027-01-15T10:00:30Z"))
            _ = try await h.store.putSchedule(try h.schedule(["every": .string("1m")], ["overlap": .string("allow")]), source: .api)
            for _ in 0..<5 {
                h.clock.advance(by: 60)
                // Five nodes' passes race for the same tick.
                let outcomes = try await withThrowingTaskGroup(of: SchedulerPass.Outcome.self) { group in
                    for _ in 0..<5 { group.addTask { try await h.pass() } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(outcomes.map(\.fired.count).reduce(0, +) == 1, "exactly one pass fires the tick")
            }
            let ticks = try await h.firedTicks("tick")
            #expect(ticks == (1...5).map { at("2027-01-15T10:00:00Z").addingTimeInterval(Double($0) * 60) })
            #expect(try await h.store.counts()[.queued] == 5)
            let job = try await h.record(try #require(try await h.store.scheduleRuns(id: "tick", limit: 1).first?.jobID))
            #expect(job.spec.lane == "cron")
            #expect(job.spec.idempotencyKey == "cron:tick:\(at("2027-01-15T10:05:00Z").epochMilliseconds)")
        },

        ConformanceCase("aFireFromAStaleCursorIsSupersededAndEnqueuesNothing") { h in
            let spec = try h.schedule(["every": .string("1m")])
            let record = try await h.store.putSchedule(spec, source: .api)
            h.clock.advance(by: 120)
            let tick = try #require(spec.plan(cursor: record.cursor, now: h.clock.now)).cursor
            let job = try spec.job(for: tick, id: "first", reader: EnvelopeReader())
            let first = try await h.store.fireSchedule(ScheduleFire(scheduleID: "tick", expectedCursor: record.cursor, cursor: tick,
                                                                   jobs: [(tick, job)]))
            guard case .fired = first else { Issue.record("expected the first fire to enqueue, got \(first)"); return }
            var again = job
            again.id = "second"
            #expect(try await h.store.fireSchedule(ScheduleFire(scheduleID: "tick", expectedCursor: record.cursor, cursor: tick,
                                                               jobs: [(tick, again)])) == .superseded)
            #expect(try await h.store.job(id: "second") == nil)
            await expectError(.notFound, "firing a schedule that does not exist") {
                _ = try await h.store.fireSchedule(ScheduleFire(scheduleID: "nope", expectedCursor: record.cursor, cursor: tick, jobs: []))
            }
        },

        ConformanceCase("noTickBeforeAScheduleWasCreatedFires") { h in
            h.clock.set(at("2027-01-15T10:00:30Z"))
            _ = try await h.store.putSchedule(try h.schedule(["cron": .string("0 * * * *")]), source: .api)
            #expect(try await h.pass().fired.isEmpty)
            h.clock.set(at("2027-01-15T11:00:01Z"))
            #expect(try await h.pass().fired.map(\.tick) == [at("2027-01-15T11:00:00Z")])
        },

        ConformanceCase("misfireAfterTenTicksDownFollowsThePolicy") { h in
            h.clock.set(at("2027-01-15T10:00:00Z"))
            for policy in MisfirePolicy.allCases {
                _ = try await h.store.putSchedule(try h.schedule(policy.rawValue, ["every": .string("1m")],
                                                                 ["misfire": .string(policy.rawValue), "overlap": .string("allow"),
                                                                  "misfire_grace_sec": .int(10)]),
                                                  source: .api)
            }
            // The scheduler was down for ten ticks; it comes back 5 s after the tenth.
            h.clock.set(at("2027-01-15T10:10:05Z"))
            _ = try await h.pass()
            let tenth = at("2027-01-15T10:10:00Z")
            #expect(try await h.firedTicks("skip") == [tenth])
            #expect(try await h.firedTicks("once") == [at("2027-01-15T10:09:00Z"), tenth])
            #expect(try await h.firedTicks("all") == (1...10).map { at("2027-01-15T10:00:00Z").addingTimeInterval(Double($0) * 60) })
            let notes = try await h.store.scheduleRuns(id: "skip", limit: 10).compactMap(\.note)
            #expect(notes == ["missed 9 of 10 due ticks (misfire: skip)"])
            // Down past the grace period as well: skip runs nothing, once still catches up.
            h.clock.set(at("2027-01-15T10:20:30Z"))
            _ = try await h.pass()
            #expect(try await h.firedTicks("skip").count == 1)
            #expect(try await h.firedTicks("once").last == at("2027-01-15T10:20:00Z"))
        },

        ConformanceCase("cronTicksAcrossSpringForwardAndFallBackFollowTheWallClock") { h in
            // New York: 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST.
            h.clock.set(at("2026-03-07T12:00:00Z"))
            let zone: [String: JSONValue] = ["timezone": .string("America/New_York"), "overlap": .string("allow")]
            _ = try await h.store.putSchedule(try h.schedule("fixed", ["cron": .string("30 2 * * *")], zone), source: .api)
            _ = try await h.store.putSchedule(try h.schedule("fall", ["cron": .string("30 1 * * *")], zone), source: .api)
            _ = try await h.store.putSchedule(try h.schedule("wild", ["cron": .string("*/30 1-3 * * *")], zone), source: .api)
            func walk(until end: String) async throws {
                while h.clock.now < at(end) {
                    h.clock.advance(by: 600)
                    _ = try await h.pass()
                }
            }
            try await walk(until: "2026-03-09T12:00:00Z")
            #expect(try await h.firedTicks("fixed").map(\.description)
                    == ["2026-03-08 07:00:00 +0000", "2026-03-09 06:30:00 +0000"], "02:30 did not exist on the 8th: it ran at the change")
            #expect(try await h.firedTicks("wild").prefix(4).map(\.description)
                    == ["2026-03-08 06:00:00 +0000", "2026-03-08 06:30:00 +0000", "2026-03-08 07:00:00 +0000",
                        "2026-03-08 07:30:00 +0000"], "02:00 and 02:30 never happened")
            h.clock.set(at("2026-10-31T12:00:00Z"))
            _ = try await h.store.setSchedulePaused(id: "wild", paused: true, reason: "moving on", ifVersion: nil)
            _ = try await h.store.setSchedulePaused(id: "wild", paused: false, reason: nil, ifVersion: nil)
            let before = try await h.firedTicks("wild").count
            try await walk(until: "2026-11-01T12:00:00Z")
            #expect(try await h.firedTicks("fall").suffix(1).map(\.description) == ["2026-11-01 05:30:00 +0000"],
                    "01:30 happened twice on the 1st: it ran on the first pass only")
            #expect(try await h.firedTicks("wild").dropFirst(before).map(\.description)
                    == ["05:00", "05:30", "06:00", "06:30", "07:00", "07:30", "08:00", "08:30"].map { "2026-11-01 \($0):00 +0000" },
                    "the repeated hour runs again")
        },

        ConformanceCase("aTransientFailureRetriesInsideItsTickAndTheScheduleStaysActive") { h in
            h.clock.set(at("2027-01-15T10:00:30Z"))
            _ = try await h.store.putSchedule(try h.schedule(["every": .string("1m")], ["pause_after_failures": .int(1)]), source: .api)
            h.clock.advance(by: 60)
            let fired = try #require(try await h.pass().fired.first)
            for _ in 0..<2 {
                let lease = try await h.claimOne("n1")
                guard case .retrying(let when, _) = try await h.store.fail(lease, failure: .transient("http_429", "rate limited"),
                                                                            report: .empty) else {
                    Issue.record("expected a retry")
                    return
                }
                h.clock.set(when.addingTimeInterval(0.1))
            }
            #expect(try await h.runToSuccess("n1") == fired.jobID)
            _ = try await h.pass()
            let record = try await h.scheduleRecord("tick")
            #expect(record.state == .active)
            #expect(try await h.store.scheduleRuns(id: "tick", limit: 10).filter { $0.jobID != nil }.count >= 1)
        },

        ConformanceCase("repeatedFailuresPauseTheScheduleWithAReasonAndResumeStartsAgain") { h in
            h.clock.set(at("2027-01-15T10:00:30Z"))
            _ = try await h.store.putSchedule(try h.schedule(["every": .string("1m")], ["pause_after_failures": .int(2)]), source: .api)
            for _ in 0..<2 {
                h.clock.advance(by: 60)
                #expect(try await h.pass().fired.count == 1)
                try await h.failNewestRun("tick")
            }
            h.clock.advance(by: 60)
            let outcome = try await h.pass()
            #expect(outcome.fired.isEmpty, "a schedule that is pausing fires nothing")
            let paused = try #require(outcome.paused.first)
            #expect(paused.state == .paused)
            #expect(paused.reason?.hasPrefix("2 consecutive runs failed") == true, "\(paused.reason ?? "")")
            #expect(paused.reason?.contains("exit_code") == true)
            h.clock.advance(by: 600)
            #expect(try await h.pass().fired.isEmpty, "paused: no ticks")
            let resumed = try #require(try await h.store.setSchedulePaused(id: "tick", paused: false, reason: nil, ifVersion: nil))
            #expect(resumed.state == .active && resumed.reason == nil)
            #expect(resumed.cursor == h.clock.now, "ticks due while paused are not run")
            h.clock.advance(by: 60)
            let after = try await h.pass()
            #expect(after.fired.count == 1, "the failures before the resume do not count again")
            #expect(try await h.scheduleRecord("tick").state == .active)
        },

        ConformanceCase("overlapSkipRecordsTheTickWithoutAJobWhileThePreviousRunRuns") { h in
            h.clock.set(at("2027-01-15T10:00:30Z"))
            _ = try await h.store.putSchedule(try h.schedule(["every": .string("1m")]), source: .api)
            h.clock.advance(by: 60)
            #expect(try await h.pass().fired.count == 1)
            let lease = try await h.claimOne("n1")
            h.clock.advance(by: 60)
            let outcome = try await h.pass()
            #expect(outcome.fired.isEmpty)
            #expect(outcome.skipped.first?.note.contains("still running (overlap: skip)") == true)
            _ = try await h.store.complete(lease)
            h.clock.advance(by: 60)
            #expect(try await h.pass().fired.count == 1, "the next tick after the run finished fires")
        },

        ConformanceCase("overlapQueueEnqueuesTheTickButItWaitsForThePreviousRun") { h in
            h.clock.set(at("2027-01-15T10:00:30Z"))
            _ = try await h.store.putSchedule(try h.schedule(["every": .string("1m")], ["overlap": .string("queue")]), source: .api)
            h.clock.advance(by: 60)
            _ = try await h.pass()
            let first = try await h.claimOne("n1")
            h.clock.advance(by: 60)
            #expect(try await h.pass().fired.count == 1)
            #expect(try await h.store.claim(ClaimRequest(nodeID: "n2", limit: 5)).isEmpty, "one run of the schedule at a time")
            _ = try await h.store.complete(first)
            #expect(try await h.store.claim(ClaimRequest(nodeID: "n2", limit: 5)).count == 1)
        },

        ConformanceCase("aOneShotIsDeletedAfterItsRunSucceedsButKeptVisiblyAfterAFailure") { h in
            h.clock.set(at("2027-01-15T10:00:00Z"))
            _ = try await h.store.putSchedule(try h.schedule("ok", ["at": .string("2027-01-15T10:05:00Z")], ["delete_after_run": .bool(true)]),
                                              source: .api)
            _ = try await h.store.putSchedule(try h.schedule("bad", ["at": .string("2027-01-15T10:05:00Z")],
                                                             ["delete_after_run": .bool(true), "pause_after_failures": .int(1)]),
                                              source: .api)
            h.clock.set(at("2027-01-15T10:05:01Z"))
            let fired = try await h.pass().fired
            #expect(fired.count == 2)
            let okJob = try #require(fired.first { $0.scheduleID == "ok" }).jobID
            for _ in 0..<2 {
                let lease = try await h.claimOne("n1")
                if lease.jobID == okJob {
                    _ = try await h.store.complete(lease)
                } else {
                    _ = try await h.store.fail(lease, failure: .fatal("exit_code", "exited with status 2"), report: .empty)
                }
            }
            h.clock.advance(by: 1)
            let outcome = try await h.pass()
            #expect(outcome.deleted == ["ok"])
            #expect(try await h.store.schedules().map(\.id) == ["bad"])
            #expect(try await h.scheduleRecord("bad").state == .paused, "a failed one-shot stays, paused with its reason")
            h.clock.advance(by: 3600)
            #expect(try await h.pass().fired.isEmpty, "a one-shot never fires twice")
        },

        ConformanceCase("aManualRunEnqueuesAtOnceAndLeavesTheCursorAlone") { h in
            let record = try await h.store.putSchedule(try h.schedule(["every": .string("1h")]), source: .api)
            let spec = record.spec
            let now = h.clock.now
            let result = try await h.store.fireSchedule(ScheduleFire(
                scheduleID: "tick", expectedCursor: nil, cursor: nil,
                jobs: [(now, try spec.job(for: now, manual: true, id: "manual-1", reader: EnvelopeReader()))]))
            #expect(result == .fired([EnqueueResult(jobID: "manual-1", deduplicated: false)]))
            #expect(try await h.scheduleRecord("tick").cursor == record.cursor)
            let run = try #require(try await h.store.scheduleRuns(id: "tick", limit: 1).first)
            #expect(run.manual && run.jobID == "manual-1" && run.jobState == .queued)
        },

        ConformanceCase("redefiningAScheduleKeepsItsStateAndCursorAndConfigSyncRemovesOnlyConfigSchedules") { h in
            let first = try await h.store.putSchedule(try h.schedule("a", ["every": .string("1m")]), source: .config)
            _ = try await h.store.putSchedule(try h.schedule("b", ["every": .string("1m")]), source: .api)
            _ = try await h.store.setSchedulePaused(id: "a", paused: true, reason: "by hand", ifVersion: nil)
            h.clock.advance(by: 30)
            let changed = try await h.store.putSchedule(try h.schedule("a", ["every": .string("1m")], ["lane": .string("reports")]),
                                                        source: .config)
            #expect(changed.state == .paused && changed.reason == "by hand")
            #expect(changed.cursor == first.cursor)
            #expect(changed.spec.lane == "reports")
            #expect(changed.version > first.version)
            // A stale version does not pause: the schedule changed since it was read.
            #expect(try await h.store.setSchedulePaused(id: "a", paused: true, reason: "late", ifVersion: first.version) == nil)
            let sync = try await h.store.syncConfigSchedules([try h.schedule("c", ["every": .string("1m")])])
            #expect(sync.written == ["c"] && sync.removed == ["a"])
            #expect(try await h.store.schedules().map(\.id) == ["b", "c"])
            #expect(try await h.store.syncConfigSchedules([try h.schedule("c", ["every": .string("1m")])]).written.isEmpty,
                    "an unchanged schedule is not written again")
            await expectError(.notFound, "removing a schedule that does not exist") { try await h.store.removeSchedule(id: "a") }
            await expectError(.notFound, "pausing a schedule that does not exist") {
                _ = try await h.store.setSchedulePaused(id: "zz", paused: true, reason: nil, ifVersion: nil)
            }
        },

        ConformanceCase("aRunLongerThanManyTicksStillBlocksOverlapAndItsSkippedTicksAreTrimmed") { h in
            h.clock.set(at("2027-01-15T10:00:00Z").addingTimeInterval(0.5))
            _ = try await h.store.putSchedule(try h.schedule(["every": .string("1s")], ["pause_after_failures": .int(1)]), source: .api)
            h.clock.advance(by: 1)
            #expect(try await h.pass().fired.count == 1)
            let lease = try await h.claimOne("n1")
            var fired = 0
            for _ in 0..<150 {
                h.clock.advance(by: 1)
                fired += try await h.pass().fired.count
            }
            #expect(fired == 0, "the run is still going after 150 ticks: none of them starts another")
            let notes = try await h.store.scheduleRuns(id: "tick", limit: 1000).filter { $0.jobID == nil }
            #expect(notes.count == ScheduleRows.notesKept, "only the newest skipped ticks are kept")
            _ = try await h.store.heartbeat([lease])
        },

        ConformanceCase("aManualRunOfAOneShotDoesNotCountAsItsRun") { h in
            h.clock.set(at("2027-01-15T10:00:00Z"))
            let record = try await h.store.putSchedule(
                try h.schedule(["at": .string("2027-01-15T12:00:00Z")], ["delete_after_run": .bool(true)]), source: .api)
            let now = h.clock.now
            _ = try await h.store.fireSchedule(ScheduleFire(
                scheduleID: "tick", expectedCursor: nil, cursor: nil,
                jobs: [(now, try record.spec.job(for: now, manual: true, id: "try-it", reader: EnvelopeReader()))]))
            #expect(try await h.runToSuccess("n1") == "try-it")
            h.clock.advance(by: 60)
            #expect(try await h.pass().deleted.isEmpty, "the one-shot has not run yet")
            h.clock.set(at("2027-01-15T12:00:01Z"))
            #expect(try await h.pass().fired.count == 1)
            _ = try await h.runToSuccess("n1")
            h.clock.advance(by: 1)
            #expect(try await h.pass().deleted == ["tick"])
        },

        ConformanceCase("aNewTriggerStartsFromNowAndAStaleDefinitionDoesNotFire") { h in
            h.clock.set(at("2027-01-15T10:00:30Z"))
            let first = try await h.store.putSchedule(try h.schedule(["cron": .string("0 3 * * *")]), source: .api)
            h.clock.set(at("2027-01-15T15:00:30Z"))
            let changed = try await h.store.putSchedule(try h.schedule(["cron": .string("0 * * * *")]), source: .api)
            #expect(changed.cursor == h.clock.now, "the hours before the change are not missed ticks of the new trigger")
            #expect(try await h.pass().fired.isEmpty)
            // A pass that read the old definition cannot fire once the schedule changed.
            let tick = at("2027-01-15T16:00:00Z")
            h.clock.set(tick.addingTimeInterval(1))
            let stale = try await h.store.fireSchedule(ScheduleFire(
                scheduleID: "tick", expectedCursor: changed.cursor, expectedVersion: first.version, cursor: tick,
                jobs: [(tick, try first.spec.job(for: tick, id: "old", reader: EnvelopeReader()))]))
            #expect(stale == .superseded)
            #expect(try await h.pass().fired.map(\.tick) == [tick])
        },

        ConformanceCase("aConfigurationScheduleIsNotReplacedThroughTheAPI") { h in
            _ = try await h.store.putSchedule(try h.schedule(["every": .string("1m")]), source: .config)
            await expectError(.invalidState, "replacing a configuration schedule through the API") {
                _ = try await h.store.putSchedule(try h.schedule(["every": .string("5m")]), source: .api)
            }
            #expect(try await h.scheduleRecord("tick").spec.trigger == .every(seconds: 60))
        },
    ]
}

extension JobStoreConformance {
    static let healthCases: [ConformanceCase] = [
        ConformanceCase("recentEventsListTheNewestOfTheGivenKindsAcrossJobs") { h in
            let id = try await h.enqueue(h.spec())
            _ = try await h.enqueue(h.spec())
            try await h.store.release(try await h.claimOne("n1"), reason: "shutdown")
            _ = try await h.claimOne("n2")
            let events = try await h.store.recentEvents(kinds: [.claimed, .released], limit: 2, window: 1000)
            #expect(events.map(\.kind) == [.claimed, .released])
            #expect(events.first?.jobID == id && events.first?.nodeID == "n2" && events.first?.detail["from_node"] == "n1")
            #expect(try await h.store.recentEvents(kinds: [.claimed], limit: 10, window: 1).isEmpty == false)
        },

        ConformanceCase("activityCountsAttemptsFailuresAndDeadLettersOfThePeriod") { h in
            let start = h.clock.now
            let retried = try await h.enqueue(h.spec(retry: RetryPolicy(maxAttempts: 2, initialSec: 1, jitter: 0)))
            _ = try await h.enqueue(h.spec())
            let first = try await h.claimOne("n1")
            #expect(first.jobID == retried)
            _ = try await h.store.fail(first, failure: .transient("exit_code", "75"), report: .empty)
            _ = try await h.runToSuccess("n1")
            h.clock.advance(by: 2)
            let again = try await h.claimOne("n1")
            _ = try await h.store.fail(again, failure: .transient("exit_code", "75"), report: .empty)
            let stats = try await h.store.activity(since: start)
            #expect(stats == ActivityStats(attempts: 3, failedAttempts: 2, deadLetters: 1))
            h.clock.advance(by: 60)
            #expect(try await h.store.activity(since: h.clock.now) == ActivityStats(attempts: 0, failedAttempts: 0, deadLetters: 0))
        },
    ]
}
