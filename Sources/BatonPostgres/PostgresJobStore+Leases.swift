import BatonCore
import BatonStore
import Foundation
import PostgresNIO

extension PostgresJobStore {
    /// The job row a lease writes to, locked, or the refusal when the lease is not the current
    /// one. A refusal is itself recorded in the job's event log, naming the node and both tokens.
    func fencedRow(_ connection: PostgresConnection, _ lease: Lease, op: String,
                   now: Int64) async throws -> Result<PostgresRandomAccessRow, BatonError> {
        let rows = try await (connection.rows("""
            SELECT state, fence, stage_index, stage_count, attempts, deadline_base, lease_node, idempotency_key, outputs
            FROM \(unescaped: tables.jobs) WHERE id = \(lease.jobID) FOR UPDATE
            """, logger: logger))
        guard let row = rows.first else {
            return .failure(BatonError(.notFound, field: "job_id", "no job with id \"\(lease.jobID)\""))
        }
        let state: String = try row.get("state")
        let fence: Int64 = try row.get("fence")
        let stageIndex = Int(try row.get("stage_index", as: Int32.self))
        if state == JobState.running.rawValue && fence == lease.fence && stageIndex == lease.stageIndex {
            return .success(row)
        }
        try await appendEvent(connection, JobEvent(jobID: lease.jobID, at: Date(epochMilliseconds: now), kind: .staleWriteRefused,
                                                   nodeID: lease.nodeID, stage: lease.stage.name, attempt: lease.attempt,
                                                   fence: lease.fence,
                                                   detail: ["op": op, "current_fence": String(fence), "state": state]))
        let reason = fence != lease.fence
            ? "lease fence \(lease.fence) is stale: the job is now at fence \(fence) (\(state))"
            : "the job is \(state), not running under this lease"
        return .failure(BatonError(.staleLease, field: "lease", "\(op) refused for job \(lease.jobID): \(reason)"))
    }

    // MARK: Heartbeat

    public func heartbeat(_ leases: [Lease]) async throws -> [HeartbeatResult] {
        guard !leases.isEmpty else { return [] }
        let now = clock.now().epochMilliseconds
        let extended = try await rows("""
            WITH input AS (
                SELECT * FROM unnest(\(leases.map(\.jobID))::text[], \(leases.map(\.fence))::bigint[],
                                     \(leases.map(\.nodeID))::text[]) WITH ORDINALITY AS t(id, fence, node, ord)
            )
            UPDATE \(unescaped: tables.jobs) j SET lease_expires_at = \(now) + j.lease_ttl_ms, last_node_at = \(now),
                updated_at = \(now)
            FROM input i
            WHERE j.id = i.id AND j.fence = i.fence AND j.state = 'running' AND j.lease_node = i.node
            RETURNING i.ord, j.lease_expires_at
            """)
        var results: [HeartbeatResult?] = Array(repeating: nil, count: leases.count)
        for row in extended {
            let index = Int(try row.get("ord", as: Int64.self)) - 1
            results[index] = .extended(until: Date(epochMilliseconds: try row.get("lease_expires_at")))
        }
        for index in leases.indices where results[index] == nil {
            let lease = leases[index]
            results[index] = try await transaction { connection, now in
                switch try await self.fencedRow(connection, lease, op: "heartbeat", now: now) {
                case .failure(let error): return .lost(reason: error.message)
                case .success: return .lost(reason: "lease held by another node")
                }
            }
        }
        return results.map { $0! }
    }

    // MARK: Complete

