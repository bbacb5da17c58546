import BatonCore
import BatonStore
import Foundation
import PostgresNIO

extension PostgresJobStore {
    // MARK: Rescue

    public func rescue() async throws -> RescueReport {
        let report = try await transaction { connection, now in
            var report = RescueReport()
            let at = Date(epochMilliseconds: now)
            // Silent nodes first: their jobs are taken back now, not when each lease runs out.
            let dead = try await (connection.rows("""
                UPDATE \(unescaped: self.tables.nodes) SET state = 'dead'
                WHERE state = 'live' AND last_seen + dead_after_ms <= \(now)
                RETURNING id
                """, logger: self.logger)).map { try $0.get("id", as: String.self) }
            report.deadNodes = dead.sorted()
            if !dead.isEmpty {
                let held = try await (connection.rows("""
                    \(unescaped: self.runningColumns) WHERE state = 'running' AND lease_node = ANY(\(dead))
                    ORDER BY seq FOR UPDATE SKIP LOCKED
                    """, logger: self.logger))
                try await self.rescue(connection, held, loss: .nodeDead, now: now, into: &report)
            }
            let lost = try await (connection.rows("""
                \(unescaped: self.runningColumns) WHERE state = 'running' AND lease_expires_at <= \(now)
                ORDER BY lease_expires_at LIMIT 1000
                FOR UPDATE SKIP LOCKED
                """, logger: self.logger))
            try await self.rescue(connection, lost, loss: .leaseExpired, now: now, into: &report)
            let late = try await (connection.rows("""
                SELECT id, spec, ever_claimed, deadline_base FROM \(unescaped: self.tables.jobs)
                WHERE state IN ('queued', 'retry_wait') AND claim_deadline <= \(now)
                ORDER BY claim_deadline LIMIT 1000
                FOR UPDATE SKIP LOCKED
                """, logger: self.logger))
            for row in late {
                let id: String = try row.get("id")
                let spec = try JobSpec.decode(Data(try row.get("spec", as: String.self).utf8))
                let reason = Lifecycle.expiryReason(enqueuedAt: Date(epochMilliseconds: try row.get("deadline_base")),
                                                    queueTimeoutSec: spec.queueTimeoutSec, ttlSec: spec.ttlSec,
                                                    everClaimed: try row.get("ever_claimed"), now: at) ?? "ttl"
                let message = reason == "queue_timeout"
                    ? "not claimed within queue_timeout_sec (\(spec.queueTimeoutSec ?? 0) s)"
                    : "not finished within ttl_sec (\(spec.ttlSec) s)"
                try await self.finish(connection, jobID: id, state: .expired, failure: .fatal(reason, message), reason: reason, now: now)
                try await self.appendEvent(connection, JobEvent(jobID: id, at: at, kind: .expired,
                                                                detail: ["reason": reason, "message": message]))
                report.expired.append(id)
            }
            try await connection.rows("DELETE FROM \(unescaped: self.tables.idempotency) WHERE expires_at <= \(now)",
                                       logger: self.logger)
            try await connection.rows("DELETE FROM \(unescaped: self.tables.schema).inbound_seen WHERE expires_at <= \(now)",
                                       logger: self.logger)
            try await connection.rows("""
                DELETE FROM \(unescaped: self.tables.deadLetterKeys) WHERE at <= \(now - Int64(self.options.gates.windowSec) * 1000)
                """, logger: self.logger)
            if !report.requeued.isEmpty {
                try await connection.rows("SELECT pg_notify(\(self.tables.channel), '')", logger: self.logger)
            }
            return report
        }
        if !report.requeued.isEmpty { signal.notify() }
        try await age()
        return report
    }

    /// Priority ageing: a waiting job's priority is its own plus one step per `every` it has
    /// waited since it became ready, up to the boost (back to its own once it runs again
    /// later). Computed, not incremented, so every node may run it; its own statement, with
    /// SKIP LOCKED, so it never holds or waits for rows a claim or a rescue is working on.
    func age() async throws {
        let now = clock.now().epochMilliseconds
        guard options.ageingMaxBoost > 0, ageingThrottle.due(now: now) else { return }
        let every = Int64(options.ageingEverySec) * 1000
        let boost = Int64(options.ageingMaxBoost)
        try await execute("""
            WITH due AS (
                SELECT seq, coalesce(base_priority, priority) + least(\(boost), greatest(0, \(now) - run_at) / \(every)) AS target
                FROM \(unescaped: tables.jobs)
                WHERE state IN ('queued', 'retry_wait')
                  AND priority <> coalesce(base_priority, priority) + least(\(boost), greatest(0, \(now) - run_at) / \(every))
                FOR UPDATE SKIP LOCKED
            )
            UPDATE \(unescaped: tables.jobs) j SET priority = due.target FROM due WHERE j.seq = due.seq
            """)
    }

