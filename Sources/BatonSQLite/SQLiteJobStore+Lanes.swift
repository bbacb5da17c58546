import BatonCore
import BatonStore
import Foundation
import GRDB

extension SQLiteJobStore {
    public func setLaneCaps(_ caps: [String: Int]) async throws {
        try await write { db, now in
            try db.execute(sql: "DELETE FROM lanes")
            for (name, cap) in caps.sorted(by: { $0.key < $1.key }) {
                try db.execute(sql: "INSERT INTO lanes (name, cap, updated_at) VALUES (?, ?, ?)", arguments: [name, cap, now])
            }
        }
        // A raised cap may let waiting jobs start now.
        signal.notify()
    }

    public func lanes() async throws -> [LaneStats] {
        let now = clock.now().epochMilliseconds
        return try await read { db in
            var caps: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT name, cap FROM lanes") { caps[row["name"]] = row["cap"] }
            var stats: [String: LaneStats] = [:]
            for name in caps.keys {
                stats[name] = LaneStats(name: name, cap: caps[name], waiting: 0, ready: 0, running: 0, oldestReadySec: nil, wait: .empty)
            }
            for row in try Row.fetchAll(db, sql: """
                SELECT lane, SUM(state IN ('queued', 'retry_wait')) AS waiting,
                       SUM(state IN ('queued', 'retry_wait') AND run_at <= ?) AS ready, SUM(state = 'running') AS running,
                       MIN(CASE WHEN state IN ('queued', 'retry_wait') AND run_at <= ? THEN run_at END) AS oldest
                FROM jobs WHERE state IN ('queued', 'retry_wait', 'running') GROUP BY lane
                """, arguments: [now, now]) {
                let name: String = row["lane"]
                stats[name] = LaneStats(name: name, cap: caps[name], waiting: row["waiting"], ready: row["ready"],
                                        running: row["running"],
                                        oldestReadySec: (row["oldest"] as Int64?).map { Double(now - $0) / 1000 }, wait: .empty)
            }
            for name in stats.keys {
                let samples = try Int64.fetchAll(db, sql: """
                    SELECT wait_ms FROM attempts INDEXED BY attempts_waits WHERE lane = ? AND wait_ms IS NOT NULL
                    ORDER BY started_at DESC LIMIT ?
                    """, arguments: [name, LaneStatsWindow.samples])
                stats[name]?.wait = WaitDistribution(samples: samples)
            }
            return stats.values.sorted { $0.name < $1.name }
        }
    }

    public func startsInLane(_ lane: String, since: Date) async throws -> Int {
        try await read { db in
            try Int.fetchOne(db, sql: """
                SELECT COUNT(*) FROM attempts INDEXED BY attempts_waits WHERE lane = ? AND wait_ms IS NOT NULL AND started_at >= ?
                """, arguments: [lane, since.epochMilliseconds]) ?? 0
        }
    }
}

extension SQLiteJobStore {
    public func activity(since: Date) async throws -> ActivityStats {
        let since = since.epochMilliseconds
        return try await read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COUNT(*) AS attempts, COUNT(*) FILTER (WHERE outcome IN ('failed', 'lease_expired')) AS failed
                FROM attempts WHERE started_at >= ?
                """, arguments: [since])
            let dead = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs WHERE state = 'dead' AND finished_at >= ?",
                                        arguments: [since]) ?? 0
            return ActivityStats(attempts: row?["attempts"] ?? 0, failedAttempts: row?["failed"] ?? 0, deadLetters: dead)
        }
    }

    public func serverTime() async throws -> Date? { nil }
}

extension SQLiteJobStore {
    public func recentEvents(kinds: [JobEvent.Kind], limit: Int, window: Int) async throws -> [JobEvent] {
        guard !kinds.isEmpty else { return [] }
        var bound = StatementArguments([window])
        bound += StatementArguments(kinds.map(\.rawValue))
        bound += [limit]
        let arguments = bound
        return try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM events WHERE seq > (SELECT coalesce(max(seq), 0) FROM events) - ?
                  AND kind IN (\(kinds.map { _ in "?" }.joined(separator: ", "))) ORDER BY seq DESC LIMIT ?
                """, arguments: arguments).map(Self.event(from:))
        }
    }
}