    public func complete(_ completions: [Completion]) async throws -> [CompletionResult] {
        guard !completions.isEmpty else { return [] }
        // Most stages hand nothing on and are followed by a stage that continues on this node:
        // they are recorded together in one statement. The others (outputs, an HTTP status, a
        // handoff) are recorded one by one, in the same transaction as the plain ones, so a
        // batch is recorded whole or not at all.
        let plain = completions.indices.filter { Self.isPlain(completions[$0]) }
        guard plain.count < completions.count else { return try await completePlain(completions) }
        let results = try await transaction { connection, now -> [CompletionResult] in
            var results: [CompletionResult?] = Array(repeating: nil, count: completions.count)
            if !plain.isEmpty {
                let done = try await self.completePlain(plain.map { completions[$0] }, now: now, on: connection)
                for (index, result) in zip(plain, done) { results[index] = result }
            }
            for index in completions.indices where results[index] == nil {
                results[index] = try await self.completeOne(completions[index], now: now, on: connection)
            }
            return results.map { $0! }
        }
        if results.contains(where: { if case .handedOff = $0 { true } else { false } }) { signal.notify() }
        return results
    }

    /// A completion the batched statement can record: no outputs, no HTTP status, and either
    /// the last stage or a next stage with the same placement.
    static func isPlain(_ completion: Completion) -> Bool {
        let lease = completion.lease
        guard completion.report.output?.isEmpty ?? true, completion.report.httpStatus == nil else { return false }
        let next = lease.stageIndex + 1
        return next >= lease.spec.stages.count || lease.spec.placement(ofStage: next) == lease.spec.placement(ofStage: lease.stageIndex)
    }

    /// Records one finished stage with what it handed on, and moves the job to its next stage
    /// here, to another node (handoff), or to succeeded.
    func completeOne(_ completion: Completion, now: Int64, on connection: PostgresConnection) async throws -> CompletionResult {
        let lease = completion.lease
        let report = completion.report
        let row: PostgresRandomAccessRow
        switch try await fencedRow(connection, lease, op: "complete", now: now) {
        case .failure(let error): return .refused(error)
        case .success(let r): row = r
        }
        let jobs = tables.jobs
        try await finishAttempt(connection, lease: lease, at: now, outcome: .succeeded, report: report)
        let at = Date(epochMilliseconds: now)
        var detail: [String: String] = [:]
        if let code = report.exitCode { detail["exit_code"] = String(code) }
        if let status = report.httpStatus { detail["http_status"] = String(status) }
        var outputs = JobOutputs.stored(try row.get("outputs", as: String?.self))
        if let output = report.output, !output.isEmpty {
            outputs = outputs.adding(output)
            try await connection.rows("UPDATE \(unescaped: jobs) SET outputs = \(outputs.storedJSON) WHERE id = \(lease.jobID)",
                                      logger: logger)
        }
        let next = lease.stageIndex + 1
        guard next < Int(try row.get("stage_count", as: Int32.self)) else {
            try await connection.rows("""
                UPDATE \(unescaped: jobs) SET state = 'succeeded', stage_index = \(Int64(next)), lease_node = NULL,
                    lease_expires_at = NULL, last_node_at = \(now), finished_at = \(now), updated_at = \(now)
                WHERE id = \(lease.jobID)
                """, logger: logger)
            try await appendEvent(connection, lease.event(.completed, at: at, detail: detail))
            return .succeeded
        }
        try await appendEvent(connection, lease.event(.stageCompleted, at: at, detail: detail))
        let placement = lease.spec.placement(ofStage: next)
        let nextName = lease.spec.stages[next].name
        guard lease.nextStageContinuesHere else {
            // Handoff: queued for a node that may run the next stage. The attempt is not over
            // (its claim counts it again), and the wait is timed from now.
            try await connection.rows("""
                UPDATE \(unescaped: jobs) SET state = 'queued', stage_index = \(Int64(next)), attempts = attempts - 1,
                    region_affinity = \(placement.region), node_tags = \(placement.tagsColumn), run_at = \(now),
                    priority = base_priority, handoff_at = \(now), lease_node = NULL, lease_expires_at = NULL,
                    last_node_at = \(now), updated_at = \(now)
                WHERE id = \(lease.jobID)
                """, logger: logger)
            try await appendEvent(connection, JobEvent(jobID: lease.jobID, at: at, kind: .handedOff, nodeID: lease.nodeID,
                                                       stage: nextName, attempt: lease.attempt, fence: lease.fence,
                                                       detail: placement.handoffDetail))
            try await connection.rows("SELECT pg_notify(\(tables.channel), '')", logger: logger)
            return .handedOff(stage: nextName)
        }
        let expires = try await connection.rows("""
            UPDATE \(unescaped: jobs) SET stage_index = \(Int64(next)), region_affinity = \(placement.region),
                node_tags = \(placement.tagsColumn), lease_expires_at = \(now) + lease_ttl_ms, last_node_at = \(now),
                updated_at = \(now)
            WHERE id = \(lease.jobID)
            RETURNING lease_expires_at
            """, logger: logger).first?.get("lease_expires_at", as: Int64.self) ?? now
        try await connection.rows("""
            INSERT INTO \(unescaped: tables.attempts)
                (job_id, fence, stage_index, attempt, stage_name, node_id, started_at, outcome)
            VALUES (\(lease.jobID), \(lease.fence), \(Int64(next)), \(Int64(lease.attempt)), \(nextName), \(lease.nodeID),
                    \(now), 'running')
            """, logger: logger)
        var nextLease = lease
        nextLease.stageIndex = next
        nextLease.expiresAt = Date(epochMilliseconds: expires)
        nextLease.outputs = outputs
        return .nextStage(nextLease)
    }

