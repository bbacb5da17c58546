import BatonCore
import Foundation

/// Where a schedule was defined: configuration schedules follow the configuration (a node
/// that starts or reloads without one removes it); API schedules stay until removed.
public enum ScheduleSource: String, Sendable, Hashable, Codable {
    case config
    case api
}

/// A schedule as the store keeps it: its definition and its state in the cluster.
public struct ScheduleRecord: Sendable, Hashable {
    public enum State: String, Sendable, Hashable, Codable {
        case active
        /// Paused by an operator or after repeated failures; `reason` says which.
        case paused
    }

    public var spec: ScheduleSpec
    public var source: ScheduleSource
    public var state: State
    public var reason: String?
    public var pausedAt: Date?
    /// The newest tick handled (fired, skipped or missed); the next pass looks after it.
    public var cursor: Date
    public var createdAt: Date
    public var updatedAt: Date
    /// Failures before this do not count towards pausing again.
    public var resumedAt: Date?
    /// Bumped by every change of definition or state (not by firing): pausing after failures
    /// only applies to the version whose runs were counted.
    public var version: Int64

    public init(spec: ScheduleSpec, source: ScheduleSource, state: State, reason: String? = nil, pausedAt: Date? = nil,
                cursor: Date, createdAt: Date, updatedAt: Date, resumedAt: Date? = nil, version: Int64 = 1) {
        self.spec = spec
        self.source = source
        self.state = state
        self.reason = reason
        self.pausedAt = pausedAt
        self.cursor = cursor
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.resumedAt = resumedAt
        self.version = version
    }

    public var id: String { spec.id }

    /// When it fires next, seen from `now` (nil when paused, disabled or finished).
    public func nextFire(now: Date) -> Date? {
        guard state == .active, spec.enabled, let next = spec.trigger.next(after: cursor) else { return nil }
        // A tick already due fires at the next pass; one missed long ago is the misfire
        // policy's to decide, so the next regular tick is what a listing shows.
        if next <= now, now.timeIntervalSince(next) > Double(spec.misfireGraceSec) {
            return spec.trigger.next(after: now.addingTimeInterval(-1))
        }
        return next
    }
}

/// One tick of a schedule and what became of it.
public struct ScheduleRun: Sendable, Hashable {
    public var scheduleID: String
    /// The scheduled time (a manual run's: when it was asked for).
    public var tick: Date
    /// The job it enqueued; nil when the tick was skipped or missed (see `note`).
    public var jobID: String?
    /// Run now from the CLI or API rather than by the schedule.
    public var manual: Bool
    public var note: String?
    /// The job's state now.
    public var jobState: JobState?
    public var recordedAt: Date

    public init(scheduleID: String, tick: Date, jobID: String? = nil, manual: Bool = false, note: String? = nil,
                jobState: JobState? = nil, recordedAt: Date) {
        self.scheduleID = scheduleID
        self.tick = tick
        self.jobID = jobID
        self.manual = manual
        self.note = note
        self.jobState = jobState
        self.recordedAt = recordedAt
    }
}

/// One scheduler pass's decision for a schedule, carried out atomically: the cursor moves
/// from `expectedCursor` to `cursor` and the jobs are enqueued, or nothing happens because
/// another node moved the cursor first (which is how a tick fires once across nodes).
public struct ScheduleFire: Sendable {
    public var scheduleID: String
    /// The cursor the decision was made from; nil for a manual run, which leaves it alone.
    public var expectedCursor: Date?
    /// The definition the decision was made from: a schedule redefined, disabled or paused
    /// since does not fire on its old definition.
    public var expectedVersion: Int64?
    public var cursor: Date?
    public var jobs: [(tick: Date, spec: JobSpec)]
    /// Ticks recorded without a job (skipped for overlap, missed), with why.
    public var notes: [(tick: Date, note: String)]

    public init(scheduleID: String, expectedCursor: Date?, expectedVersion: Int64? = nil, cursor: Date?,
                jobs: [(tick: Date, spec: JobSpec)], notes: [(tick: Date, note: String)] = []) {
        self.scheduleID = scheduleID
        self.expectedCursor = expectedCursor
        self.expectedVersion = expectedVersion
        self.cursor = cursor
        self.jobs = jobs
        self.notes = notes
    }

