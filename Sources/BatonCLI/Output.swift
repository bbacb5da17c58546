import BatonCore
import BatonStore
import Foundation

/// Plain-text tables for people; `--json` prints machine-readable documents instead.
struct Table {
    var headers: [String]
    var rows: [[String]] = []

    init(_ headers: String...) { self.headers = headers }

    mutating func add(_ cells: String...) { rows.append(cells) }

    func render() -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }
}

enum Format {
    static func time(_ date: Date?) -> String {
        guard let date else { return "-" }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    static func age(_ date: Date, now: Date = Date()) -> String {
        duration(now.timeIntervalSince(date))
    }

    static func duration(_ seconds: Double) -> String {
        let s = max(0, seconds)
        if s < 1 { return "\(Int((s * 1000).rounded()))ms" }
        if s < 60 { return String(format: "%.1fs", s) }
        if s < 3600 { return "\(Int(s) / 60)m\(Int(s) % 60)s" }
        return "\(Int(s) / 3600)h\((Int(s) % 3600) / 60)m"
    }

    static func json(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }
}

/// JSON renderings shared by every `--json` command.
extension JobRecord {
    var json: JSONValue {
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
            "enqueued_at": .string(Format.time(enqueuedAt)),
            "updated_at": .string(Format.time(updatedAt)),
            "run_at": .string(Format.time(runAt)),
            "retry_count": .int(Int64(retryCount)),
            "cumulative_backoff_sec": .double(cumulativeBackoffSec),
        ]
        func set(_ key: String, _ value: String?) { if let value { fields[key] = .string(value) } }
        set("idempotency_key", spec.idempotencyKey)
        set("session_key", spec.sessionKey)
        set("region_affinity", spec.regionAffinity)
        if let fallback = spec.regionFallbackAfterSec { fields["region_fallback_after_sec"] = .int(Int64(fallback)) }
        set("lease_node", leaseNode)
        set("lease_expires_at", leaseExpiresAt.map { Format.time($0) })
        set("last_node", lastNode)
        set("last_node_at", lastNodeAt.map { Format.time($0) })
        set("last_error_class", lastErrorClass?.rawValue)
        set("last_reason", lastReason)
        set("last_message", lastMessage)
        set("last_successful_stage", lastSuccessfulStage)
        set("finished_at", finishedAt.map { Format.time($0) })
        if !outputs.isEmpty { fields["outputs"] = outputs.document }
        return .object(fields)
    }
}

extension StageOutput {
    var json: JSONValue {
        .object(["values": .object(values.mapValues { .string($0) }), "artifacts": .array(artifacts.map { .string($0) })])
    }
}

extension StageRecord {
    var json: JSONValue {
        var fields: [String: JSONValue] = [
            "index": .int(Int64(index)), "name": .string(name), "kind": .string(kind), "state": .string(state.rawValue),
            "attempts": .int(Int64(attempts)),
        ]
        func set(_ key: String, _ value: String?) { if let value { fields[key] = .string(value) } }
        set("node_id", node)
        set("started_at", startedAt.map { Format.time($0) })
        set("finished_at", finishedAt.map { Format.time($0) })
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
    var json: JSONValue {
        var fields: [String: JSONValue] = [
            "key": .string(key), "state": .string(state.rawValue), "held_since": .string(Format.time(heldSince)),
            "reason": .string(reason), "dead_jobs": .array(deadJobs.map(JSONValue.string)), "held_jobs": .int(Int64(heldJobs)),
        ]
        if let releasedAt { fields["released_at"] = .string(Format.time(releasedAt)) }
        return .object(fields)
    }
}

extension DeadLetterReport {
    var json: JSONValue {
        var fields: [String: JSONValue] = [
            "job": job.json, "envelope": job.spec.envelope,
            "attempts_used": .int(Int64(attemptsUsed)), "attempt_budget": .int(Int64(attemptBudget)),
            "retry_count": .int(Int64(retryCount)), "cumulative_backoff_sec": .double(cumulativeBackoffSec),
            "logs": .array(logs.map(JSONValue.string)),
            "errors": .array(errors.map { error in
                var e: [String: JSONValue] = [
                    "stage": .string(error.stage), "attempt": .int(Int64(error.attempt)), "node_id": .string(error.node),
                    "at": .string(Format.time(error.at)), "reason": .string(error.reason),
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
    var json: JSONValue {
        var fields: [String: JSONValue] = [
            "attempt": .int(Int64(attempt)),
            "fence": .int(fence),
            "stage": .string(stageName),
            "stage_index": .int(Int64(stageIndex)),
            "node_id": .string(nodeID),
            "started_at": .string(Format.time(startedAt)),
            "outcome": .string(outcome.rawValue),
        ]
        func set(_ key: String, _ value: String?) { if let value { fields[key] = .string(value) } }
        set("finished_at", finishedAt.map { Format.time($0) })
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
    var json: JSONValue {
        var fields: [String: JSONValue] = [
            "seq": .int(seq),
            "at": .string(Format.time(at)),
            "kind": .string(kind.rawValue),
            "detail": .object(detail.mapValues { .string($0) }),
        ]
        if let nodeID { fields["node_id"] = .string(nodeID) }
        if let stage { fields["stage"] = .string(stage) }
        if let attempt { fields["attempt"] = .int(Int64(attempt)) }
        if let fence { fields["fence"] = .int(fence) }
        return .object(fields)
    }

    /// One line of the human event timeline.
    var summary: String {
        var parts: [String] = []
        if let nodeID { parts.append("node=\(nodeID)") }
        if let stage { parts.append("stage=\(stage)") }
        if let attempt { parts.append("attempt=\(attempt)") }
        if let fence { parts.append("fence=\(fence)") }
        for key in detail.keys.sorted() { parts.append("\(key)=\(detail[key] ?? "")") }
        return parts.joined(separator: " ")
    }
}