    /// Records plain completions (see `isPlain`) in one statement.
    func completePlain(_ completions: [Completion]) async throws -> [CompletionResult] {
        let now = clock.now().epochMilliseconds
        let done = try await run(Self.completeStatement(completions, now: now), what: "a PostgreSQL completion")
        var results = try Self.plainResults(done, completions)
        for index in completions.indices where results[index] == nil {
            let lease = completions[index].lease
            results[index] = try await transaction { connection, now in try await self.refusal(lease, now: now, on: connection) }
        }
        return results.map { $0! }
    }

    /// Records plain completions inside a transaction the caller holds.
    func completePlain(_ completions: [Completion], now: Int64, on connection: PostgresConnection) async throws -> [CompletionResult] {
        let done = try await connection.run(Self.completeStatement(completions, now: now), logger: logger)
        var results = try Self.plainResults(done, completions)
        for index in completions.indices where results[index] == nil {
            results[index] = try await refusal(completions[index].lease, now: now, on: connection)
        }
        return results.map { $0! }
    }

    static func completeStatement(_ completions: [Completion], now: Int64) -> CompleteStatement {
        let leases = completions.map(\.lease)
        let reports = completions.map(\.report)
        return CompleteStatement(
            now: now, ids: leases.map(\.jobID), fences: leases.map(\.fence), stageIndexes: leases.map { Int64($0.stageIndex) },
            nodes: leases.map(\.nodeID), exitCodes: reports.map { nullable($0.exitCode.map(String.init)) },
            stdouts: reports.map { nullable($0.stdout) }, stderrs: reports.map { nullable($0.stderr) },
            logPaths: reports.map { nullable($0.logPath) })
    }

    /// What the completion statement recorded, per completion; nil where it was left out.
    static func plainResults(_ done: [PostgresRandomAccessRow], _ completions: [Completion]) throws -> [CompletionResult?] {
        var results: [CompletionResult?] = Array(repeating: nil, count: completions.count)
        for row in done {
            let index = Int(try row.get("ord", as: Int64.self)) - 1
            if try row.get("state", as: String.self) == JobState.running.rawValue {
                var next = completions[index].lease
                next.stageIndex += 1
                next.expiresAt = Date(epochMilliseconds: try row.get("lease_expires_at"))
                results[index] = .nextStage(next)
            } else {
                results[index] = .succeeded
            }
        }
        return results
    }

