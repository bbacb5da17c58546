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
extension NodeReport {
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
}
