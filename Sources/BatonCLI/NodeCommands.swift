import ArgumentParser
import BatonCore
import BatonNode
import BatonStore
import Foundation

struct Nodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the cluster's nodes: health, load, version and configuration drift.",
        discussion: """
            HEALTH is healthy, late (missed a heartbeat), dead (missed node.dead_after_missed heartbeats; \
            its jobs were run elsewhere) or stopped (left on purpose). DRIFT marks a node whose Baton \
            version or configuration hash differs from most live nodes.
            """)

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Include stopped nodes.") var all = false

    func run() async throws {
        try await reporting {
            let store = try await openStore(try global.loadConfig())
            let nodes = try await store.nodes()
            try await store.close()
            let report = NodeReport(nodes: nodes, now: Date())
            if json { return printJSON(report.json) }
            print(report.render(includeStopped: all))
        }
    }
}

/// The registry as an operator reads it: each node's health, and which nodes drifted from
/// the version and configuration most live nodes run.
struct NodeReport {
    struct Row {
        var node: NodeRecord
        var health: NodeHealth
        var drift: [String]
    }

    let rows: [Row]
    let now: Date

    init(nodes: [NodeRecord], now: Date) {
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

    func render(includeStopped: Bool) -> String {
        let shown = rows.filter { includeStopped || $0.health != .stopped }
        guard !shown.isEmpty else {
            return rows.isEmpty ? "no nodes have registered" : "no running nodes (\(rows.count) stopped; --all lists them)"
        }
        var table = Table("NODE", "HEALTH", "LAST SEEN", "IN FLIGHT", "REGION", "VERSION", "CONFIG", "HOST", "PID", "UP", "DRIFT")
        for row in shown {
            let info = row.node.info
            table.add(info.id, row.health.rawValue, Format.age(row.node.lastSeen, now: now) + " ago",
                      "\(row.node.inFlight)/\(info.capacity)", info.region ?? "-", info.version, info.configHash,
                      info.host, String(info.pid),
                      row.health == .stopped || row.health == .dead ? "-" : Format.age(row.node.startedAt, now: now),
                      row.drift.isEmpty ? "" : "DRIFT (" + row.drift.joined(separator: ", ") + ")")
        }
        var lines = [table.render()]
        let counts = Dictionary(grouping: rows, by: \.health).mapValues(\.count)
        lines.append("")
        lines.append(NodeHealth.allCases.compactMap { h in counts[h].map { "\($0) \(h.rawValue)" } }.joined(separator: ", "))
        let drifted = rows.filter { !$0.drift.isEmpty }
        if !drifted.isEmpty {
            lines.append("drift: \(drifted.map(\.node.id).joined(separator: ", ")) run a different version or configuration than most live nodes")
        }
        return lines.joined(separator: "\n")
    }

    var json: JSONValue {
        .array(rows.map { row in
            let info = row.node.info
            var fields: [String: JSONValue] = [
                "id": .string(info.id), "instance": .string(info.instance), "host": .string(info.host),
                "pid": .int(Int64(info.pid)), "tags": .array(info.tags.map { .string($0) }),
                "capacity": .int(Int64(info.capacity)), "in_flight": .int(Int64(row.node.inFlight)),
                "version": .string(info.version), "config_hash": .string(info.configHash),
                "state": .string(row.node.state.rawValue), "health": .string(row.health.rawValue),
                "started_at": .string(Format.time(row.node.startedAt)), "last_seen": .string(Format.time(row.node.lastSeen)),
                "heartbeat_interval_sec": .double(info.heartbeatIntervalSec), "dead_after_sec": .double(info.deadAfterSec),
                "drift": .array(row.drift.map { .string($0) }),
            ]
            if let region = info.region { fields["region"] = .string(region) }
            return .object(fields)
        })
    }
}