    /// Why a completion the statement left out was refused (logged in the job's events).
    func refusal(_ lease: Lease, now: Int64, on connection: PostgresConnection) async throws -> CompletionResult {
        switch try await fencedRow(connection, lease, op: "complete", now: now) {
        case .failure(let error): return .refused(error)
        case .success:
            return .refused(BatonError(.staleLease, field: "lease",
                                       "complete refused for job \(lease.jobID): the stage was reported twice in one batch"))
        }
    }

    // MARK: Fail

    public func fail(_ lease: Lease, failure: Failure, report: AttemptReport) async throws -> FailureResult {
        let jitter = self.jitter()
        return try await transaction { connection, now in
            let row: PostgresRandomAccessRow
            switch try await self.fencedRow(connection, lease, op: "fail", now: now) {
            case .failure(let error): throw error
            case .success(let r): row = r
            }
            let at = Date(epochMilliseconds: now)
            let spec = lease.spec
            let deadline = Date(epochMilliseconds: try row.get("deadline_base")).addingTimeInterval(Double(spec.ttlSec))
            let decision = Lifecycle.afterFailure(attempt: Int(try row.get("attempts", as: Int32.self)), policy: spec.retry,
                                                  failure: failure, now: at, deadline: deadline, jitterUnit: jitter)
            try await self.finishAttempt(connection, lease: lease, at: now,
                                         outcome: failure.errorClass == .cancelled ? .cancelled : .failed,
                                         failure: failure, report: report)
            var failedDetail = ["class": failure.errorClass.rawValue, "reason": failure.reason, "message": failure.message]
            if let code = report.exitCode { failedDetail["exit_code"] = String(code) }
            if let retryAfter = failure.retryAfterSec { failedDetail["retry_after_sec"] = Self.seconds(retryAfter) }
            try await self.appendEvent(connection, lease.event(.failed, at: at, detail: failedDetail))
            switch decision {
            case .retry(let retryAt, let delay):
                try await connection.rows("""
                    UPDATE \(unescaped: self.tables.jobs) SET state = 'retry_wait', run_at = \(retryAt.epochMilliseconds),
                        lease_node = NULL, lease_expires_at = NULL, last_node = \(lease.nodeID), last_node_at = \(now),
                        retry_count = retry_count + 1,
                        cumulative_backoff_ms = cumulative_backoff_ms + \(Int64((delay * 1000).rounded())),
                        last_error_class = \(failure.errorClass.rawValue), last_reason = \(failure.reason),
                        last_message = \(failure.message), updated_at = \(now)
                    WHERE id = \(lease.jobID)
                    """, logger: self.logger)
                try await self.appendEvent(connection, lease.event(.retried, at: at, detail: [
                    "reason": failure.reason, "delay_sec": Self.seconds(delay), "next_attempt": String(lease.attempt + 1),
                    "retry_after_honoured": failure.retryAfterSec == nil ? "false" : "true"]))
                return .retrying(at: retryAt, delaySec: delay)
            case .deadLetter(let reason):
                try await self.finish(connection, jobID: lease.jobID, state: .dead, failure: failure, reason: reason, now: now,
                                      lastNode: lease.nodeID)
                try await self.appendEvent(connection, lease.event(.deadLettered, at: at, detail: [
                    "reason": reason, "class": failure.errorClass.rawValue]))
                let gate = try await self.recordDeadLetter(connection, jobID: lease.jobID,
                                                           key: try row.get("idempotency_key", as: String?.self), now: now)
                return .deadLettered(reason: reason, gate: gate)
            case .expire(let reason):
                try await self.finish(connection, jobID: lease.jobID, state: .expired, failure: failure, reason: reason, now: now,
                                      lastNode: lease.nodeID)
                try await self.appendEvent(connection, lease.event(.expired, at: at, detail: ["reason": reason]))
                return .expired(reason: reason)
            case .cancel:
                try await self.finish(connection, jobID: lease.jobID, state: .cancelled, failure: failure, reason: failure.reason,
                                      now: now, lastNode: lease.nodeID)
                try await self.appendEvent(connection, lease.event(.cancelled, at: at, detail: ["reason": failure.reason]))
                return .cancelled
            }
        }
    }

