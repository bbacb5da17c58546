import BatonCore
import Foundation
import Testing

private let utc = TimeZone(identifier: "UTC")!
private let newYork = TimeZone(identifier: "America/New_York")!

private func date(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }
private func iso(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

/// The fire times after `start`, in UTC, as ISO 8601 text.
private func ticks(_ expression: String, _ zone: TimeZone, after start: String, count: Int) throws -> [String] {
    let cron = try CronExpression(expression, timeZone: zone, field: "cron")
    var out: [String] = []
    var at = date(start)
    for _ in 0..<count {
        guard let next = cron.next(after: at) else { break }
        out.append(iso(next))
        at = next
    }
    return out
}

private let noopJob: JSONValue = .object(["stages": .array([.object(["name": .string("s"), "run": .object(["noop": .object([:])])])])])

private func schedule(_ fields: [String: JSONValue]) throws -> ScheduleSpec {
    var all = fields
    all["id"] = all["id"] ?? .string("nightly")
    all["job"] = all["job"] ?? noopJob
    return try ScheduleSpec.read(.object(all), path: "schedules[0]")
}

private func readError(_ fields: [String: JSONValue]) -> BatonError? {
    do { _ = try schedule(fields) } catch let error as BatonError { return error } catch { return nil }
    return nil
}

@Suite struct CronExpressionTests {
    @Test func stepsListsRangesAndNamesExpandAsCronDoes() throws {
        #expect(try ticks("*/15 * * * *", utc, after: "2026-11-23T10:07:00Z", count: 3)
                == ["2026-11-23T10:15:00Z", "2026-11-23T10:30:00Z", "2026-11-23T10:45:00Z"])
        #expect(try ticks("0 9-17/4 * * MON-FRI", utc, after: "2026-11-21T00:00:00Z", count: 4)  // a Saturday
                == ["2026-11-23T09:00:00Z", "2026-11-23T13:00:00Z", "2026-11-23T17:00:00Z", "2026-11-24T09:00:00Z"])
        #expect(try ticks("5,35 0 1 jan,JUL *", utc, after: "2026-06-01T00:00:00Z", count: 3)
                == ["2026-07-01T00:05:00Z", "2026-07-01T00:35:00Z", "2027-01-01T00:05:00Z"])
        #expect(try ticks("@weekly", utc, after: "2026-11-23T00:00:00Z", count: 1) == ["2026-11-29T00:00:00Z"])
        #expect(try ticks("0 0 * * 7", utc, after: "2026-11-23T00:00:00Z", count: 1) == ["2026-11-29T00:00:00Z"])
    }

    @Test func restrictedDayOfMonthAndWeekdayMatchEither() throws {
        // Friday the 13th or the 13th or any Friday, as every cron reads it.
        #expect(try ticks("0 0 13 * FRI", utc, after: "2026-11-10T00:00:00Z", count: 3)
                == ["2026-11-13T00:00:00Z", "2026-11-20T00:00:00Z", "2026-11-27T00:00:00Z"])
        #expect(try ticks("0 0 13 * *", utc, after: "2026-11-10T00:00:00Z", count: 2)
                == ["2026-11-13T00:00:00Z", "2026-12-13T00:00:00Z"])
    }

    @Test func anExpressionThatNeverMatchesHasNoNextTime() throws {
        let cron = try CronExpression("0 0 30 2 *", timeZone: utc, field: "cron")
        #expect(cron.next(after: date("2026-01-01T00:00:00Z")) == nil)
    }

    @Test func badFieldsNameTheFieldAndTheValue() {
        func message(_ text: String) -> String? {
            do { _ = try CronExpression(text, timeZone: utc, field: "schedules[0].cron"); return nil } catch { return error.description }
        }
        #expect(message("61 * * * *") == "schedules[0].cron: minute field \"61\": 61 is outside 0-59")
        #expect(message("* * * *")?.hasPrefix("schedules[0].cron: expected 5 fields") == true)
        #expect(message("0 0 * * funday")?.contains("day-of-week field \"funday\"") == true)
        #expect(message("*/0 * * * *")?.contains("expected a step from 1 to 59") == true)
        #expect(message("0 5-2 * * *")?.contains("range 5-2 runs backwards") == true)
    }

    /// New York springs forward on 2026-03-08 at 02:00 EST (07:00 UTC) to 03:00 EDT.
    @Test func springForwardFiresAFixedTimeAtTheChangeAndSkipsMissingWildcardMinutes() throws {
        // 02:30 does not exist that night: the fixed-time job fires at the change, once.
        #expect(try ticks("30 2 * * *", newYork, after: "2026-03-07T00:00:00Z", count: 3)
                == ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"])
        // A wildcard schedule follows the clock: 02:00 and 02:30 never happen.
        #expect(try ticks("*/30 * * * *", newYork, after: "2026-03-08T06:00:00Z", count: 3)
                == ["2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"])
    }

    /// New York falls back on 2026-11-01 at 02:00 EDT (06:00 UTC) to 01:00 EST.
    @Test func fallBackFiresAFixedTimeOnceAndWildcardMinutesInBothPasses() throws {
        #expect(try ticks("30 1 * * *", newYork, after: "2026-10-31T12:00:00Z", count: 2)
                == ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"])
        #expect(try ticks("*/30 * * * *", newYork, after: "2026-11-01T04:45:00Z", count: 5)
                == ["2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z",
                    "2026-11-01T07:00:00Z"])
        // Asked from inside the repeated hour (01:15 EST), the next fixed-time run is the next day's.
        #expect(try ticks("30 1 * * *", newYork, after: "2026-11-01T06:15:00Z", count: 1) == ["2026-11-02T06:30:00Z"])
    }
}

