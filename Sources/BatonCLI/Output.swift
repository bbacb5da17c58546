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