    var runningColumns: String {
        "SELECT id, spec, attempts, fence, stage_index, lease_node, deadline_base, last_node_at, idempotency_key FROM \(tables.jobs)"
    }

    /// Takes back running jobs (rows of `runningColumns`, locked) lost to `loss`.
    func rescue(_ connection: PostgresConnection, _ rows: [PostgresRandomAccessRow], loss: LeaseLoss, now: Int64,
                into report: inout RescueReport) async throws {
        let at = Date(epochMilliseconds: now)
        for row in rows {
            let id: String = try row.get("id")
            let spec = try JobSpec.decode(Data(try row.get("spec", as: String.self).utf8))
            let fence: Int64 = try row.get("fence")
            let stageIndex = Int(try row.get("stage_index", as: Int32.self))
            let rescue = LeaseRescue(jobID: id, spec: spec, attempts: Int(try row.get("attempts", as: Int32.self)), fence: fence,
                                     stageIndex: stageIndex, node: try row.get("lease_node"),
                                     deadlineBase: Date(epochMilliseconds: try row.get("deadline_base")),
                                     lastHeardAt: (try row.get("last_node_at", as: Int64?.self)).map(Date.init(epochMilliseconds:)),
                                     loss: loss, now: at)
            try await finishAttempt(connection, jobID: id, fence: fence, stageIndex: stageIndex, at: now, outcome: .leaseExpired,
                                    failure: rescue.failure)
            switch rescue.outcome {
            case .requeue:
                try await connection.rows("""
                    UPDATE \(unescaped: tables.jobs) SET state = 'queued', lease_node = NULL, lease_expires_at = NULL,
                        last_error_class = \(rescue.failure.errorClass.rawValue), last_reason = \(rescue.failure.reason),
                        last_message = \(rescue.failure.message), updated_at = \(now)
                    WHERE id = \(id)
                    """, logger: logger)
                report.requeued.append(id)
            case .finish(let state, let reason):
                try await finish(connection, jobID: id, state: state, failure: rescue.failure, reason: reason, now: now)
                if state == .dead { report.deadLettered.append(id) } else { report.expired.append(id) }
            }
            for event in rescue.events { try await appendEvent(connection, event) }
            if case .finish(.dead, _) = rescue.outcome,
               let gate = try await recordDeadLetter(connection, jobID: id, key: try row.get("idempotency_key", as: String?.self),
                                                     now: now) {
                report.gatesHeld.append(gate)
            }
        }
    }

    // MARK: Cancel and redrive

    public func cancel(jobID: String, reason: String) async throws -> JobRecord {
        try await transaction { connection, now in
            let job = try await self.requireJob(connection, jobID, lock: true)
            guard !job.state.isTerminal else {
                throw BatonError(.invalidState, field: "job_id", "job \(jobID) is already \(job.state.rawValue) and cannot be cancelled")
            }
            let at = Date(epochMilliseconds: now)
            if job.state == .running, let node = job.leaseNode {
                try await self.finishAttempt(connection, jobID: jobID, fence: job.fence, stageIndex: job.stageIndex, at: now,
                                             outcome: .cancelled, failure: Failure(.cancelled, reason: "cancelled", message: reason))
                try await self.appendEvent(connection, JobEvent(jobID: jobID, at: at, kind: .cancelled,
                                                                stage: job.spec.stages[job.stageIndex].name, attempt: job.attempts,
                                                                fence: job.fence, detail: ["reason": reason, "running_on": node]))
            } else {
                try await self.appendEvent(connection, JobEvent(jobID: jobID, at: at, kind: .cancelled, detail: ["reason": reason]))
            }
            try await self.finish(connection, jobID: jobID, state: .cancelled,
                                  failure: Failure(.cancelled, reason: "cancelled", message: reason), reason: "cancelled", now: now)
            return try await self.requireJob(connection, jobID, lock: false)
        }
    }

    public func redrive(jobID: String, fromStart: Bool) async throws -> JobRecord {
        let job = try await transaction { connection, now in
            try await self.redrive(connection, jobID: jobID, fromStart: fromStart, now: now)
            return try await self.requireJob(connection, jobID, lock: false)
        }
        signal.notify()
        return job
    }

