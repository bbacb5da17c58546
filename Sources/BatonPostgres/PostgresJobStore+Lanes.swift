import BatonCore
import BatonStore
import Foundation
import PostgresNIO

extension PostgresJobStore {
    public func setLaneCaps(_ caps: [String: Int]) async throws {
        let names = caps.keys.sorted()
        let values = names.map { Int64(caps[$0]!) }
        try await transaction { connection, now in
            // Nodes starting together publish together: one at a time.
            try await connection.rows("SELECT pg_advisory_xact_lock(hashtext(\("baton.lanes." + self.tables.schema)))",
                                      logger: self.logger)
            try await connection.rows("DELETE FROM \(unescaped: self.tables.lanes)", logger: self.logger)
            try await connection.rows("""
                INSERT INTO \(unescaped: self.tables.lanes) (name, cap, updated_at)
                SELECT name, cap, \(now) FROM unnest(\(names)::text[], \(values)::bigint[]) AS t(name, cap)
                """, logger: self.logger)
            // A raised cap may let waiting jobs start now.
            try await connection.rows("SELECT pg_notify(\(self.tables.channel), '')", logger: self.logger)
        }
        signal.notify()
    }

    public func lanes() async throws -> [LaneStats] {
        let now = clock.now().epochMilliseconds
        var stats: [String: LaneStats] = [:]
        for row in try await rows("SELECT name, cap FROM \(unescaped: tables.lanes)") {
            let name: String = try row.get("name")
            stats[name] = LaneStats(name: name, cap: (try row.get("cap", as: Int32?.self)).map(Int.init), waiting: 0, ready: 0,
                                    running: 0, oldestReadySec: nil, wait: .empty)
        }
        for row in try await rows("""
            SELECT lane, count(*) FILTER (WHERE state IN ('queued', 'retry_wait')) AS waiting,
                   count(*) FILTER (WHERE state IN ('queued', 'retry_wait') AND run_at <= \(now)) AS ready,
                   count(*) FILTER (WHERE state = 'running') AS running,
                   min(run_at) FILTER (WHERE state IN ('queued', 'retry_wait') AND run_at <= \(now)) AS oldest
            FROM \(unescaped: tables.jobs) WHERE state IN ('queued', 'retry_wait', 'running') GROUP BY lane
            """) {
            let name: String = try row.get("lane")
            stats[name] = LaneStats(name: name, cap: stats[name]?.cap, waiting: Int(try row.get("waiting", as: Int64.self)),
                                    ready: Int(try row.get("ready", as: Int64.self)),
                                    running: Int(try row.get("running", as: Int64.self)),
                                    oldestReadySec: (try row.get("oldest", as: Int64?.self)).map { Double(now - $0) / 1000 },
                                    wait: .empty)
        }
        for name in stats.keys {
            let samples = try await rows("""
                SELECT wait_ms FROM \(unescaped: tables.attempts) WHERE lane = \(name) AND wait_ms IS NOT NULL
                ORDER BY started_at DESC LIMIT \(Int64(LaneStatsWindow.samples))
                """).map { try $0.get("wait_ms", as: Int64.self) }
            stats[name]?.wait = WaitDistribution(samples: samples)
        }
        return stats.values.sorted { $0.name < $1.name }
    }

    public func startsInLane(_ lane: String, since: Date) async throws -> Int {
        let rows = try await rows("""
            SELECT count(*) AS n FROM \(unescaped: tables.attempts)
            WHERE lane = \(lane) AND wait_ms IS NOT NULL AND started_at >= \(since.epochMilliseconds)
            """)
        return Int(try rows.first?.get("n", as: Int64.self) ?? 0)
    }
}

extension PostgresJobStore {
    public func activity(since: Date) async throws -> ActivityStats {
        let since = since.epochMilliseconds
        let row = try await rows("""
            SELECT (SELECT count(*) FROM \(unescaped: tables.attempts) WHERE started_at >= \(since)) AS attempts,
                   (SELECT count(*) FROM \(unescaped: tables.attempts)
                    WHERE started_at >= \(since) AND outcome IN ('failed', 'lease_expired')) AS failed,
                   (SELECT count(*) FROM \(unescaped: tables.jobs) WHERE state = 'dead' AND finished_at >= \(since)) AS dead
            """)[0]
        return ActivityStats(attempts: Int(try row.get("attempts", as: Int64.self)), failedAttempts: Int(try row.get("failed", as: Int64.self)),
                             deadLetters: Int(try row.get("dead", as: Int64.self)))
    }

    public func serverTime() async throws -> Date? {
        let row = try await rows("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now")[0]
        return Date(epochMilliseconds: try row.get("now", as: Int64.self))
    }
}

extension PostgresJobStore {
    public func recentEvents(kinds: [JobEvent.Kind], limit: Int, window: Int) async throws -> [JobEvent] {
        try await rows("""
            SELECT * FROM \(unescaped: tables.events)
            WHERE seq > (SELECT coalesce(max(seq), 0) FROM \(unescaped: tables.events)) - \(Int64(window))
              AND kind = ANY(\(kinds.map(\.rawValue))) ORDER BY seq DESC LIMIT \(Int64(limit))
            """).map(Self.event(from:))
    }
}
