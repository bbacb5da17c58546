import BatonCore
import Foundation

/// The JSON documents records are shown as, the same for `--json` on the command line and for
/// the HTTP API.
public enum JSONTime {
    /// ISO 8601 with milliseconds, in UTC.
    public static func string(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// Reads back what `string` wrote (nil for anything else).
    public static func parse(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}

extension JobDetail {
    public var json: JSONValue {
        .object([
            "job": job.json, "envelope": job.spec.envelope, "stages": .array(stages.map(\.json)),
            "attempts": .array(attempts.map(\.json)), "events": .array(events.map(\.json)),
        ])
    }
}

extension JobRecord {
    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "job_id": .string(id),
            "state": .string(state.rawValue),
            "lane": .string(spec.lane),
            "priority": .int(Int64(spec.priority)),
            "attempts": .int(Int64(attempts)),
            "max_attempts": .int(Int64(spec.retry.maxAttempts)),
            "fence": .int(fence),
            "stage_index": .int(Int64(stageIndex)),
            "stage": .string(stageIndex < spec.stages.count ? spec.stages[stageIndex].name : "-"),
            "stages": .array(spec.stages.map { .string($0.name) }),
            "enqueued_at": .string(JSONTime.string(enqueuedAt)),
            "updated_at": .string(JSONTime.string(updatedAt)),
            "run_at": .string(JSONTime.string(runAt)),
            "retry_count": .int(Int64(retryCount)),
            "cumulative_backoff_sec": .double(cumulativeBackoffSec),
        ]
        func set(_ key: String, _ value: String?) { if let value { fields[key] = .string(value) } }
        set("idempotency_key", spec.idempotencyKey)
        set("session_key", spec.sessionKey)
        set("region_affinity", spec.regionAffinity)
        if let fallback = spec.regionFallbackAfterSec { fields["region_fallback_after_sec"] = .int(Int64(fallback)) }
        set("lease_node", leaseNode)
        set("lease_expires_at", leaseExpiresAt.map { JSONTime.string($0) })
        set("last_node", lastNode)
        set("last_node_at", lastNodeAt.map { JSONTime.string($0) })
        set("last_error_class", lastErrorClass?.rawValue)
        set("last_reason", lastReason)
        set("last_message", lastMessage)
        set("last_successful_stage", lastSuccessfulStage)
        set("finished_at", finishedAt.map { JSONTime.string($0) })
        if !outputs.isEmpty { fields["outputs"] = outputs.document }
        return .object(fields)
    }
}

extension StageOutput {
    public var json: JSONValue {
        .object(["values": .object(values.mapValues { .string($0) }), "artifacts": .array(artifacts.map { .string($0) })])
    }
}

extension StageRecord {
    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "index": .int(Int64(index)), "name": .string(name), "kind": .string(kind), "state": .string(state.rawValue),
            "attempts": .int(Int64(attempts)),
        ]
        func set(_ key: String, _ value: String?) { if let value { fields[key] = .string(value) } }
        set("node_id", node)
        set("started_at", startedAt.map { JSONTime.string($0) })
        set("finished_at", finishedAt.map { JSONTime.string($0) })
        set("last_error_class", lastErrorClass?.rawValue)
        set("last_reason", lastReason)
        set("log_path", logPath)
        if let exitCode { fields["exit_code"] = .int(Int64(exitCode)) }
        if let httpStatus { fields["http_status"] = .int(Int64(httpStatus)) }
        if let handoffMs { fields["handoff_ms"] = .int(handoffMs) }
        if let output { fields["output"] = output.json }
        return .object(fields)
    }
}

extension GateRecord {
    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "key": .string(key), "state": .string(state.rawValue), "held_since": .string(JSONTime.string(heldSince)),
            "reason": .string(reason), "dead_jobs": .array(deadJobs.map(JSONValue.string)), "held_jobs": .int(Int64(heldJobs)),
        ]
        if let releasedAt { fields["released_at"] = .string(JSONTime.string(releasedAt)) }
        return .object(fields)
    }
}

