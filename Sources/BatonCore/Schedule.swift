import Foundation

/// When a schedule fires.
public enum ScheduleTrigger: Sendable, Hashable {
    /// A cron expression in its time zone.
    case cron(CronExpression)
    /// Every so many seconds, on multiples of the interval since the Unix epoch, so every node
    /// computes the same ticks without talking to the others.
    case every(seconds: Int)
    /// Once, at this instant (a one-shot job).
    case at(Date)

    /// The first tick strictly after `date`.
    public func next(after date: Date) -> Date? {
        switch self {
        case .cron(let expression):
            return expression.next(after: date)
        case .every(let seconds):
            let interval = Int64(seconds) * 1000
            let ms = date.epochMilliseconds
            return Date(epochMilliseconds: (CronExpression.floorDiv(ms, interval) + 1) * interval)
        case .at(let instant):
            return instant > date ? instant : nil
        }
    }

    /// How the trigger reads in configuration and listings.
    public var summary: String {
        switch self {
        case .cron(let expression):
            expression.timeZone.identifier == "UTC" || expression.timeZone.identifier == "GMT"
                ? "cron \(expression.text)" : "cron \(expression.text) (\(expression.timeZone.identifier))"
        case .every(let seconds): "@every \(Self.duration(seconds))"
        case .at(let instant): "at \(ScheduleSpec.instantText(instant))"
        }
    }

    static func duration(_ seconds: Int) -> String {
        var rest = seconds
        var text = ""
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] where rest >= size {
            text += "\(rest / size)\(unit)"
            rest %= size
        }
        return text
    }

    /// Reads `30s`, `5m`, `1h30m`, `1d` (optionally after `@every `): whole seconds, at least one.
    static func readInterval(_ text: String, field: String) throws(BatonError) -> Int {
        var rest = Substring(text.hasPrefix("@every ") ? String(text.dropFirst(7)) : text).drop { $0 == " " }
        let expected = "expected an interval such as 30s, 5m, 1h30m or 1d, got \"\(text)\""
        var total = 0
        guard !rest.isEmpty else { throw BatonError(.invalidInput, field: field, expected) }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard let number = Int(digits), number <= 1_000_000, let unit = rest.dropFirst(digits.count).first,
                  let size = ["s": 1, "m": 60, "h": 3600, "d": 86_400][String(unit)] else {
                throw BatonError(.invalidInput, field: field, expected)
            }
            total += number * size
            rest = rest.dropFirst(digits.count + 1)
        }
        guard total >= 1, total <= 366 * 86_400 else {
            throw BatonError(.invalidInput, field: field, "expected an interval from 1s to 366d, got \"\(text)\"")
        }
        return total
    }
}

/// What happens to a tick while the previous tick's job of the schedule has not finished.
public enum OverlapPolicy: String, Sendable, Hashable, CaseIterable {
    /// The tick is recorded as skipped; no job.
    case skip
    /// The tick's job waits until the previous one finishes (the schedule is one session).
    case queue
    /// The tick's job runs alongside.
    case allow
}

/// What happens to ticks missed while no scheduler ran (every node down, say). A tick is
/// missed when the next tick is due too by the time a scheduler finds it, or when it is found
/// more than `misfire_grace_sec` after its time.
public enum MisfirePolicy: String, Sendable, Hashable, CaseIterable {
    /// Missed ticks are dropped.
    case skip
    /// Missed ticks collapse into one catch-up run (the latest of them).
    case once
    /// Every missed tick runs, at most `misfire_limit` of them (the latest).
    case all
}

/// One schedule: when it fires and the job each tick enqueues.
public struct ScheduleSpec: Sendable, Hashable {
    public var id: String
    public var trigger: ScheduleTrigger
    /// The envelope each tick enqueues (validated when the schedule is defined; `job_id`,
    /// `idempotency_key` and `lane` are set per tick).
    public var job: JSONValue
    public var lane: String
    /// A disabled schedule is kept but never fires (configuration's switch; pausing is the
    /// operator's).
    public var enabled: Bool
    public var overlap: OverlapPolicy
    public var misfire: MisfirePolicy
    public var misfireGraceSec: Int
    public var misfireLimit: Int
    /// Consecutive failed runs (dead-lettered or expired) after which the schedule pauses.
    public var pauseAfterFailures: Int
    /// A one-shot schedule is deleted once its run succeeded (never after a failure).
    public var deleteAfterRun: Bool

    public init(id: String, trigger: ScheduleTrigger, job: JSONValue, lane: String = "cron", enabled: Bool = true,
                overlap: OverlapPolicy = .skip, misfire: MisfirePolicy = .once, misfireGraceSec: Int = 60,
                misfireLimit: Int = 100, pauseAfterFailures: Int = 3, deleteAfterRun: Bool = false) {
        self.id = id
        self.trigger = trigger
        self.job = job
        self.lane = lane
        self.enabled = enabled
        self.overlap = overlap
        self.misfire = misfire
        self.misfireGraceSec = misfireGraceSec
        self.misfireLimit = misfireLimit
        self.pauseAfterFailures = pauseAfterFailures
        self.deleteAfterRun = deleteAfterRun
    }

