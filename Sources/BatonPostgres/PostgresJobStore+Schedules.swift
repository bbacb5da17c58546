import BatonCore
import BatonStore
import Foundation
import PostgresNIO

extension PostgresJobStore {
    private var schedulesTable: String { "\(tables.schema).schedules" }
    private var runsTable: String { "\(tables.schema).schedule_runs" }

    public func putSchedule(_ spec: ScheduleSpec, source: ScheduleSource) async throws -> ScheduleRecord {
        let json = spec.json.encodedString
        return try await transaction { connection, now in
            let existing = try await connection.rows("""
                SELECT * FROM \(unescaped: self.schedulesTable) WHERE id = \(spec.id) FOR UPDATE
                """, logger: self.logger).first.map(Self.schedule(from:))
            let row: PostgresRandomAccessRow?
            if let existing {
                try ScheduleRows.checkReplace(existing, with: spec, source: source)
                // A new trigger starts from now: the old one's ticks are not missed ticks of the new.
                let cursor = existing.spec.trigger == spec.trigger ? existing.cursor.epochMilliseconds
                                                                    : max(existing.cursor.epochMilliseconds, now)
                row = try await connection.rows("""
                    UPDATE \(unescaped: self.schedulesTable) SET source = \(source.rawValue), spec = \(json), cursor_ms = \(cursor),
                        updated_at = \(now), version = version + 1
                    WHERE id = \(spec.id) RETURNING *
                    """, logger: self.logger).first
            } else {
                // Two nodes writing the same new configuration schedule: the second one's
                // insert finds the first's row and changes nothing.
                row = try await connection.rows("""
                    INSERT INTO \(unescaped: self.schedulesTable) (id, source, spec, state, cursor_ms, created_at, updated_at, version)
                    VALUES (\(spec.id), \(source.rawValue), \(json), 'active', \(now), \(now), \(now), 1)
                    ON CONFLICT (id) DO UPDATE SET updated_at = \(unescaped: self.schedulesTable).updated_at
                    RETURNING *
                    """, logger: self.logger).first
            }
            guard let row else { throw BatonError(.internal, "schedule \(spec.id) was not written") }
            return try Self.schedule(from: row)
        }
    }

    public func removeSchedule(id: String) async throws {
        try await transaction { connection, _ in
            let removed = try await connection.rows("DELETE FROM \(unescaped: self.schedulesTable) WHERE id = \(id) RETURNING id",
                                                    logger: self.logger)
            guard !removed.isEmpty else { throw ScheduleRows.notFound(id) }
            try await connection.rows("DELETE FROM \(unescaped: self.runsTable) WHERE schedule_id = \(id)", logger: self.logger)
        }
    }

    public func schedules() async throws -> [ScheduleRecord] {
        try await rows("SELECT * FROM \(unescaped: schedulesTable) ORDER BY id").map(Self.schedule(from:))
    }

    public func setSchedulePaused(id: String, paused: Bool, reason: String?, ifVersion: Int64?) async throws -> ScheduleRecord? {
        let now = clock.now().epochMilliseconds
        let version = ifVersion ?? -1
        let updated = paused
            ? try await rows("""
                UPDATE \(unescaped: schedulesTable) SET state = 'paused', reason = \(reason), paused_at = \(now), updated_at = \(now),
                    version = version + 1
                WHERE id = \(id) AND (\(version) < 0 OR version = \(version))
                RETURNING *
                """)
            : try await rows("""
                UPDATE \(unescaped: schedulesTable) SET state = 'active', reason = NULL, paused_at = NULL, resumed_at = \(now),
                    updated_at = \(now), cursor_ms = greatest(cursor_ms, \(now)), version = version + 1
                WHERE id = \(id) AND (\(version) < 0 OR version = \(version))
                RETURNING *
                """)
        if let row = updated.first { return try Self.schedule(from: row) }
        guard try await !rows("SELECT 1 FROM \(unescaped: schedulesTable) WHERE id = \(id)").isEmpty else {
            throw ScheduleRows.notFound(id)
        }
        return nil
    }

