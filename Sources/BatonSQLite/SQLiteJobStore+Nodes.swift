import BatonCore
import BatonStore
import Foundation
import GRDB

extension SQLiteJobStore {
    public func registerNode(_ info: NodeInfo, replacing instance: String?) async throws -> NodeRegistration {
        let result = try await write { db, now -> NodeRegistration in
            guard let existing = try Self.fetchNode(db, info.id) else {
                try Self.upsertNode(db, info, now: now)
                return .registered(try Self.requireNode(db, info.id), previous: nil, rescued: [])
            }
            if existing.info.instance == info.instance {
                try Self.upsertNode(db, info, now: now)
                return .registered(try Self.requireNode(db, info.id), previous: nil, rescued: [])
            }
            let gone = existing.health(at: Date(epochMilliseconds: now)).mayBeTakenOver
            guard gone || (instance != nil && instance == existing.info.instance) else {
                return .conflict(existing: existing)
            }
            // The earlier process is gone: whatever it still held runs again now.
            var report = RescueReport()
            let held = try Row.fetchAll(db.cachedStatement(sql: "\(Self.runningColumns) WHERE state = 'running' AND lease_node = ?"),
                                        arguments: [info.id])
            try Self.rescue(db, held, loss: .nodeRestarted, now: now, gates: self.gates, into: &report)
            try Self.upsertNode(db, info, now: now)
            return .registered(try Self.requireNode(db, info.id), previous: existing,
                               rescued: report.requeued + report.deadLettered + report.expired)
        }
        if case .registered(_, _, let rescued) = result, !rescued.isEmpty { signal.notify() }
        return result
    }

    public func nodeHeartbeat(_ info: NodeInfo, inFlight: Int) async throws -> NodeHeartbeatResult {
        try await write { db, now in
            guard let existing = try Self.fetchNode(db, info.id) else {
                try Self.upsertNode(db, info, now: now, inFlight: inFlight)
                return .ok
            }
            guard existing.info.instance == info.instance else { return .replaced(by: existing) }
            try db.cachedStatement(sql: """
                UPDATE nodes SET host = ?, pid = ?, region = ?, tags = ?, capacity = ?, version = ?, config_hash = ?,
                                 heartbeat_interval_ms = ?, dead_after_ms = ?, state = 'live', last_seen = ?, in_flight = ?
                WHERE id = ?
                """).execute(arguments: [info.host, info.pid, info.region, Self.tagsJSON(info.tags), info.capacity, info.version,
                                         info.configHash, Self.ms(info.heartbeatIntervalSec), Self.ms(info.deadAfterSec), now,
                                         inFlight, info.id])
            return existing.state == .live ? .ok : .revived
        }
    }

    public func deregisterNode(id: String, instance: String) async throws {
        try await write { db, now in
            try db.cachedStatement(sql: """
                UPDATE nodes SET state = 'stopped', in_flight = 0, last_seen = ? WHERE id = ? AND instance = ?
                """).execute(arguments: [now, id, instance])
        }
    }

    public func nodes() async throws -> [NodeRecord] {
        try await read { db in try Row.fetchAll(db, sql: "SELECT * FROM nodes ORDER BY id").map(Self.node(from:)) }
    }

    // MARK: Rows

    /// Inserts or replaces the node's row: live, started and last seen now.
    static func upsertNode(_ db: Database, _ info: NodeInfo, now: Int64, inFlight: Int = 0) throws {
        try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO nodes (id, instance, host, pid, region, tags, capacity, version, config_hash,
                                          heartbeat_interval_ms, dead_after_ms, state, started_at, last_seen, in_flight)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'live', ?, ?, ?)
            """).execute(arguments: [info.id, info.instance, info.host, info.pid, info.region, tagsJSON(info.tags), info.capacity,
                                     info.version, info.configHash, ms(info.heartbeatIntervalSec), ms(info.deadAfterSec),
                                     now, now, inFlight])
    }

    static func fetchNode(_ db: Database, _ id: String) throws -> NodeRecord? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM nodes WHERE id = ?"), arguments: [id]).map(node(from:))
    }

    static func requireNode(_ db: Database, _ id: String) throws -> NodeRecord {
        guard let node = try fetchNode(db, id) else { throw BatonError(.internal, "node \(id) vanished inside its transaction") }
        return node
    }

    static func node(from row: Row) -> NodeRecord {
        let info = NodeInfo(id: row["id"], instance: row["instance"], host: row["host"], pid: row["pid"], region: row["region"],
                            tags: NodeTags.decode(row["tags"]), capacity: row["capacity"], version: row["version"],
                            configHash: row["config_hash"],
                            heartbeatIntervalSec: Double(row["heartbeat_interval_ms"] as Int64) / 1000,
                            deadAfterSec: Double(row["dead_after_ms"] as Int64) / 1000)
        return NodeRecord(info: info, state: NodeRecord.State(rawValue: row["state"]) ?? .dead,
                          startedAt: Date(epochMilliseconds: row["started_at"]), lastSeen: Date(epochMilliseconds: row["last_seen"]),
                          inFlight: row["in_flight"])
    }

    static func tagsJSON(_ tags: [String]) -> String { NodeTags.encode(tags) }

    static func ms(_ seconds: Double) -> Int64 { Int64((seconds * 1000).rounded()) }
}