extension DeadLetterReport {
    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "job": job.json, "envelope": job.spec.envelope,
            "attempts_used": .int(Int64(attemptsUsed)), "attempt_budget": .int(Int64(attemptBudget)),
            "retry_count": .int(Int64(retryCount)), "cumulative_backoff_sec": .double(cumulativeBackoffSec),
            "logs": .array(logs.map(JSONValue.string)),
            "errors": .array(errors.map { error in
                var e: [String: JSONValue] = [
                    "stage": .string(error.stage), "attempt": .int(Int64(error.attempt)), "node_id": .string(error.node),
                    "at": .string(JSONTime.string(error.at)), "reason": .string(error.reason),
                ]
                if let c = error.errorClass { e["class"] = .string(c.rawValue) }
                if let m = error.message { e["message"] = .string(m) }
                if let code = error.exitCode { e["exit_code"] = .int(Int64(code)) }
                if let status = error.httpStatus { e["http_status"] = .int(Int64(status)) }
                if let log = error.logPath { e["log_path"] = .string(log) }
                return .object(e)
            }),
        ]
        if let lastSuccessfulStage { fields["last_successful_stage"] = .string(lastSuccessfulStage) }
        if let failedStage { fields["failed_stage"] = .string(failedStage) }
        return .object(fields)
    }
}

extension AttemptRecord {
    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "attempt": .int(Int64(attempt)),
            "fence": .int(fence),
            "stage": .string(stageName),
            "stage_index": .int(Int64(stageIndex)),
            "node_id": .string(nodeID),
            "started_at": .string(JSONTime.string(startedAt)),
            "outcome": .string(outcome.rawValue),
        ]
        func set(_ key: String, _ value: String?) { if let value { fields[key] = .string(value) } }
        set("finished_at", finishedAt.map { JSONTime.string($0) })
        set("error_class", errorClass?.rawValue)
        set("reason", reason)
        set("message", message)
        set("stdout", report.stdout)
        set("stderr", report.stderr)
        set("log_path", report.logPath)
        if let code = report.exitCode { fields["exit_code"] = .int(Int64(code)) }
        if let status = report.httpStatus { fields["http_status"] = .int(Int64(status)) }
        if let output = report.output { fields["output"] = output.json }
        if let handoffMs { fields["handoff_ms"] = .int(handoffMs) }
        return .object(fields)
    }
}

extension JobEvent {
    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "seq": .int(seq),
            "at": .string(JSONTime.string(at)),
            "kind": .string(kind.rawValue),
            "detail": .object(detail.mapValues { .string($0) }),
        ]
        if let nodeID { fields["node_id"] = .string(nodeID) }
        if let stage { fields["stage"] = .string(stage) }
        if let attempt { fields["attempt"] = .int(Int64(attempt)) }
        if let fence { fields["fence"] = .int(fence) }
        return .object(fields)
    }
}

extension LaneStats {
    public var json: JSONValue {
        var fields: [String: JSONValue] = [
            "lane": .string(name), "running": .int(Int64(running)), "waiting": .int(Int64(waiting)), "ready": .int(Int64(ready)),
            "wait_samples": .int(Int64(wait.count)),
        ]
        if let cap { fields["cap"] = .int(Int64(cap)) }
        if let oldestReadySec { fields["oldest_ready_sec"] = .double(oldestReadySec) }
        if let p = wait.p50Ms { fields["wait_p50_ms"] = .int(p) }
        if let p = wait.p90Ms { fields["wait_p90_ms"] = .int(p) }
        if let p = wait.p99Ms { fields["wait_p99_ms"] = .int(p) }
        if let p = wait.maxMs { fields["wait_max_ms"] = .int(p) }
        return .object(fields)
    }
}

