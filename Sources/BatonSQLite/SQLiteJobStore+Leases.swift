import BatonCore
import BatonStore
import Foundation
import GRDB

extension SQLiteJobStore {
    /// The job row a lease writes to, or the refusal when the lease is not the current one.
    /// A refusal is itself recorded in the job's event log, naming the node and both tokens.
    static func fencedRow(_ db: Database, _ lease: Lease, op: String, now: Int64) throws -> Result<Row, BatonError> {
        let row = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT state, fence, stage_index, stage_count, attempts, deadline_base, idempotency_key, outputs
            FROM jobs WHERE id = ?
            """), arguments: [lease.jobID])
        guard let row else {
            return .failure(BatonError(.notFound, field: "job_id", "no job with id \"\(lease.jobID)\""))
        }
        let state: String = row["state"]
        let fence: Int64 = row["fence"]
        let stageIndex: Int = row["stage_index"]
        if state == JobState.running.rawValue && fence == lease.fence && stageIndex == lease.stageIndex {
            return .success(row)
        }
        try appendEvent(db, JobEvent(jobID: lease.jobID, at: Date(epochMilliseconds: now), kind: .staleWriteRefused,
                                     nodeID: lease.nodeID, stage: lease.stage.name, attempt: lease.attempt, fence: lease.fence,
                                     detail: ["op": op, "current_fence": String(fence), "state": state]))
        let reason = fence != lease.fence
            ? "lease fence \(lease.fence) is stale: the job is now at fence \(fence) (\(state))"
            : "the job is \(state), not running under this lease"
        return .failure(BatonError(.staleLease, field: "lease", "\(op) refused for job \(lease.jobID): \(reason)"))
    }

    // MARK: Heartbeat

    public func heartbeat(_ leases: [Lease]) async throws -> [HeartbeatResult] {
        guard !leases.isEmpty else { return [] }
        return try await write { db, now in
            try leases.map { lease in
                let expires = now + Int64(lease.spec.leaseTTLSec) * 1000
                try db.cachedStatement(sql: """
                    UPDATE jobs SET lease_expires_at = ?, last_node_at = ?, updated_at = ?
                    WHERE id = ? AND fence = ? AND state = 'running' AND lease_node = ?
                    """).execute(arguments: [expires, now, now, lease.jobID, lease.fence, lease.nodeID])
                if db.changesCount == 1 { return .extended(until: Date(epochMilliseconds: expires)) }
                switch try Self.fencedRow(db, lease, op: "heartbeat", now: now) {
                case .failure(let error): return .lost(reason: error.message)
                case .success: return .lost(reason: "lease held by another node")
                }
            }
        }
    }

    // MARK: Complete

    public func complete(_ completions: [Completion]) async throws -> [CompletionResult] {
        guard !completions.isEmpty else { return [] }
        return try await write { db, now in
            try completions.map { completion in
                let lease = completion.lease
                let row: Row
                switch try Self.fencedRow(db, lease, op: "complete", now: now) {
                case .failure(let error): return .refused(error)
                case .success(let r): row = r
                }
                try Self.finishAttempt(db, jobID: lease.jobID, fence: lease.fence, stageIndex: lease.stageIndex, at: now,
                                       outcome: .succeeded, report: completion.report)
                let stageCount: Int = row["stage_count"]
                let at = Date(epochMilliseconds: now)
                var detail: [String: String] = [:]
                if let code = completion.report.exitCode { detail["exit_code"] = String(code) }
                if let status = completion.report.httpStatus { detail["http_status"] = String(status) }
                var outputs = JobOutputs.stored(row["outputs"])
                if let output = completion.report.output, !output.isEmpty {
                    outputs = outputs.adding(output)
                    try db.cachedStatement(sql: "UPDATE jobs SET outputs = ? WHERE id = ?")
                        .execute(arguments: [outputs.storedJSON, lease.jobID])
                }
                if lease.stageIndex + 1 < stageCount {
                    let next = lease.stageIndex + 1
                    let placement = lease.spec.placement(ofStage: next)
                    try Self.appendEvent(db, JobEvent(jobID: lease.jobID, at: at, kind: .stageCompleted, nodeID: lease.nodeID,
                                                      stage: lease.stage.name, attempt: lease.attempt, fence: lease.fence,
                                                      detail: detail))
                    guard lease.nextStageContinuesHere else {
                        // Handoff: queued for a node that may run the next stage. The attempt is
                        // not over (its claim counts it again), and the wait is timed from now.
                        try db.cachedStatement(sql: """
                            UPDATE jobs SET state = 'queued', stage_index = ?, attempts = attempts - 1, region_affinity = ?,
                                            node_tags = ?, run_at = ?, priority = base_priority, handoff_at = ?,
                                            lease_node = NULL, lease_expires_at = NULL,
                                            last_node_at = ?, updated_at = ?
                            WHERE id = ?
                            """).execute(arguments: [next, placement.region, placement.tagsColumn, now, now, now, now, lease.jobID])
                        try Self.appendEvent(db, JobEvent(jobID: lease.jobID, at: at, kind: .handedOff, nodeID: lease.nodeID,
                                                          stage: lease.spec.stages[next].name, attempt: lease.attempt,
                                                          fence: lease.fence, detail: placement.handoffDetail))
                        return .handedOff(stage: lease.spec.stages[next].name)
                    }
                    let expires = now + Int64(lease.spec.leaseTTLSec) * 1000
                    try db.cachedStatement(sql: """
                        UPDATE jobs SET stage_index = ?, region_affinity = ?, node_tags = ?, lease_expires_at = ?, last_node_at = ?,
                                        updated_at = ?
                        WHERE id = ?
                        """).execute(arguments: [next, placement.region, placement.tagsColumn, expires, now, now, lease.jobID])
                    try Self.insertAttempt(db, jobID: lease.jobID, fence: lease.fence, stageIndex: next, attempt: lease.attempt,
                                           stageName: lease.spec.stages[next].name, nodeID: lease.nodeID, at: now)
                    var nextLease = lease
                    nextLease.stageIndex = next
                    nextLease.expiresAt = Date(epochMilliseconds: expires)
                    nextLease.outputs = outputs
                    return .nextStage(nextLease)
                }
                try db.cachedStatement(sql: """
                    UPDATE jobs SET state = 'succeeded', stage_index = ?, lease_node = NULL, lease_expires_at = NULL,
                                    last_node_at = ?, finished_at = ?, updated_at = ?
                    WHERE id = ?
                    """).execute(arguments: [stageCount, now, now, now, lease.jobID])
                try Self.appendEvent(db, JobEvent(jobID: lease.jobID, at: at, kind: .completed, nodeID: lease.nodeID,
                                                  stage: lease.stage.name, attempt: lease.attempt, fence: lease.fence,
                                                  detail: detail))
                return .succeeded
            }
        }
    }

    // MARK: Fail

    public func fail(_ lease: Lease, failure: Failure, report: AttemptReport) async throws -> FailureResult {
        let jitter = self.jitter()
        let gates = self.gates
        return try await write { db, now in
            let row: Row
            switch try Self.fencedRow(db, lease, op: "fail", now: now) {
            case .failure(let error): throw error
            case .success(let r): row = r
            }
            let at = Date(epochMilliseconds: now)
            let spec = lease.spec
            let deadline = Date(epochMilliseconds: row["deadline_base"]).addingTimeInterval(Double(spec.ttlSec))
            let decision = Lifecycle.afterFailure(attempt: row["attempts"], policy: spec.retry, failure: failure,
                                                  now: at, deadline: deadline, jitterUnit: jitter)
            try Self.finishAttempt(db, jobID: lease.jobID, fence: lease.fence, stageIndex: lease.stageIndex, at: now,
                                   outcome: failure.errorClass == .cancelled ? .cancelled : .failed, failure: failure, report: report)
            var failedDetail = ["class": failure.errorClass.rawValue, "reason": failure.reason, "message": failure.message]
            if let code = report.exitCode { failedDetail["exit_code"] = String(code) }
            if let retryAfter = failure.retryAfterSec { failedDetail["retry_after_sec"] = Self.seconds(retryAfter) }
            try Self.appendEvent(db, JobEvent(jobID: lease.jobID, at: at, kind: .failed, nodeID: lease.nodeID,
                                              stage: lease.stage.name, attempt: lease.attempt, fence: lease.fence,
                                              detail: failedDetail))
            switch decision {
            case .retry(let retryAt, let delay):
                try db.cachedStatement(sql: """
                    UPDATE jobs SET state = 'retry_wait', run_at = ?, lease_node = NULL, lease_expires_at = NULL,
                                    retry_count = retry_count + 1, cumulative_backoff_ms = cumulative_backoff_ms + ?,
                                    last_error_class = ?, last_reason = ?, last_message = ?, last_node_at = ?, updated_at = ?
                    WHERE id = ?
                    """).execute(arguments: [retryAt.epochMilliseconds, Int64((delay * 1000).rounded()),
                                             failure.errorClass.rawValue, failure.reason, failure.message, now, now, lease.jobID])
                try Self.appendEvent(db, JobEvent(jobID: lease.jobID, at: at, kind: .retried, nodeID: lease.nodeID,
                                                  stage: lease.stage.name, attempt: lease.attempt, fence: lease.fence,
                                                  detail: ["reason": failure.reason, "delay_sec": Self.seconds(delay),
                                                           "next_attempt": String(lease.attempt + 1),
                                                           "retry_after_honoured": failure.retryAfterSec == nil ? "false" : "true"]))
                return .retrying(at: retryAt, delaySec: delay)
            case .deadLetter(let reason):
                try Self.finish(db, jobID: lease.jobID, state: .dead, failure: failure, reason: reason, now: now)
                try Self.appendEvent(db, JobEvent(jobID: lease.jobID, at: at, kind: .deadLettered, nodeID: lease.nodeID,
                                                  stage: lease.stage.name, attempt: lease.attempt, fence: lease.fence,
                                                  detail: ["reason": reason, "class": failure.errorClass.rawValue]))
                let gate = try Self.recordDeadLetter(db, jobID: lease.jobID, key: row["idempotency_key"], now: now,
                                                     policy: gates)
                return .deadLettered(reason: reason, gate: gate)
            case .expire(let reason):
                try Self.finish(db, jobID: lease.jobID, state: .expired, failure: failure, reason: reason, now: now)
                try Self.appendEvent(db, JobEvent(jobID: lease.jobID, at: at, kind: .expired, nodeID: lease.nodeID,
                                                  stage: lease.stage.name, attempt: lease.attempt, fence: lease.fence,
                                                  detail: ["reason": reason]))
                return .expired(reason: reason)
            case .cancel:
                try Self.finish(db, jobID: lease.jobID, state: .cancelled, failure: failure, reason: failure.reason, now: now)
                try Self.appendEvent(db, JobEvent(jobID: lease.jobID, at: at, kind: .cancelled, nodeID: lease.nodeID,
                                                  stage: lease.stage.name, attempt: lease.attempt, fence: lease.fence,
                                                  detail: ["reason": failure.reason]))
                return .cancelled
            }
        }
    }

    /// Moves a job to a terminal state, clearing its lease.
    static func finish(_ db: Database, jobID: String, state: JobState, failure: Failure?, reason: String, now: Int64) throws {
        try db.cachedStatement(sql: """
            UPDATE jobs SET state = ?, lease_node = NULL, lease_expires_at = NULL, last_error_class = ?, last_reason = ?,
                            last_message = ?, finished_at = ?, updated_at = ?
            WHERE id = ?
            """).execute(arguments: [state.rawValue, failure?.errorClass.rawValue, reason, failure?.message, now, now, jobID])
    }

    static func seconds(_ value: Double) -> String { String(format: "%.3f", value) }

    // MARK: Release

    public func release(_ lease: Lease, reason: String) async throws {
        try await write { db, now in
            switch try Self.fencedRow(db, lease, op: "release", now: now) {
            case .failure(let error): throw error
            case .success: break
            }
            try Self.finishAttempt(db, jobID: lease.jobID, fence: lease.fence, stageIndex: lease.stageIndex, at: now,
                                   outcome: .released, failure: Failure(.released, reason: reason, message: "attempt handed back"))
            // The attempt is not counted; the job keeps its place in the queue (run_at unchanged).
            try db.cachedStatement(sql: """
                UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_node = NULL, lease_expires_at = NULL,
                                last_node_at = ?, updated_at = ?
                WHERE id = ?
                """).execute(arguments: [now, now, lease.jobID])
            try Self.appendEvent(db, JobEvent(jobID: lease.jobID, at: Date(epochMilliseconds: now), kind: .released,
                                              nodeID: lease.nodeID, stage: lease.stage.name, attempt: lease.attempt,
                                              fence: lease.fence, detail: ["reason": reason]))
        }
        signal.notify()
    }
}