    public var manual: Bool { expectedCursor == nil }
}

public enum ScheduleFireResult: Sendable, Hashable {
    case fired([EnqueueResult])
    /// Another node handled these ticks first (or the schedule was paused meanwhile).
    case superseded
}

extension JobStore {
    /// Makes the store's configuration schedules match `specs`: new and changed ones are
    /// written (keeping their state and cursor), ones no longer configured are removed.
    /// Returns the ids written and removed.
    public func syncConfigSchedules(_ specs: [ScheduleSpec]) async throws -> (written: [String], removed: [String]) {
        let existing = try await schedules()
        var written: [String] = []
        for spec in specs where existing.first(where: { $0.id == spec.id }).map({ $0.spec != spec || $0.source != .config }) ?? true {
            _ = try await putSchedule(spec, source: .config)
            written.append(spec.id)
        }
        let configured = Set(specs.map(\.id))
        var removed: [String] = []
        for record in existing where record.source == .config && !configured.contains(record.id) {
            try await removeSchedule(id: record.id)
            removed.append(record.id)
        }
        return (written, removed)
    }
}

/// What both engines share in reading and writing schedule rows.
public enum ScheduleRows {
    /// Records of ticks without a job kept per schedule (the newest).
    public static let notesKept = 100

    /// A schedule from the configuration is changed there, not through the CLI or API (the
    /// next configuration sync would undo it).
    public static func checkReplace(_ existing: ScheduleRecord, with spec: ScheduleSpec, source: ScheduleSource) throws {
        if existing.source == .config && source == .api {
            throw BatonError(.invalidState, field: "id",
                             "schedule \"\(spec.id)\" is defined in the configuration (schedules:); change it there, or use another id")
        }
    }

    public static func notFound(_ id: String) -> BatonError {
        BatonError(.notFound, field: "schedule", "no schedule with id \"\(id)\"")
    }

    /// A schedule from its stored columns (times in epoch milliseconds).
    public static func record(id: String, source: String, spec: String, state: String, reason: String?, pausedAt: Int64?,
                              cursor: Int64, createdAt: Int64, updatedAt: Int64, resumedAt: Int64?,
                              version: Int64) throws -> ScheduleRecord {
        let parsed: ScheduleSpec
        do {
            parsed = try ScheduleSpec.read(try JSONValue.parse(Data(spec.utf8), what: "spec"), path: "schedules.\(id)")
        } catch {
            throw BatonError(.internal, field: "schedules.\(id)", "stored schedule cannot be read: \(error)")
        }
        return ScheduleRecord(spec: parsed, source: ScheduleSource(rawValue: source) ?? .api,
                              state: ScheduleRecord.State(rawValue: state) ?? .paused, reason: reason,
                              pausedAt: pausedAt.map(Date.init(epochMilliseconds:)), cursor: Date(epochMilliseconds: cursor),
                              createdAt: Date(epochMilliseconds: createdAt), updatedAt: Date(epochMilliseconds: updatedAt),
                              resumedAt: resumedAt.map(Date.init(epochMilliseconds:)), version: version)
    }
}

extension JobStore {
    /// Enqueues a schedule's job once, now, outside its ticks (its cursor is left alone).
    /// Returns the job's id. Throws `notFound`.
    public func runScheduleNow(id: String, reader: EnvelopeReader, now: Date = Date()) async throws -> String {
        guard let record = try await schedules().first(where: { $0.id == id }) else { throw ScheduleRows.notFound(id) }
        let spec = try record.spec.job(for: now, manual: true, id: JobID.make(at: now), reader: reader)
        guard case .fired(let results) = try await fireSchedule(ScheduleFire(scheduleID: id, expectedCursor: nil, cursor: nil,
                                                                              jobs: [(now, spec)])),
              let first = results.first else {
            throw BatonError(.internal, "the manual run of schedule \(id) was not enqueued")
        }
        return first.jobID
    }
}
