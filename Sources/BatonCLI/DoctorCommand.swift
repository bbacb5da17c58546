import ArgumentParser
import BatonCore
import BatonNode
import BatonPostgres
import BatonStore
import Foundation

/// `baton doctor`: the troubleshooting table as checks. Each prints pass, warn, fail or skip
/// with what was found and the fix; the exit code is 1 when any check fails.
struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the store, the cluster's nodes, clocks, lanes, retries and dead letters, and say how to fix what is wrong.")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.") var json = false

    struct Check {
        enum Status: String { case pass, warn, fail, skip }
        var name: String
        var status: Status
        var detail: String
        var fix: String?
    }

    func run() async throws {
        try await reporting {
            let config = try global.loadConfig()
            let checks = await Self.checks(config)
            if json {
                printJSON(.array(checks.map { check in
                    var fields: [String: JSONValue] = ["check": .string(check.name), "status": .string(check.status.rawValue),
                                                       "detail": .string(check.detail)]
                    if let fix = check.fix { fields["fix"] = .string(fix) }
                    return .object(fields)
                }))
            } else {
                for check in checks {
                    print("\(check.status.rawValue.uppercased().padding(toLength: 5, withPad: " ", startingAt: 0)) "
                          + "\(check.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(check.detail)")
                    if let fix = check.fix, check.status == .warn || check.status == .fail { print("      fix: \(fix)") }
                }
            }
            if checks.contains(where: { $0.status == .fail }) { throw ExitCode(1) }
        }
    }

    static func checks(_ config: BatonConfig) async -> [Check] {
        var checks: [Check] = []
        if let url = config.postgresURL, let problem = await PostgresJobStore.probe(url: url) {
            checks.append(Check(name: "store", status: .fail, detail: problem,
                                fix: "start PostgreSQL there, or correct \(config.storeSource) (host and port)"))
            return checks + macChecks()
        }
        var config = config
        // A store that answers slowly is a finding, not a reason to hang.
        config.postgres.connectTimeoutSec = min(config.postgres.connectTimeoutSec, 5)
        config.postgres.operationTimeoutSec = min(config.postgres.operationTimeoutSec, 10)
        let store: any JobStore
        do {
            store = try await openStore(config)
            _ = try await store.counts()
            checks.append(Check(name: "store", status: .pass, detail: "reachable: \(config.redactedStore)"))
        } catch {
            checks.append(Check(name: "store", status: .fail, detail: "\(error)",
                                fix: "start the database, or correct \(config.storeSource) (host, port, user, password, database)"))
            return checks + macChecks()
        }
        defer { Task { try? await store.close() } }
        let now = Date()
        do {
            let nodes = try await store.nodes()
            checks.append(nodeIDCheck(config, nodes: nodes, now: now))
            checks.append(contentsOf: clusterChecks(config, report: NodeReport(nodes: nodes, now: now)))
            checks.append(try await clockCheck(store))
            checks.append(laneCheck(config, lanes: try await store.lanes()))
            checks.append(contentsOf: try await activityChecks(store, now: now))
        } catch {
            checks.append(Check(name: "store", status: .fail, detail: "a read failed: \(error)", fix: "see the store's logs"))
        }
        return checks + macChecks()
    }

    /// Another live process holding this configuration's node id (the seeds' "two gateways
    /// with one token"): the registry refuses the second at start, so find it before.
    static func nodeIDCheck(_ config: BatonConfig, nodes: [NodeRecord], now: Date) -> Check {
        let id = config.node.id
        guard let holder = nodes.first(where: { $0.id == id }), [.healthy, .late].contains(holder.health(at: now)) else {
            return Check(name: "node id", status: .pass, detail: "\"\(id)\" is free")
        }
        let info = holder.info
        if info.host == LocalHost.name {
            return LocalHost.processExists(info.pid)
                ? Check(name: "node id", status: .pass, detail: "\"\(id)\" is held by the worker running here (pid \(info.pid))")
                : Check(name: "node id", status: .pass,
                        detail: "\"\(id)\" is still registered to pid \(info.pid) here, which is gone: the next start takes it over")
        }
        return Check(name: "node id", status: .fail,
                     detail: "\"\(id)\" is held by a live process elsewhere: pid \(info.pid) on host \(info.host)",
                     fix: "give every process its own node.id (or BATON_NODE_ID); stop the other one if it is a leftover")
    }

    static func clusterChecks(_ config: BatonConfig, report: NodeReport) -> [Check] {
        var checks: [Check] = []
        let drifted = report.rows.filter { !$0.drift.isEmpty }
        if drifted.isEmpty {
            checks.append(Check(name: "drift", status: .pass, detail: "live nodes run one version and one configuration"))
        } else {
            checks.append(Check(
                name: "drift", status: .warn,
                detail: drifted.map { "\($0.node.id) (\($0.drift.joined(separator: ", ")): \($0.node.info.version), config \($0.node.info.configHash))" }
                    .joined(separator: "; "),
                fix: "deploy the same Baton version and baton.yaml to every node, then reload (SIGHUP) or restart them"))
        }
        let live = report.rows.filter { [.healthy, .late].contains($0.health) }
        let majority = Dictionary(live.map { ($0.node.info.configHash, 1) }, uniquingKeysWith: +).max { $0.value < $1.value }?.key
        if let majority, majority != config.configHash {
            checks.append(Check(name: "config", status: .warn,
                                detail: "this configuration's hash \(config.configHash) differs from the cluster's \(majority)",
                                fix: "use the cluster's baton.yaml here, or roll this one out to every node"))
        }
        let stale = report.rows.filter { $0.health == .late || $0.health == .dead }
        checks.append(stale.isEmpty
            ? Check(name: "stale nodes", status: .pass, detail: "\(live.count) live node\(live.count == 1 ? "" : "s"), none late or dead")
            : Check(name: "stale nodes", status: .warn,
                    detail: stale.map { "\($0.node.id) \($0.health.rawValue), last heartbeat \(Format.age($0.node.lastSeen, now: report.now)) ago" }
                        .joined(separator: "; "),
                    fix: "check those hosts (asleep? network? process stopped?); a node gone for good can be ignored once stopped"))
        return checks
    }

    static func clockCheck(_ store: any JobStore) async throws -> Check {
        let sent = Date()
        guard let server = try await store.serverTime() else {
            return Check(name: "clock", status: .pass, detail: "the store is on this host")
        }
        let received = Date()
        let local = sent.addingTimeInterval(received.timeIntervalSince(sent) / 2)
        let skew = local.timeIntervalSince(server)
        let text = String(format: "this host's clock is %.3f s %@ the store's", abs(skew), skew >= 0 ? "ahead of" : "behind")
        if abs(skew) < 0.5 { return Check(name: "clock", status: .pass, detail: text) }
        return Check(name: "clock", status: abs(skew) < 5 ? .warn : .fail, detail: text,
                     fix: "run NTP (chrony, systemd-timesyncd, or Date & Time › Set automatically on macOS): leases and schedules use clock time")
    }

    static func laneCheck(_ config: BatonConfig, lanes: [LaneStats]) -> Check {
        guard config.lanes.waitWarnMs > 0 else {
            return Check(name: "lanes", status: .skip, detail: "queue.wait_warn_ms is 0 (off)")
        }
        let threshold = Double(config.lanes.waitWarnMs) / 1000
        let saturated = lanes.filter { ($0.oldestReadySec ?? 0) > threshold }
        guard !saturated.isEmpty else {
            return Check(name: "lanes", status: .pass, detail: "no ready job has waited over \(Format.duration(threshold))")
        }
        return Check(name: "lanes", status: .warn,
                     detail: saturated.map { lane in
                         "\(lane.name): oldest ready job waited \(Format.duration(lane.oldestReadySec ?? 0)), "
                             + "\(lane.running) running of cap \(lane.cap.map(String.init) ?? "none"), \(lane.ready) ready"
                     }.joined(separator: "; "),
                     fix: "raise the lane's cap (lanes:, agents:) or add nodes; long jobs in a shared lane can go to a lane of their own")
    }

    static func activityChecks(_ store: any JobStore, now: Date) async throws -> [Check] {
        let day = try await store.activity(since: now.addingTimeInterval(-86_400))
        let hour = try await store.activity(since: now.addingTimeInterval(-3600))
        var checks: [Check] = []
        let share = day.attempts == 0 ? 0 : Double(day.failedAttempts) / Double(day.attempts)
        let shareText = String(format: "%.1f %% of %d attempts in the last day failed", share * 100, day.attempts)
        checks.append(share > 0.05
            ? Check(name: "retries", status: .warn, detail: shareText,
                    fix: "`baton dlq list` and `baton jobs --state retry_wait` show the reasons; a provider rate limit or a flaky host is the usual cause")
            : Check(name: "retries", status: .pass, detail: shareText))
        let perHour = Double(day.deadLetters) / 24
        let spike = hour.deadLetters >= 3 && Double(hour.deadLetters) > 3 * perHour
        checks.append(Check(name: "dead letters", status: spike ? .warn : .pass,
                            detail: "\(hour.deadLetters) in the last hour, \(day.deadLetters) in the last day",
                            fix: spike ? "`baton dlq list` and `baton dlq show JOB`; redrive once the cause is fixed" : nil))
        return checks
    }

    /// macOS: a Mac that sleeps stops its node; two launchd services run two nodes.
    static func macChecks() -> [Check] {
        #if os(macOS)
        var checks: [Check] = []
        if let settings = try? shell("/usr/bin/pmset", ["-g"]),
           let line = settings.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("sleep") }) {
            let value = line.split(separator: " ").last.map(String.init) ?? ""
            checks.append(value == "0"
                ? Check(name: "sleep", status: .pass, detail: "system sleep is off")
                : Check(name: "sleep", status: .warn, detail: "system sleep after \(value) min: the node stops while asleep",
                        fix: "sudo pmset -a sleep 0 (or keep the Mac awake with caffeinate)"))
        }
        if let services = try? shell("/bin/launchctl", ["list"]) {
            let batons = services.split(separator: "\n").filter { $0.contains("baton") }
            checks.append(batons.count > 1
                ? Check(name: "launchd", status: .warn, detail: "\(batons.count) launchd services run baton",
                        fix: "keep one: launchctl bootout the others")
                : Check(name: "launchd", status: .pass, detail: "\(batons.count) launchd service runs baton"))
        }
        return checks
        #else
        return [Check(name: "sleep", status: .skip, detail: "not macOS"), Check(name: "launchd", status: .skip, detail: "not macOS")]
        #endif
    }

    #if os(macOS)
    static func shell(_ path: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
    #endif
}