    public func redriveAll() async throws -> [String] {
        let ids = try await transaction { connection, now in
            let ids = try await (connection.rows("""
                SELECT id FROM \(unescaped: self.tables.jobs) WHERE state IN ('dead', 'expired') ORDER BY finished_at, seq
                """, logger: self.logger)).map { try $0.get("id", as: String.self) }
            for id in ids { try await self.redrive(connection, jobID: id, fromStart: false, now: now) }
            return ids
        }
        if !ids.isEmpty { signal.notify() }
        return ids
    }

    /// Queues a finished-but-failed job again at the stage that failed, with a new attempt
    /// budget and deadlines counted from now.
    func redrive(_ connection: PostgresConnection, jobID: String, fromStart: Bool, now: Int64) async throws {
        let job = try await requireJob(connection, jobID, lock: true)
        guard [.dead, .expired, .cancelled].contains(job.state) else {
            throw BatonError(.invalidState, field: "job_id",
                             "job \(jobID) is \(job.state.rawValue); only dead, expired or cancelled jobs can be redriven")
        }
        let deadline = Lifecycle.claimDeadline(enqueuedAt: Date(epochMilliseconds: now), queueTimeoutSec: job.spec.queueTimeoutSec,
                                               ttlSec: job.spec.ttlSec, everClaimed: false).epochMilliseconds
        let resume = RedrivePlan(job, fromStart: fromStart)
        try await connection.rows("""
            UPDATE \(unescaped: tables.jobs) SET state = 'queued', attempts = 0, ever_claimed = false, deadline_base = \(now),
                claim_deadline = \(deadline), run_at = \(now), stage_index = \(Int64(resume.stageIndex)),
                region_affinity = \(resume.placement.region), node_tags = \(resume.placement.tagsColumn),
                outputs = \(resume.outputs.storedJSON), handoff_at = NULL, finished_at = NULL, updated_at = \(now)
            WHERE id = \(jobID)
            """, logger: logger)
        // A person chose to run it again: its token budget starts again, like its attempts.
        try await connection.rows("DELETE FROM \(unescaped: tables.schema).llm_spend WHERE job_id = \(jobID)", logger: logger)
        try await appendEvent(connection, JobEvent(jobID: jobID, at: Date(epochMilliseconds: now), kind: .redriven,
                                                   stage: job.spec.stages[resume.stageIndex].name, detail: resume.detail))
        try await connection.rows("SELECT pg_notify(\(tables.channel), '')", logger: logger)
    }

    // MARK: Reads

    public func job(id: String) async throws -> JobRecord? {
        try await rows("SELECT * FROM \(unescaped: tables.jobs) WHERE id = \(id)").first.map(Self.job(from:))
    }

    public func detail(id: String) async throws -> JobDetail? {
        guard let job = try await job(id: id) else { return nil }
        let attempts = try await rows("""
            SELECT * FROM \(unescaped: tables.attempts) WHERE job_id = \(id) ORDER BY fence, stage_index
            """).map(Self.attempt(from:))
        let events = try await rows("SELECT * FROM \(unescaped: tables.events) WHERE job_id = \(id) ORDER BY seq")
            .map(Self.event(from:))
        return JobDetail(job: job, attempts: attempts, events: events)
    }

    public func jobs(matching filter: JobFilter) async throws -> [JobRecord] {
        // States are written out as literals (they are the enum's own names, never input), so
        // the planner can match a filter to a partial index (dead letters, queued, running).
        let states = filter.states.isEmpty ? "true"
            : "state IN (" + filter.states.map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")"
        let lane = filter.lane
        return try await rows("""
            SELECT * FROM \(unescaped: tables.jobs)
            WHERE \(unescaped: states)
              AND (\(lane)::text IS NULL OR lane = \(lane)::text)
            ORDER BY seq DESC LIMIT \(Int64(max(0, filter.limit)))
            """).map(Self.job(from:))
    }

    public func counts() async throws -> [JobState: Int] {
        var counts: [JobState: Int] = [:]
        for row in try await rows("SELECT state, count(*) AS n FROM \(unescaped: tables.jobs) GROUP BY state") {
            if let state = JobState(rawValue: try row.get("state")) { counts[state] = Int(try row.get("n", as: Int64.self)) }
        }
        return counts
    }

    // MARK: Row mapping