extension ScheduleRecord {
    /// The schedule as listings show it, with its newest run.
    public func json(last: ScheduleRun?, now: Date) -> JSONValue {
        let record = self
        var fields: [String: JSONValue] = [
            "id": .string(record.id), "state": .string(record.state.rawValue), "source": .string(record.source.rawValue),
            "schedule": record.spec.json, "last_tick": .string(JSONTime.string(record.cursor)),
        ]
        if let reason = record.reason { fields["reason"] = .string(reason) }
        if let next = record.nextFire(now: now) { fields["next_fire"] = .string(JSONTime.string(next)) }
        if let last {
            var run: [String: JSONValue] = ["tick": .string(JSONTime.string(last.tick)), "manual": .bool(last.manual)]
            if let job = last.jobID { run["job_id"] = .string(job) }
            if let state = last.jobState { run["job_state"] = .string(state.rawValue) }
            if let note = last.note { run["note"] = .string(note) }
            fields["last_run"] = .object(run)
        }
        return .object(fields)
    }
}

/// The cluster's nodes with their health, and drift: a live node whose Baton version or
/// configuration hash differs from most live nodes'.
public struct NodeReport: Sendable {
    public struct Row: Sendable {
        public var node: NodeRecord
        public var health: NodeHealth
        public var drift: [String]
    }

    public let rows: [Row]
    public let now: Date

    public init(nodes: [NodeRecord], now: Date) {
        self.now = now
        let live = nodes.filter { [.healthy, .late].contains($0.health(at: now)) }
        func majority(_ values: [String]) -> String? {
            let counts = Dictionary(values.map { ($0, 1) }, uniquingKeysWith: +)
            // Ties go to the lexically smallest value, so the verdict is stable.
            return counts.max { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key }?.key
        }
        let hash = majority(live.map(\.info.configHash))
        let version = majority(live.map(\.info.version))
        rows = nodes.map { node in
            let health = node.health(at: now)
            var drift: [String] = []
            if health == .healthy || health == .late {
                if let version, node.info.version != version { drift.append("version") }
                if let hash, node.info.configHash != hash { drift.append("config") }
            }
            return Row(node: node, health: health, drift: drift)
        }
    }

    public var json: JSONValue {
        .array(rows.map { row in
            let info = row.node.info
            var fields: [String: JSONValue] = [
                "id": .string(info.id), "instance": .string(info.instance), "host": .string(info.host),
                "pid": .int(Int64(info.pid)), "tags": .array(info.tags.map { .string($0) }),
                "capacity": .int(Int64(info.capacity)), "in_flight": .int(Int64(row.node.inFlight)),
                "version": .string(info.version), "config_hash": .string(info.configHash),
                "state": .string(row.node.state.rawValue), "health": .string(row.health.rawValue),
                "started_at": .string(JSONTime.string(row.node.startedAt)), "last_seen": .string(JSONTime.string(row.node.lastSeen)),
                "heartbeat_interval_sec": .double(info.heartbeatIntervalSec), "dead_after_sec": .double(info.deadAfterSec),
                "drift": .array(row.drift.map { .string($0) }),
            ]
            if let region = info.region { fields["region"] = .string(region) }
            return .object(fields)
        })
    }
}

extension ModelCooldown {
    /// The cooldown as `baton models --json` and the API show it, with its state at `now`.
    public func json(now: Date) -> JSONValue {
        var fields: [String: JSONValue] = [
            "provider": .string(provider), "model": .string(model), "state": .string(isActive(at: now) ? "cooling_down" : "ended"),
            "level": .int(Int64(level)), "until": .string(JSONTime.string(until)), "reason": .string(reason),
            "since": .string(JSONTime.string(since)), "last_failure_at": .string(JSONTime.string(lastFailureAt)),
            "failures": .int(Int64(failures)), "remaining_sec": .double(max(0, until.timeIntervalSince(now))),
        ]
        if let nodeID { fields["node_id"] = .string(nodeID) }
        return .object(fields)
    }
}