    // MARK: Release

    public func release(_ lease: Lease, reason: String) async throws {
        try await transaction { connection, now in
            switch try await self.fencedRow(connection, lease, op: "release", now: now) {
            case .failure(let error): throw error
            case .success: break
            }
            try await self.finishAttempt(connection, lease: lease, at: now, outcome: .released,
                                         failure: Failure(.released, reason: reason, message: "attempt handed back"))
            // The attempt is not counted; the job keeps its place in the queue (run_at unchanged).
            try await connection.rows("""
                UPDATE \(unescaped: self.tables.jobs) SET state = 'queued', attempts = attempts - 1, lease_node = NULL,
                    lease_expires_at = NULL, last_node = \(lease.nodeID), last_node_at = \(now), updated_at = \(now)
                WHERE id = \(lease.jobID)
                """, logger: self.logger)
            try await self.appendEvent(connection, lease.event(.released, at: Date(epochMilliseconds: now), detail: ["reason": reason]))
            try await connection.rows("SELECT pg_notify(\(self.tables.channel), '')", logger: self.logger)
        }
        signal.notify()
    }

    // MARK: Shared row helpers

    func appendEvent(_ connection: PostgresConnection, _ event: JobEvent) async throws {
        let attempt = event.attempt.map(Int64.init)
        try await connection.rows("""
            INSERT INTO \(unescaped: tables.events) (job_id, at, kind, node_id, stage, attempt, fence, detail)
            VALUES (\(event.jobID), \(event.at.epochMilliseconds), \(event.kind.rawValue), \(event.nodeID), \(event.stage),
                    \(attempt), \(event.fence), \(event.detail.isEmpty ? nil : event.detailJSON))
            """, logger: logger)
    }

    func finishAttempt(_ connection: PostgresConnection, jobID: String, fence: Int64, stageIndex: Int, at: Int64,
                       outcome: AttemptRecord.Outcome, failure: Failure? = nil, report: AttemptReport = .empty) async throws {
        try await connection.rows("""
            UPDATE \(unescaped: tables.attempts) SET finished_at = \(at), outcome = \(outcome.rawValue),
                error_class = \(failure?.errorClass.rawValue), reason = \(failure?.reason), message = \(failure?.message),
                exit_code = \(report.exitCode), stdout = \(report.stdout), stderr = \(report.stderr), log_path = \(report.logPath),
                http_status = \(report.httpStatus.map(Int64.init)),
                outputs = \(report.output.flatMap { JobOutputs(stages: [$0]).storedJSON })
            WHERE job_id = \(jobID) AND fence = \(fence) AND stage_index = \(Int64(stageIndex))
            """, logger: logger)
    }

    func finishAttempt(_ connection: PostgresConnection, lease: Lease, at: Int64, outcome: AttemptRecord.Outcome,
                       failure: Failure? = nil, report: AttemptReport = .empty) async throws {
        try await finishAttempt(connection, jobID: lease.jobID, fence: lease.fence, stageIndex: lease.stageIndex, at: at,
                                outcome: outcome, failure: failure, report: report)
    }

    /// Moves a job to a terminal state, clearing its lease.
    func finish(_ connection: PostgresConnection, jobID: String, state: JobState, failure: Failure?, reason: String,
                now: Int64, lastNode: String? = nil) async throws {
        try await connection.rows("""
            UPDATE \(unescaped: tables.jobs) SET state = \(state.rawValue), lease_node = NULL, lease_expires_at = NULL,
                last_node = coalesce(\(lastNode), last_node), last_error_class = \(failure?.errorClass.rawValue),
                last_reason = \(reason), last_message = \(failure?.message), finished_at = \(now), updated_at = \(now)
            WHERE id = \(jobID)
            """, logger: logger)
    }