    static let keys = ["id", "cron", "every", "at", "timezone", "job", "lane", "enabled", "overlap", "misfire",
                       "misfire_grace_sec", "misfire_limit", "pause_after_failures", "delete_after_run"]
    /// Envelope fields a schedule sets for each tick.
    static let perTickKeys = ["job_id", "idempotency_key", "lane"]

    /// Reads a schedule from configuration or the CLI/API, naming the field of every problem.
    public static func read(_ value: JSONValue, path: String, reader: EnvelopeReader = EnvelopeReader()) throws(BatonError) -> ScheduleSpec {
        let r = try ObjectReader(value, path: path, allowedKeys: keys)
        guard let id = try r.string("id", maxLength: 128, allowed: Identifier.isAllowed,
                                    what: "a schedule id of letters, digits and - _ . :") else {
            throw BatonError(.invalidInput, field: r.field("id"), "is required: expected a schedule id")
        }
        let given = ["cron", "every", "at"].filter(r.has)
        guard given.count == 1 else {
            throw BatonError(.invalidInput, field: given.count > 1 ? r.field(given[1]) : r.field("cron"),
                             given.count > 1 ? "expected only one of cron, every and at, got \(given.joined(separator: " and "))"
                                             : "is required: expected one of cron (a cron expression), every (an interval such as 30s) or at (an ISO 8601 time)")
        }
        let zoneName = try r.string("timezone", maxLength: 64)
        if zoneName != nil && given[0] != "cron" {
            throw BatonError(.invalidInput, field: r.field("timezone"), "only applies with cron: expected no timezone with \(given[0])")
        }
        let trigger: ScheduleTrigger
        switch given[0] {
        case "cron":
            var zone = TimeZone(identifier: "UTC")!
            if let zoneName {
                guard let named = TimeZone(identifier: zoneName) else {
                    throw BatonError(.invalidInput, field: r.field("timezone"),
                                     "expected an IANA time zone such as Europe/Berlin or America/New_York, got \"\(zoneName)\"")
                }
                zone = named
            }
            let text = try r.string("cron", maxLength: 256)!
            let expression = try CronExpression(text, timeZone: zone, field: r.field("cron"))
            guard expression.next(after: Date(timeIntervalSince1970: 0)) != nil || expression.next(after: Date()) != nil else {
                throw BatonError(.invalidInput, field: r.field("cron"), "\"\(text)\" never fires (no such date)")
            }
            trigger = .cron(expression)
        case "every":
            let text = try r.string("every", maxLength: 64)!
            trigger = .every(seconds: try ScheduleTrigger.readInterval(text, field: r.field("every")))
        default:
            let text = try r.string("at", maxLength: 64)!
            guard let instant = Self.readInstant(text) else {
                throw BatonError(.invalidInput, field: r.field("at"),
                                 "expected an ISO 8601 time with its offset, such as 2026-11-24T09:00:00Z or 2026-11-24T10:00:00+01:00, got \"\(text)\"")
            }
            trigger = .at(instant)
        }
        guard let job = r.value("job") else {
            throw BatonError(.invalidInput, field: r.field("job"), "is required: expected the job envelope each tick enqueues")
        }
        if case .object(let fields) = job, let key = perTickKeys.first(where: { fields[$0] != nil && fields[$0] != .null }) {
            throw BatonError(.invalidInput, field: "\(r.field("job")).\(key)",
                             key == "lane" ? "is set by the schedule: expected the schedule's own lane field instead"
                                           : "is set for each tick by the schedule: expected no \(key) in a schedule's job")
        }
        _ = try reader.read(job, path: r.field("job"))
        let lane = try r.string("lane", maxLength: 64, allowed: Identifier.isAllowed,
                                what: "a lane name of letters, digits and - _ . :") ?? "cron"
        let deleteAfterRun = try r.bool("delete_after_run") ?? false
        if deleteAfterRun, case .at = trigger {} else if deleteAfterRun {
            throw BatonError(.invalidInput, field: r.field("delete_after_run"), "only applies to one-shot schedules: expected at as well")
        }
        func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ type: T.Type) throws(BatonError) -> T? where T.RawValue == String {
            guard let text = try r.string(key, maxLength: 16) else { return nil }
            guard let value = T(rawValue: text) else {
                throw BatonError(.invalidInput, field: r.field(key),
                                 "expected one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(text)\"")
            }
            return value
        }
        return ScheduleSpec(id: id, trigger: trigger, job: job, lane: lane, enabled: try r.bool("enabled") ?? true,
                            overlap: try choice("overlap", OverlapPolicy.self) ?? .skip,
                            misfire: try choice("misfire", MisfirePolicy.self) ?? .once,
                            misfireGraceSec: try r.int("misfire_grace_sec", in: 0...86_400) ?? 60,
                            misfireLimit: try r.int("misfire_limit", in: 1...10_000) ?? 100,
                            pauseAfterFailures: try r.int("pause_after_failures", in: 1...1000) ?? 3,
                            deleteAfterRun: deleteAfterRun)
    }

    /// ISO 8601, with milliseconds when the instant has them (so that reading it back gives
    /// the same instant).
    static func instantText(_ instant: Date) -> String {
        let formatter = ISO8601DateFormatter()
        if instant.epochMilliseconds % 1000 != 0 { formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds] }
        return formatter.string(from: instant)
    }

    /// Checks a schedule being added (CLI or API) rather than read back: configuration and
    /// the store may keep a one-shot that already ran, but a new one in the past never fires.
    /// `field` names the input that gave `at`.
    public func checkNew(now: Date, field: String) throws(BatonError) {
        if case .at(let instant) = trigger, instant <= now {
            throw BatonError(.invalidInput, field: field,
                             "\(Self.instantText(instant)) is in the past: expected a time to come")
        }
    }

    static func readInstant(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    /// The schedule as `read` takes it (what the store keeps, and what listings show).
    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "id": .string(id), "job": job, "lane": .string(lane), "enabled": .bool(enabled),
            "overlap": .string(overlap.rawValue), "misfire": .string(misfire.rawValue),
            "misfire_grace_sec": .int(Int64(misfireGraceSec)), "misfire_limit": .int(Int64(misfireLimit)),
            "pause_after_failures": .int(Int64(pauseAfterFailures)),
        ]
        switch trigger {
        case .cron(let expression):
            fields["cron"] = .string(expression.text)
            fields["timezone"] = .string(expression.timeZone.identifier)
        case .every(let seconds):
            fields["every"] = .string(ScheduleTrigger.duration(seconds))
        case .at(let instant):
            fields["at"] = .string(Self.instantText(instant))
            fields["delete_after_run"] = .bool(deleteAfterRun)
        }
        return .object(fields)
    }

    /// The job one tick enqueues. `tick` is the scheduled time (for a manual run, the time it
    /// was asked for); the idempotency key names both, so a tick can only ever make one job.
    public func job(for tick: Date, manual: Bool = false, id: String, reader: EnvelopeReader) throws(BatonError) -> JobSpec {
        var spec = try reader.read(job, path: "job")
        spec.id = id
        spec.lane = lane
        spec.idempotencyKey = "cron:\(self.id):\(manual ? "manual:" : "")\(tick.epochMilliseconds)"
        // Without overlap, the schedule's jobs are one session: ticks enqueued together (a
        // catch-up after downtime) run one after another.
        if overlap != .allow && spec.sessionKey == nil { spec.sessionKey = "cron:\(self.id)" }
        return spec
    }

    /// What to do about the ticks due after `cursor` (the last tick handled) up to `now`.
    /// Nil when none is due.
    public func plan(cursor: Date, now: Date) -> SchedulePlan? {
        guard enabled, let first = trigger.next(after: cursor), first <= now else { return nil }
        // At most this many ticks are looked at one by one; beyond that the oldest are only counted.
        let window = max(misfireLimit, 1) + 2
        var recent: [Date] = [first]
        func remember(_ tick: Date) {
            recent.append(tick)
            if recent.count > window { recent.removeFirst(recent.count - window) }
        }
        var total = 1
        var tick = first
        var visited = 0
        let grace = Double(misfireGraceSec)
        while let next = trigger.next(after: tick), next <= now {
            total += 1
            // Ticks far older than the grace period are late whatever else happens: jump
            // over long outages of an interval schedule without visiting every tick.
            if case .every(let seconds) = trigger, now.timeIntervalSince(next) > grace + Double(seconds * window) {
                let skip = Int((now.timeIntervalSince(next) - grace) / Double(seconds)) - window
                if skip > 0 {
                    tick = next.addingTimeInterval(Double(skip * seconds))
                    total += skip
                    remember(tick)
                    continue
                }
            }
            tick = next
            remember(next)
            // A cron schedule missed for months: the rest is handled by the next pass.
            visited += 1
            if visited > 200_000 { break }
        }
        // Of several ticks due at once, all but the newest are missed; the newest is missed
        // when found later than the grace period.
        let newest = recent.last!
        let onTime = now.timeIntervalSince(newest) <= grace ? [newest] : []
        let lateSeen = onTime.isEmpty ? recent : Array(recent.dropLast())
        let lateCount = total - onTime.count
        let fire: [Date]
        switch misfire {
        case .skip: fire = onTime
        case .once: fire = (lateSeen.last.map { [$0] } ?? []) + onTime
        case .all: fire = Array(lateSeen.suffix(misfireLimit)) + onTime
        }
        return SchedulePlan(due: total, fire: fire, missed: total - fire.count, late: lateCount, cursor: recent.last!)
    }
}

/// The ticks a scheduler pass handles for one schedule.
public struct SchedulePlan: Sendable, Hashable {
    /// Ticks due since the last one handled.
    public var due: Int
    /// The ticks that get a job, oldest first.
    public var fire: [Date]
    /// Due ticks that get none (misfire policy, overlap).
    public var missed: Int
    /// Due ticks found after their grace period.
    public var late: Int
    /// The newest due tick: the schedule's cursor once this plan is carried out.
    public var cursor: Date
}
