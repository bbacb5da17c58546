import BatonCore
import BatonStore
import Foundation
import PostgresNIO

extension PostgresJobStore {
    public func registerNode(_ info: NodeInfo, replacing instance: String?) async throws -> NodeRegistration {
        let result = try await transaction { connection, now -> NodeRegistration in
            // A first registration of the id wins by inserting; everyone else meets the row, locked.
            if try await !(connection.rows(self.insertNode(info, now: now, onConflict: "DO NOTHING RETURNING id"),
                                           logger: self.logger)).isEmpty {
                return .registered(try await self.requireNode(connection, info.id), previous: nil, rescued: [])
            }
            let existing = try await self.requireNode(connection, info.id, lock: true)
            if existing.info.instance == info.instance {
                try await connection.rows(self.insertNode(info, now: now, onConflict: Self.replaceNode), logger: self.logger)
                return .registered(try await self.requireNode(connection, info.id), previous: nil, rescued: [])
            }
            let gone = existing.health(at: Date(epochMilliseconds: now)).mayBeTakenOver
            guard gone || (instance != nil && instance == existing.info.instance) else {
                return .conflict(existing: existing)
            }
            // The earlier process is gone: whatever it still held runs again now.
            var report = RescueReport()
            let held = try await (connection.rows("""
                \(unescaped: self.runningColumns) WHERE state = 'running' AND lease_node = \(info.id) ORDER BY seq FOR UPDATE
                """, logger: self.logger))
            try await self.rescue(connection, held, loss: .nodeRestarted, now: now, into: &report)
            if !report.requeued.isEmpty {
                try await connection.rows("SELECT pg_notify(\(self.tables.channel), '')", logger: self.logger)
            }
            try await connection.rows(self.insertNode(info, now: now, onConflict: Self.replaceNode), logger: self.logger)
            return .registered(try await self.requireNode(connection, info.id), previous: existing,
                               rescued: report.requeued + report.deadLettered + report.expired)
        }
        if case .registered(_, _, let rescued) = result, !rescued.isEmpty { signal.notify() }
        return result
    }

    public func nodeHeartbeat(_ info: NodeInfo, inFlight: Int) async throws -> NodeHeartbeatResult {
        let now = clock.now().epochMilliseconds
        // One statement: refresh the row when this instance still holds the id and report the
        // state it had; otherwise return the row that holds it.
        let rows = try await rows("""
            WITH previous AS (
                SELECT id, state, instance FROM \(unescaped: tables.nodes) WHERE id = \(info.id) FOR UPDATE
            ), refreshed AS (
                UPDATE \(unescaped: tables.nodes) n SET host = \(info.host), pid = \(Int32(info.pid)), region = \(info.region),
                    tags = \(NodeTags.encode(info.tags)), capacity = \(Int32(info.capacity)), version = \(info.version),
                    config_hash = \(info.configHash), heartbeat_interval_ms = \(Self.ms(info.heartbeatIntervalSec)),
                    dead_after_ms = \(Self.ms(info.deadAfterSec)), state = 'live', last_seen = \(now), in_flight = \(Int32(inFlight))
                FROM previous p WHERE n.id = p.id AND p.instance = \(info.instance)
                RETURNING p.state
            )
            SELECT (SELECT state FROM refreshed) AS refreshed_from, (SELECT count(*) FROM previous) AS known
            """)
        guard let row = rows.first else { throw BatonError(.internal, "node heartbeat returned no row") }
        if let previousState = try row.get("refreshed_from", as: String?.self) {
            return previousState == NodeRecord.State.live.rawValue ? .ok : .revived
        }
        if try row.get("known", as: Int64.self) == 0 {
            // The row is gone (removed by an operator): register again.
            try await self.rows(insertNode(info, now: now, onConflict: "DO NOTHING"))
            return .ok
        }
        guard let holder = try await nodes().first(where: { $0.id == info.id }) else { return .ok }
        return .replaced(by: holder)
    }

    public func deregisterNode(id: String, instance: String) async throws {
        let now = clock.now().epochMilliseconds
        try await rows("""
            UPDATE \(unescaped: tables.nodes) SET state = 'stopped', in_flight = 0, last_seen = \(now)
            WHERE id = \(id) AND instance = \(instance)
            """)
    }

    public func nodes() async throws -> [NodeRecord] {
        try await rows("SELECT * FROM \(unescaped: tables.nodes) ORDER BY id").map(Self.node(from:))
    }

    // MARK: Rows

    static let replaceNode = """
        DO UPDATE SET instance = EXCLUDED.instance, host = EXCLUDED.host, pid = EXCLUDED.pid, region = EXCLUDED.region,
            tags = EXCLUDED.tags, capacity = EXCLUDED.capacity, version = EXCLUDED.version, config_hash = EXCLUDED.config_hash,
            heartbeat_interval_ms = EXCLUDED.heartbeat_interval_ms, dead_after_ms = EXCLUDED.dead_after_ms, state = 'live',
            started_at = EXCLUDED.started_at, last_seen = EXCLUDED.last_seen, in_flight = 0
        """

    /// The node's row as a new registration: live, started and last seen `now`.
    func insertNode(_ info: NodeInfo, now: Int64, onConflict action: String) -> PostgresQuery {
        """
        INSERT INTO \(unescaped: tables.nodes) (id, instance, host, pid, region, tags, capacity, version, config_hash,
            heartbeat_interval_ms, dead_after_ms, state, started_at, last_seen, in_flight)
        VALUES (\(info.id), \(info.instance), \(info.host), \(Int32(info.pid)), \(info.region), \(NodeTags.encode(info.tags)),
            \(Int32(info.capacity)), \(info.version), \(info.configHash), \(Self.ms(info.heartbeatIntervalSec)),
            \(Self.ms(info.deadAfterSec)), 'live', \(now), \(now), 0)
        ON CONFLICT (id) \(unescaped: action)
        """
    }

    func requireNode(_ connection: PostgresConnection, _ id: String, lock: Bool = false) async throws -> NodeRecord {
        let rows = try await connection.rows("""
            SELECT * FROM \(unescaped: tables.nodes) WHERE id = \(id) \(unescaped: lock ? "FOR UPDATE" : "")
            """, logger: logger)
        guard let row = rows.first else { throw BatonError(.internal, "node \(id) vanished inside its transaction") }
        return try Self.node(from: row)
    }

    static func node(from row: PostgresRandomAccessRow) throws -> NodeRecord {
        let info = NodeInfo(id: try row.get("id"), instance: try row.get("instance"), host: try row.get("host"),
                            pid: try row.get("pid", as: Int32.self), region: try row.get("region"),
                            tags: NodeTags.decode(try row.get("tags")), capacity: Int(try row.get("capacity", as: Int32.self)),
                            version: try row.get("version"), configHash: try row.get("config_hash"),
                            heartbeatIntervalSec: Double(try row.get("heartbeat_interval_ms", as: Int64.self)) / 1000,
                            deadAfterSec: Double(try row.get("dead_after_ms", as: Int64.self)) / 1000)
        return NodeRecord(info: info, state: NodeRecord.State(rawValue: try row.get("state")) ?? .dead,
                          startedAt: Date(epochMilliseconds: try row.get("started_at")),
                          lastSeen: Date(epochMilliseconds: try row.get("last_seen")),
                          inFlight: Int(try row.get("in_flight", as: Int32.self)))
    }

    static func ms(_ seconds: Double) -> Int64 { Int64((seconds * 1000).rounded()) }
}