@Suite struct ScheduleSpecTests {
    @Test func intervalsAreAnchoredToTheEpochSoEveryNodeComputesTheSameTicks() {
        let every = ScheduleTrigger.every(seconds: 30)
        #expect(every.next(after: date("2026-11-23T10:00:07Z")) == date("2026-11-23T10:00:30Z"))
        #expect(every.next(after: date("2026-11-23T10:00:30Z")) == date("2026-11-23T10:01:00Z"))
    }

    @Test func readsEveryForm() throws {
        #expect(try schedule(["every": .string("1h30m")]).trigger == .every(seconds: 5400))
        #expect(try schedule(["every": .string("@every 1s")]).trigger == .every(seconds: 1))
        let cron = try schedule(["cron": .string("0 9 * * *"), "timezone": .string("Europe/Berlin")])
        #expect(cron.trigger.summary == "cron 0 9 * * * (Europe/Berlin)")
        let once = try schedule(["at": .string("2026-11-24T10:00:00+01:00"), "delete_after_run": .bool(true)])
        #expect(once.trigger == .at(date("2026-11-24T09:00:00Z")))
        #expect(once.lane == "cron" && once.overlap == .skip && once.misfire == .once && once.pauseAfterFailures == 3)
        // What the store keeps reads back to the same schedule.
        #expect(try ScheduleSpec.read(cron.json, path: "") == cron)
        #expect(try ScheduleSpec.read(once.json, path: "") == once)
    }