    static func seconds(_ value: Double) -> String { String(format: "%.3f", value) }
}

/// Records a batch of finished stages: each job moves to its next stage under the same lease or
/// to succeeded, its attempt is closed with the report, the next stage's attempt is opened and
/// the event log gets `stage_completed` or `completed`, in one statement prepared once per
/// connection. Rows whose lease is no longer current are left out (the caller reports them).
struct CompleteStatement: PostgresPreparedStatement {
    static let name = "baton_complete_v1"
    static let sql = """
        WITH input AS (
            SELECT * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
                                 $9::text[])
                WITH ORDINALITY AS t(id, fence, stage_index, node, exit_code, stdout, stderr, log_path, ord)
        ), done AS (
            UPDATE jobs j SET
                state = CASE WHEN i.stage_index + 1 < j.stage_count THEN 'running' ELSE 'succeeded' END,
                stage_index = i.stage_index + 1,
                lease_node = CASE WHEN i.stage_index + 1 < j.stage_count THEN j.lease_node END,
                lease_expires_at = CASE WHEN i.stage_index + 1 < j.stage_count THEN $1 + j.lease_ttl_ms END,
                finished_at = CASE WHEN i.stage_index + 1 < j.stage_count THEN NULL ELSE $1 END,
                last_node_at = $1, updated_at = $1
            FROM input i
            WHERE j.id = i.id AND j.fence = i.fence AND j.stage_index = i.stage_index AND j.state = 'running'
            RETURNING i.ord, j.id, j.fence, i.stage_index AS done_index, j.state, j.attempts, j.lease_expires_at,
                      j.stage_names, i.node, i.exit_code, i.stdout, i.stderr, i.log_path
        ), finished AS (
            UPDATE attempts a SET finished_at = $1, outcome = 'succeeded',
                exit_code = CASE WHEN d.exit_code = '' THEN NULL ELSE substr(d.exit_code, 2)::integer END,
                stdout = CASE WHEN d.stdout = '' THEN NULL ELSE substr(d.stdout, 2) END,
                stderr = CASE WHEN d.stderr = '' THEN NULL ELSE substr(d.stderr, 2) END,
                log_path = CASE WHEN d.log_path = '' THEN NULL ELSE substr(d.log_path, 2) END
            FROM done d WHERE a.job_id = d.id AND a.fence = d.fence AND a.stage_index = d.done_index
        ), next_attempts AS (
            INSERT INTO attempts (job_id, fence, stage_index, attempt, stage_name, node_id, started_at, outcome)
            SELECT d.id, d.fence, d.done_index + 1, d.attempts, d.stage_names[d.done_index + 2], d.node, $1, 'running'
            FROM done d WHERE d.state = 'running'
        ), new_events AS (
            INSERT INTO events (job_id, at, kind, node_id, stage, attempt, fence, detail)
            SELECT d.id, $1, CASE WHEN d.state = 'running' THEN 'stage_completed' ELSE 'completed' END, d.node,
                   d.stage_names[d.done_index + 1], d.attempts, d.fence,
                   CASE WHEN d.exit_code = '' THEN NULL ELSE json_build_object('exit_code', substr(d.exit_code, 2))::text END
            FROM done d ORDER BY d.ord
        )
        SELECT ord, state, lease_expires_at FROM done
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .int8, .textArray, .int8Array, .int8Array, .textArray, .textArray, .textArray, .textArray, .textArray,
    ]

    let now: Int64
    let ids: [String], fences: [Int64], stageIndexes: [Int64], nodes: [String]
    let exitCodes: [String], stdouts: [String], stderrs: [String], logPaths: [String]

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 9)
        b.append(now)
        b.append(ids); b.append(fences); b.append(stageIndexes); b.append(nodes)
        b.append(exitCodes); b.append(stdouts); b.append(stderrs); b.append(logPaths)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> PostgresRandomAccessRow { row.makeRandomAccess() }
}
