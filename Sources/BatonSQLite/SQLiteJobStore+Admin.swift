import BatonCore
import BatonStore
import Foundation
import GRDB

extension SQLiteJobStore {
    // MARK: Rescue

    public func rescue() async throws -> RescueReport {
        let gates = self.gates
        let ageing = self.ageing
        let throttle = self.ageingThrottle
        let report = try await write { db, now in
            var report = RescueReport()
            let at = Date(epochMilliseconds: now)
            // Silent nodes first: their jobs are taken back now, not when each lease runs out.
            let silent = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT id, last_seen FROM nodes WHERE state = 'live' AND last_seen + dead_after_ms <= ?
                """), arguments: [now])
            for node in silent {
                let id: String = node["id"]
                try db.cachedStatement(sql: "UPDATE nodes SET state = 'dead' WHERE id = ?").execute(arguments: [id])
                report.deadNodes.append(id)
                let held = try Row.fetchAll(db.cachedStatement(sql: "\(Self.runningColumns) WHERE state = 'running' AND lease_node = ?"),
                                            arguments: [id])
                try Self.rescue(db, held, loss: .nodeDead, now: now, gates: gates, into: &report)
            }
            let lost = try Row.fetchAll(db.cachedStatement(sql: """
                \(Self.runningColumns) INDEXED BY jobs_lease WHERE state = 'running' AND lease_expires_at <= ? LIMIT 1000
                """), arguments: [now])
            try Self.rescue(db, lost, loss: .leaseExpired, now: now, gates: gates, into: &report)
            let late = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT id, spec, ever_claimed, deadline_base FROM jobs INDEXED BY jobs_deadline
                WHERE state IN ('queued', 'retry_wait') AND claim_deadline <= ? LIMIT 1000
                """), arguments: [now])
            for row in late {
                let id: String = row["id"]
                let spec = try JobSpec.decode(Data((row["spec"] as String).utf8))
                let reason = Lifecycle.expiryReason(enqueuedAt: Date(epochMilliseconds: row["deadline_base"]),
                                                    queueTimeoutSec: spec.queueTimeoutSec, ttlSec: spec.ttlSec,
                                                    everClaimed: row["ever_claimed"], now: at) ?? "ttl"
                let message = reason == "queue_timeout"
                    ? "not claimed within queue_timeout_sec (\(spec.queueTimeoutSec ?? 0) s)"
                    : "not finished within ttl_sec (\(spec.ttlSec) s)"
                try Self.finish(db, jobID: id, state: .expired, failure: .fatal(reason, message), reason: reason, now: now)
                try Self.appendEvent(db, JobEvent(jobID: id, at: at, kind: .expired, detail: ["reason": reason, "message": message]))
                report.expired.append(id)
            }
            try db.cachedStatement(sql: "DELETE FROM idempotency_keys WHERE expires_at <= ?").execute(arguments: [now])
            try db.cachedStatement(sql: "DELETE FROM inbound_seen WHERE expires_at <= ?").execute(arguments: [now])
            if ageing.maxBoost > 0 && throttle.due(now: now) {
                // Ageing: a waiting job's priority is its own plus one step per `every` it has
                // waited since it became ready, up to the boost (back to its own once it runs
                // again later). Computed, not incremented: every node may run it.
                let every = Int64(ageing.everySec) * 1000
                try db.cachedStatement(sql: """
                    UPDATE jobs SET priority = coalesce(base_priority, priority) + MIN(?, MAX(0, ? - run_at) / ?)
                    WHERE state IN ('queued', 'retry_wait')
                      AND priority <> coalesce(base_priority, priority) + MIN(?, MAX(0, ? - run_at) / ?)
                    """).execute(arguments: [ageing.maxBoost, now, every, ageing.maxBoost, now, every])
            }
            try db.cachedStatement(sql: "DELETE FROM dead_letter_keys WHERE at <= ?")
                .execute(arguments: [now - Int64(gates.windowSec) * 1000])
            return report
        }
        if !report.requeued.isEmpty { signal.notify() }
        return report
    }

    static let runningColumns = """
        SELECT id, spec, attempts, fence, stage_index, lease_node, deadline_base, last_node_at, idempotency_key FROM jobs
        """

    /// Takes back running jobs (rows of `runningColumns`) lost to `loss`.
    static func rescue(_ db: Database, _ rows: [Row], loss: LeaseLoss, now: Int64, gates: GatePolicy,
                       into report: inout RescueReport) throws {
        let at = Date(epochMilliseconds: now)
        for row in rows {
            let id: String = row["id"]
            let spec = try JobSpec.decode(Data((row["spec"] as String).utf8))
            let fence: Int64 = row["fence"]
            let stageIndex: Int = row["stage_index"]
            let rescue = LeaseRescue(jobID: id, spec: spec, attempts: row["attempts"], fence: fence, stageIndex: stageIndex,
                                     node: row["lease_node"], deadlineBase: Date(epochMilliseconds: row["deadline_base"]),
                                     lastHeardAt: (row["last_node_at"] as Int64?).map(Date.init(epochMilliseconds:)),
                                     loss: loss, now: at)
            try finishAttempt(db, jobID: id, fence: fence, stageIndex: stageIndex, at: now, outcome: .leaseExpired,
                              failure: rescue.failure)
            switch rescue.outcome {
            case .requeue:
                try db.cachedStatement(sql: """
                    UPDATE jobs SET state = 'queued', lease_node = NULL, lease_expires_at = NULL, last_error_class = ?,
                                    last_reason = ?, last_message = ?, updated_at = ?
                    WHERE id = ?
                    """).execute(arguments: [rescue.failure.errorClass.rawValue, rescue.failure.reason, rescue.failure.message,
                                             now, id])
                report.requeued.append(id)
            case .finish(let state, let reason):
                try finish(db, jobID: id, state: state, failure: rescue.failure, reason: reason, now: now)
                if state == .dead { report.deadLettered.append(id) } else { report.expired.append(id) }
            }
            for event in rescue.events { try appendEvent(db, event) }
            if case .finish(.dead, _) = rescue.outcome,
               let gate = try recordDeadLetter(db, jobID: id, key: row["idempotency_key"], now: now, policy: gates) {
                report.gatesHeld.append(gate)
            }
        }
    }

    // MARK: Cancel and redrive

    public func cancel(jobID: String, reason: String) async throws -> JobRecord {
        try await write { db, now in
            let job = try Self.requireJob(db, jobID)
            guard !job.state.isTerminal else {
                throw BatonError(.invalidState, field: "job_id", "job \(jobID) is already \(job.state.rawValue) and cannot be cancelled")
            }
            if job.state == .running, let node = job.leaseNode {
                try Self.finishAttempt(db, jobID: jobID, fence: job.fence, stageIndex: job.stageIndex, at: now, outcome: .cancelled,
                                       failure: Failure(.cancelled, reason: "cancelled", message: reason))
                try Self.appendEvent(db, JobEvent(jobID: jobID, at: Date(epochMilliseconds: now), kind: .cancelled, nodeID: nil,
                                                  stage: job.spec.stages[job.stageIndex].name, attempt: job.attempts, fence: job.fence,
                                                  detail: ["reason": reason, "running_on": node]))
            } else {
                try Self.appendEvent(db, JobEvent(jobID: jobID, at: Date(epochMilliseconds: now), kind: .cancelled,
                                                  detail: ["reason": reason]))
            }
            try Self.finish(db, jobID: jobID, state: .cancelled, failure: Failure(.cancelled, reason: "cancelled", message: reason),
                            reason: "cancelled", now: now)
            return try Self.requireJob(db, jobID)
        }
    }

    public func redrive(jobID: String, fromStart: Bool) async throws -> JobRecord {
        let job = try await write { db, now in
            try Self.redrive(db, jobID: jobID, fromStart: fromStart, now: now)
            return try Self.requireJob(db, jobID)
        }
        signal.notify()
        return job
    }

    public func redriveAll() async throws -> [String] {
        let ids = try await write { db, now in
            let ids = try String.fetchAll(db, sql: "SELECT id FROM jobs WHERE state IN ('dead', 'expired') ORDER BY finished_at, seq")
            for id in ids { try Self.redrive(db, jobID: id, fromStart: false, now: now) }
            return ids
        }
        if !ids.isEmpty { signal.notify() }
        return ids
    }

    /// Queues a finished-but-failed job again at the stage that failed, with a new attempt
    /// budget and deadlines counted from now.
    static func redrive(_ db: Database, jobID: String, fromStart: Bool, now: Int64) throws {
        let job = try requireJob(db, jobID)
        guard [.dead, .expired, .cancelled].contains(job.state) else {
            throw BatonError(.invalidState, field: "job_id",
                             "job \(jobID) is \(job.state.rawValue); only dead, expired or cancelled jobs can be redriven")
        }
        let deadline = Lifecycle.claimDeadline(enqueuedAt: Date(epochMilliseconds: now), queueTimeoutSec: job.spec.queueTimeoutSec,
                                               ttlSec: job.spec.ttlSec, everClaimed: false).epochMilliseconds
        let resume = RedrivePlan(job, fromStart: fromStart)
        try db.cachedStatement(sql: """
            UPDATE jobs SET state = 'queued', attempts = 0, ever_claimed = 0, deadline_base = ?, claim_deadline = ?, run_at = ?,
                            stage_index = ?, region_affinity = ?, node_tags = ?, outputs = ?, handoff_at = NULL,
                            finished_at = NULL, updated_at = ?
            WHERE id = ?
            """).execute(arguments: [now, deadline, now, resume.stageIndex, resume.placement.region, resume.placement.tagsColumn,
                                     resume.outputs.storedJSON, now, jobID])
        // A person chose to run it again: its token budget starts again, like its attempts.
        try db.execute(sql: "DELETE FROM llm_spend WHERE job_id = ?", arguments: [jobID])
        try appendEvent(db, JobEvent(jobID: jobID, at: Date(epochMilliseconds: now), kind: .redriven,
                                     stage: job.spec.stages[resume.stageIndex].name, detail: resume.detail))
    }

    // MARK: Reads

    public func job(id: String) async throws -> JobRecord? {
        try await read { db in try Self.fetchJob(db, id) }
    }

    public func detail(id: String) async throws -> JobDetail? {
        try await read { db in
            guard let job = try Self.fetchJob(db, id) else { return nil }
            let attempts = try Row.fetchAll(db, sql: "SELECT * FROM attempts WHERE job_id = ? ORDER BY fence, stage_index",
                                            arguments: [id]).map(Self.attempt(from:))
            let events = try Row.fetchAll(db, sql: "SELECT * FROM events WHERE job_id = ? ORDER BY seq",
                                          arguments: [id]).map(Self.event(from:))
            return JobDetail(job: job, attempts: attempts, events: events)
        }
    }

    public func jobs(matching filter: JobFilter) async throws -> [JobRecord] {
        try await read { db in
            var clauses: [String] = []
            var arguments: StatementArguments = []
            if !filter.states.isEmpty {
                clauses.append("state IN (\(filter.states.map { _ in "?" }.joined(separator: ", ")))")
                for state in filter.states { _ = arguments.append(contentsOf: [state.rawValue]) }
            }
            if let lane = filter.lane {
                clauses.append("lane = ?")
                _ = arguments.append(contentsOf: [lane])
            }
            let whereClause = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            _ = arguments.append(contentsOf: [max(0, filter.limit)])
            return try Row.fetchAll(db, sql: "SELECT * FROM jobs \(whereClause) ORDER BY enqueued_at DESC, seq DESC LIMIT ?", arguments: arguments)
                .map(Self.job(from:))
        }
    }

    public func counts() async throws -> [JobState: Int] {
        try await read { db in
            var counts: [JobState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state") {
                if let state = JobState(rawValue: row["state"]) { counts[state] = row["n"] }
            }
            return counts
        }
    }

    // MARK: Row mapping

    static func fetchJob(_ db: Database, _ id: String) throws -> JobRecord? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM jobs WHERE id = ?"), arguments: [id]).map(job(from:))
    }

    static func requireJob(_ db: Database, _ id: String) throws -> JobRecord {
        guard let job = try fetchJob(db, id) else {
            throw BatonError(.notFound, field: "job_id", "no job with id \"\(id)\"")
        }
        return job
    }

    static func job(from row: Row) throws -> JobRecord {
        let spec = try JobSpec.decode(Data((row["spec"] as String).utf8))
        let state = try JobState.parse(row["state"])
        return JobRecord(
            spec: spec, state: state, attempts: row["attempts"], fence: row["fence"], stageIndex: row["stage_index"],
            enqueuedAt: Date(epochMilliseconds: row["enqueued_at"]), updatedAt: Date(epochMilliseconds: row["updated_at"]),
            runAt: Date(epochMilliseconds: row["run_at"]), leaseNode: row["lease_node"],
            leaseExpiresAt: (row["lease_expires_at"] as Int64?).map(Date.init(epochMilliseconds:)),
            lastNode: row["last_node"], lastNodeAt: (row["last_node_at"] as Int64?).map(Date.init(epochMilliseconds:)),
            retryCount: row["retry_count"], cumulativeBackoffSec: Double(row["cumulative_backoff_ms"] as Int64) / 1000,
            lastErrorClass: (row["last_error_class"] as String?).flatMap(ErrorClass.init(rawValue:)),
            lastReason: row["last_reason"], lastMessage: row["last_message"],
            finishedAt: (row["finished_at"] as Int64?).map(Date.init(epochMilliseconds:)),
            outputs: JobOutputs.stored(row["outputs"]))
    }

    static func attempt(from row: Row) -> AttemptRecord {
        AttemptRecord(
            jobID: row["job_id"], fence: row["fence"], attempt: row["attempt"], stageIndex: row["stage_index"],
            stageName: row["stage_name"], nodeID: row["node_id"], startedAt: Date(epochMilliseconds: row["started_at"]),
            finishedAt: (row["finished_at"] as Int64?).map(Date.init(epochMilliseconds:)),
            outcome: AttemptRecord.Outcome(rawValue: row["outcome"]) ?? .failed,
            errorClass: (row["error_class"] as String?).flatMap(ErrorClass.init(rawValue:)),
            reason: row["reason"], message: row["message"],
            report: AttemptReport(exitCode: (row["exit_code"] as Int64?).map { Int32(truncatingIfNeeded: $0) },
                                  stdout: row["stdout"], stderr: row["stderr"], logPath: row["log_path"],
                                  httpStatus: row["http_status"], output: JobOutputs.stored(row["outputs"]).stages.first),
            handoffMs: row["handoff_ms"])
    }

    static func event(from row: Row) -> JobEvent {
        JobEvent(seq: row["seq"], jobID: row["job_id"], at: Date(epochMilliseconds: row["at"]),
                 kind: JobEvent.Kind(rawValue: row["kind"]), nodeID: row["node_id"], stage: row["stage"],
                 attempt: row["attempt"], fence: row["fence"], detail: JobEvent.detail(fromJSON: row["detail"]))
    }
}