    @Test func badSchedulesNameTheFieldTheValueAndWhatWasExpected() {
        #expect(readError(["every": .string("10x")])?.description
                == "schedules[0].every: expected an interval such as 30s, 5m, 1h30m or 1d, got \"10x\"")
        #expect(readError(["every": .string("1m"), "cron": .string("* * * * *")])?.description
                == "schedules[0].every: expected only one of cron, every and at, got cron and every")
        #expect(readError([:])?.field == "schedules[0].cron")
        #expect(readError(["cron": .string("0 9 * * *"), "timezone": .string("Mars/Olympus")])?.description
                == "schedules[0].timezone: expected an IANA time zone such as Europe/Berlin or America/New_York, got \"Mars/Olympus\"")
        #expect(readError(["every": .string("1m"), "overlap": .string("sometimes")])?.description
                == "schedules[0].overlap: expected one of skip, queue, allow, got \"sometimes\"")
        #expect(readError(["every": .string("1m"), "delete_after_run": .bool(true)])?.field == "schedules[0].delete_after_run")
        #expect(readError(["at": .string("tomorrow")])?.field == "schedules[0].at")
        #expect(readError(["cron": .string("0 0 30 2 *")])?.description == "schedules[0].cron: \"0 0 30 2 *\" never fires (no such date)")
        var job = noopJob
        if case .object(var fields) = job { fields["job_id"] = .string("fixed"); job = .object(fields) }
        #expect(readError(["every": .string("1m"), "job": job])?.field == "schedules[0].job.job_id")
        #expect(readError(["every": .string("1m"), "job": .object(["stages": .array([])])])?.field == "schedules[0].job.stages")
    }

    @Test func eachTickEnqueuesOneJobKeyedByScheduleAndTime() throws {
        let spec = try schedule(["every": .string("1m"), "lane": .string("reports")])
        let job = try spec.job(for: date("2026-11-23T10:00:00Z"), id: "j1", reader: EnvelopeReader())
        #expect(job.lane == "reports")
        #expect(job.idempotencyKey == "cron:nightly:\(date("2026-11-23T10:00:00Z").epochMilliseconds)")
        #expect(job.sessionKey == "cron:nightly", "without overlap the schedule's jobs run one at a time")
        var allow = spec
        allow.overlap = .allow
        #expect(try allow.job(for: date("2026-11-23T10:00:00Z"), id: "j2", reader: EnvelopeReader()).sessionKey == nil)
    }
}

@Suite struct MisfireTests {
    /// Every minute, last handled at 10:00, found again at 10:10:30: ten ticks due, all but
    /// the newest missed.
    func plan(_ misfire: MisfirePolicy, limit: Int = 100) throws -> SchedulePlan {
        var spec = try schedule(["every": .string("1m"), "misfire": .string(misfire.rawValue)])
        spec.misfireLimit = limit
        return try #require(spec.plan(cursor: date("2026-11-23T10:00:00Z"), now: date("2026-11-23T10:10:30Z")))
    }

    @Test func skipDropsTheMissedTicksAndRunsTheOneOnTime() throws {
        let plan = try plan(.skip)
        #expect(plan.due == 10 && plan.late == 9 && plan.missed == 9)
        #expect(plan.fire == [date("2026-11-23T10:10:00Z")])
        #expect(plan.cursor == date("2026-11-23T10:10:00Z"))
    }

    @Test func onceCollapsesTheMissedTicksIntoOneCatchUpRun() throws {
        let plan = try plan(.once)
        #expect(plan.fire == [date("2026-11-23T10:09:00Z"), date("2026-11-23T10:10:00Z")])
        #expect(plan.missed == 8)
    }

    @Test func allRunsEveryMissedTickUpToTheLimit() throws {
        #expect(try plan(.all).fire.count == 10)
        let bounded = try plan(.all, limit: 3)
        #expect(bounded.fire == ["10:07", "10:08", "10:09", "10:10"].map { date("2026-11-23T\($0):00Z") })
        #expect(bounded.missed == 6)
    }

    @Test func aLongOutageOfAFastIntervalIsCountedWithoutVisitingEveryTick() throws {
        let spec = try schedule(["every": .string("1s"), "misfire": .string("once")])
        let plan = try #require(spec.plan(cursor: date("2026-11-01T00:00:00Z"), now: date("2026-11-23T00:00:00Z")))
        #expect(plan.due == 22 * 86_400)
        #expect(plan.fire == [date("2026-11-22T23:59:59Z"), date("2026-11-23T00:00:00Z")], "one catch-up run and the tick on time")
        #expect(plan.cursor == date("2026-11-23T00:00:00Z"))
    }

    @Test func nothingIsDueBeforeTheNextTickOrWhileDisabled() throws {
        var spec = try schedule(["every": .string("1m")])
        #expect(spec.plan(cursor: date("2026-11-23T10:00:00Z"), now: date("2026-11-23T10:00:59Z")) == nil)
        spec.enabled = false
        #expect(spec.plan(cursor: date("2026-11-23T10:00:00Z"), now: date("2026-11-23T11:00:00Z")) == nil)
    }
}
