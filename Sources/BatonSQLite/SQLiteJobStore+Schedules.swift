import BatonCore
import BatonStore
import Foundation
import GRDB

extension SQLiteJobStore {
    public func putSchedule(_ spec: ScheduleSpec, source: ScheduleSource) async throws -> ScheduleRecord {
        let json = spec.json.encodedString
        return try await write { db, now in
            if let existing = try Self.schedule(db, id: spec.id) {
                try ScheduleRows.checkReplace(existing, with: spec, source: source)
                // A new trigger starts from now: the old one's ticks are not missed ticks of the new.
                let cursor = existing.spec.trigger == spec.trigger ? existing.cursor.epochMilliseconds
                                                                    : max(existing.cursor.epochMilliseconds, now)
                try db.execute(sql: """
                    UPDATE schedules SET source = ?, spec = ?, cursor_ms = ?, updated_at = ?, version = version + 1 WHERE id = ?
                    """, arguments: [source.rawValue, json, cursor, now, spec.id])
            } else {
                try db.execute(sql: """
                    INSERT INTO schedules (id, source, spec, state, cursor_ms, created_at, updated_at, version)
                    VALUES (?, ?, ?, 'active', ?, ?, ?, 1)
                    """, arguments: [spec.id, source.rawValue, json, now, now, now])
            }
            return try Self.schedule(db, id: spec.id)!
        }
    }

    public func removeSchedule(id: String) async throws {
        try await write { db, _ in
            try db.execute(sql: "DELETE FROM schedules WHERE id = ?", arguments: [id])
            guard db.changesCount > 0 else { throw ScheduleRows.notFound(id) }
            try db.execute(sql: "DELETE FROM schedule_runs WHERE schedule_id = ?", arguments: [id])
        }
    }

    public func schedules() async throws -> [ScheduleRecord] {
        try await read { db in try Row.fetchAll(db, sql: "SELECT * FROM schedules ORDER BY id").map(Self.schedule(from:)) }
    }

    public func setSchedulePaused(id: String, paused: Bool, reason: String?, ifVersion: Int64?) async throws -> ScheduleRecord? {
        try await write { db, now in
            guard let current = try Self.schedule(db, id: id) else { throw ScheduleRows.notFound(id) }
            if let ifVersion, current.version != ifVersion { return nil }
            if paused {
                try db.execute(sql: """
                    UPDATE schedules SET state = 'paused', reason = ?, paused_at = ?, updated_at = ?, version = version + 1 WHERE id = ?
                    """, arguments: [reason, now, now, id])
            } else {
                try db.execute(sql: """
                    UPDATE schedules SET state = 'active', reason = NULL, paused_at = NULL, resumed_at = ?, updated_at = ?,
                                         cursor_ms = max(cursor_ms, ?), version = version + 1
                    WHERE id = ?
                    """, arguments: [now, now, now, id])
            }
            return try Self.schedule(db, id: id)
        }
    }

    public func fireSchedule(_ fire: ScheduleFire) async throws -> ScheduleFireResult {
        let jobs = fire.jobs.map { ($0.tick, $0.spec, $0.spec.storedJSON()) }
        let notes = fire.notes
        let result = try await write { db, now -> ScheduleFireResult in
            if let expected = fire.expectedCursor, let cursor = fire.cursor {
                // The tick's claim across nodes: only the pass that still sees the cursor it
                // decided from moves it, and enqueues.
                try db.execute(sql: """
                    UPDATE schedules SET cursor_ms = ? WHERE id = ? AND cursor_ms = ? AND state = 'active' AND (? IS NULL OR version = ?)
                    """, arguments: [cursor.epochMilliseconds, fire.scheduleID, expected.epochMilliseconds, fire.expectedVersion,
                                     fire.expectedVersion])
                if db.changesCount == 0 {
                    guard try Self.schedule(db, id: fire.scheduleID) != nil else { throw ScheduleRows.notFound(fire.scheduleID) }
                    return .superseded
                }
            } else if try Self.schedule(db, id: fire.scheduleID) == nil {
                throw ScheduleRows.notFound(fire.scheduleID)
            }
            var results: [EnqueueResult] = []
            for (tick, spec, json) in jobs {
                let result = try Self.enqueue(db, spec, json: json, now: now)
                results.append(result)
                try db.execute(sql: """
                    INSERT INTO schedule_runs (schedule_id, tick_ms, job_id, manual, note, at) VALUES (?, ?, ?, ?, NULL, ?)
                    """, arguments: [fire.scheduleID, tick.epochMilliseconds, result.jobID, fire.manual, now])
            }
            for (tick, note) in notes {
                try db.execute(sql: """
                    INSERT INTO schedule_runs (schedule_id, tick_ms, job_id, manual, note, at) VALUES (?, ?, NULL, 0, ?, ?)
                    """, arguments: [fire.scheduleID, tick.epochMilliseconds, note, now])
            }
            if !notes.isEmpty {
                // Ticks without a job (a long run under overlap skip: one a tick) keep only
                // their newest records.
                try db.execute(sql: """
                    DELETE FROM schedule_runs WHERE schedule_id = ? AND job_id IS NULL AND seq <= (
                        SELECT seq FROM schedule_runs WHERE schedule_id = ? AND job_id IS NULL ORDER BY seq DESC LIMIT 1 OFFSET ?)
                    """, arguments: [fire.scheduleID, fire.scheduleID, ScheduleRows.notesKept])
            }
            return .fired(results)
        }
        if !jobs.isEmpty { signal.notify() }
        return result
    }

    public func scheduleRuns(id: String, limit: Int, jobsOnly: Bool) async throws -> [ScheduleRun] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.*, j.state AS job_state FROM schedule_runs r LEFT JOIN jobs j ON j.id = r.job_id
                WHERE r.schedule_id = ? AND (? = 0 OR r.job_id IS NOT NULL) ORDER BY r.seq DESC LIMIT ?
                """, arguments: [id, jobsOnly, limit]).map { row in
                ScheduleRun(scheduleID: row["schedule_id"], tick: Date(epochMilliseconds: row["tick_ms"]), jobID: row["job_id"],
                            manual: row["manual"], note: row["note"], jobState: (row["job_state"] as String?).flatMap(JobState.init),
                            recordedAt: Date(epochMilliseconds: row["at"]))
            }
        }
    }

    static func schedule(_ db: Database, id: String) throws -> ScheduleRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM schedules WHERE id = ?", arguments: [id]).map(schedule(from:))
    }

    static func schedule(from row: Row) throws -> ScheduleRecord {
        try ScheduleRows.record(id: row["id"], source: row["source"], spec: row["spec"], state: row["state"], reason: row["reason"],
                                  pausedAt: row["paused_at"], cursor: row["cursor_ms"], createdAt: row["created_at"],
                                  updatedAt: row["updated_at"], resumedAt: row["resumed_at"], version: row["version"])
    }
}