    func requireJob(_ connection: PostgresConnection, _ id: String, lock: Bool) async throws -> JobRecord {
        let rows = try await (connection.rows("""
            SELECT * FROM \(unescaped: tables.jobs) WHERE id = \(id) \(unescaped: lock ? "FOR UPDATE" : "")
            """, logger: logger))
        guard let row = rows.first else {
            throw BatonError(.notFound, field: "job_id", "no job with id \"\(id)\"")
        }
        return try Self.job(from: row)
    }

    static func job(from row: PostgresRandomAccessRow) throws -> JobRecord {
        let spec = try JobSpec.decode(Data(try row.get("spec", as: String.self).utf8))
        let state = try JobState.parse(try row.get("state"))
        return JobRecord(
            spec: spec, state: state, attempts: Int(try row.get("attempts", as: Int32.self)), fence: try row.get("fence"),
            stageIndex: Int(try row.get("stage_index", as: Int32.self)),
            enqueuedAt: Date(epochMilliseconds: try row.get("enqueued_at")),
            updatedAt: Date(epochMilliseconds: try row.get("updated_at")),
            runAt: Date(epochMilliseconds: try row.get("run_at")), leaseNode: try row.get("lease_node"),
            leaseExpiresAt: (try row.get("lease_expires_at", as: Int64?.self)).map(Date.init(epochMilliseconds:)),
            lastNode: try row.get("last_node"),
            lastNodeAt: (try row.get("last_node_at", as: Int64?.self)).map(Date.init(epochMilliseconds:)),
            retryCount: Int(try row.get("retry_count", as: Int32.self)),
            cumulativeBackoffSec: Double(try row.get("cumulative_backoff_ms", as: Int64.self)) / 1000,
            lastErrorClass: (try row.get("last_error_class", as: String?.self)).flatMap(ErrorClass.init(rawValue:)),
            lastReason: try row.get("last_reason"), lastMessage: try row.get("last_message"),
            finishedAt: (try row.get("finished_at", as: Int64?.self)).map(Date.init(epochMilliseconds:)),
            outputs: JobOutputs.stored(try row.get("outputs", as: String?.self)))
    }

    static func attempt(from row: PostgresRandomAccessRow) throws -> AttemptRecord {
        AttemptRecord(
            jobID: try row.get("job_id"), fence: try row.get("fence"), attempt: Int(try row.get("attempt", as: Int32.self)),
            stageIndex: Int(try row.get("stage_index", as: Int32.self)), stageName: try row.get("stage_name"),
            nodeID: try row.get("node_id"), startedAt: Date(epochMilliseconds: try row.get("started_at")),
            finishedAt: (try row.get("finished_at", as: Int64?.self)).map(Date.init(epochMilliseconds:)),
            outcome: AttemptRecord.Outcome(rawValue: try row.get("outcome")) ?? .failed,
            errorClass: (try row.get("error_class", as: String?.self)).flatMap(ErrorClass.init(rawValue:)),
            reason: try row.get("reason"), message: try row.get("message"),
            report: AttemptReport(exitCode: try row.get("exit_code", as: Int32?.self), stdout: try row.get("stdout"),
                                  stderr: try row.get("stderr"), logPath: try row.get("log_path"),
                                  httpStatus: (try row.get("http_status", as: Int32?.self)).map(Int.init),
                                  output: JobOutputs.stored(try row.get("outputs", as: String?.self)).stages.first),
            handoffMs: try row.get("handoff_ms", as: Int64?.self))
    }

    static func event(from row: PostgresRandomAccessRow) throws -> JobEvent {
        JobEvent(seq: try row.get("seq"), jobID: try row.get("job_id"), at: Date(epochMilliseconds: try row.get("at")),
                 kind: JobEvent.Kind(rawValue: try row.get("kind")), nodeID: try row.get("node_id"), stage: try row.get("stage"),
                 attempt: (try row.get("attempt", as: Int32?.self)).map(Int.init), fence: try row.get("fence"),
                 detail: JobEvent.detail(fromJSON: try row.get("detail")))
    }
}

extension PostgresJobStore {
    /// The server's version and the settings that decide durability and speed, for
    /// benchmarks and diagnostics.
    public func serverSettings() async throws -> [(name: String, value: String)] {
        try await rows("""
            SELECT name, setting FROM pg_settings
            WHERE name IN ('server_version', 'synchronous_commit', 'fsync', 'shared_buffers', 'max_connections', 'wal_level')
            ORDER BY name
            """).map { (try $0.get("name", as: String.self), try $0.get("setting", as: String.self)) }
    }
}