    public func fireSchedule(_ fire: ScheduleFire) async throws -> ScheduleFireResult {
        let result = try await transaction { connection, now -> ScheduleFireResult in
            if let expected = fire.expectedCursor, let cursor = fire.cursor {
                // The tick's claim across nodes: only the pass that still sees the cursor it
                // decided from moves it, and enqueues (a concurrent pass waits on the row lock,
                // then finds the cursor moved).
                let moved = try await connection.rows("""
                    UPDATE \(unescaped: self.schedulesTable) SET cursor_ms = \(cursor.epochMilliseconds)
                    WHERE id = \(fire.scheduleID) AND cursor_ms = \(expected.epochMilliseconds) AND state = 'active'
                      AND (\(fire.expectedVersion ?? -1) < 0 OR version = \(fire.expectedVersion ?? -1))
                    RETURNING id
                    """, logger: self.logger)
                if moved.isEmpty {
                    guard try await !connection.rows("SELECT 1 FROM \(unescaped: self.schedulesTable) WHERE id = \(fire.scheduleID)",
                                                      logger: self.logger).isEmpty else {
                        throw ScheduleRows.notFound(fire.scheduleID)
                    }
                    return .superseded
                }
            } else if try await connection.rows("SELECT 1 FROM \(unescaped: self.schedulesTable) WHERE id = \(fire.scheduleID)",
                                                logger: self.logger).isEmpty {
                throw ScheduleRows.notFound(fire.scheduleID)
            }
            let results = try await self.enqueueInTransaction(fire.jobs.map(\.spec), now: now, on: connection)
            let ticks = fire.jobs.map { $0.tick.epochMilliseconds } + fire.notes.map { $0.tick.epochMilliseconds }
            let jobIDs: [String?] = results.map(\.jobID) + fire.notes.map { _ in nil }
            let notes: [String?] = results.map { _ in nil } + fire.notes.map(\.note)
            if !ticks.isEmpty {
                try await connection.rows("""
                    INSERT INTO \(unescaped: self.runsTable) (schedule_id, tick_ms, job_id, manual, note, at)
                    SELECT \(fire.scheduleID), t.tick, nullif(t.job_id, ''), \(fire.manual) AND t.job_id <> '', nullif(t.note, ''), \(now)
                    FROM unnest(\(ticks)::bigint[], \(jobIDs.map { $0 ?? "" })::text[], \(notes.map { $0 ?? "" })::text[])
                         WITH ORDINALITY AS t(tick, job_id, note, ord)
                    ORDER BY t.ord
                    """, logger: self.logger)
            }
            if !fire.notes.isEmpty {
                // Ticks without a job (a long run under overlap skip: one a tick) keep only
                // their newest records.
                try await connection.rows("""
                    DELETE FROM \(unescaped: self.runsTable) WHERE schedule_id = \(fire.scheduleID) AND job_id IS NULL AND seq <= (
                        SELECT seq FROM \(unescaped: self.runsTable) WHERE schedule_id = \(fire.scheduleID) AND job_id IS NULL
                        ORDER BY seq DESC LIMIT 1 OFFSET \(Int64(ScheduleRows.notesKept)))
                    """, logger: self.logger)
            }
            if !results.isEmpty {
                try await connection.rows("SELECT pg_notify(\(self.tables.channel), '')", logger: self.logger)
            }
            return .fired(results)
        }
        if case .fired(let results) = result, !results.isEmpty { signal.notify() }
        return result
    }

    public func scheduleRuns(id: String, limit: Int, jobsOnly: Bool) async throws -> [ScheduleRun] {
        try await rows("""
            SELECT r.*, j.state AS job_state FROM \(unescaped: runsTable) r LEFT JOIN \(unescaped: tables.jobs) j ON j.id = r.job_id
            WHERE r.schedule_id = \(id) AND (NOT \(jobsOnly) OR r.job_id IS NOT NULL) ORDER BY r.seq DESC LIMIT \(Int64(limit))
            """).map { row in
            ScheduleRun(scheduleID: try row.get("schedule_id"), tick: Date(epochMilliseconds: try row.get("tick_ms")),
                        jobID: try row.get("job_id", as: String?.self), manual: try row.get("manual"),
                        note: try row.get("note", as: String?.self),
                        jobState: (try row.get("job_state", as: String?.self)).flatMap(JobState.init),
                        recordedAt: Date(epochMilliseconds: try row.get("at")))
        }
    }

    static func schedule(from row: PostgresRandomAccessRow) throws -> ScheduleRecord {
        try ScheduleRows.record(id: try row.get("id"), source: try row.get("source"), spec: try row.get("spec"),
                                state: try row.get("state"), reason: try row.get("reason", as: String?.self),
                                pausedAt: try row.get("paused_at", as: Int64?.self), cursor: try row.get("cursor_ms"),
                                createdAt: try row.get("created_at"), updatedAt: try row.get("updated_at"),
                                resumedAt: try row.get("resumed_at", as: Int64?.self), version: try row.get("version"))
    }
}
