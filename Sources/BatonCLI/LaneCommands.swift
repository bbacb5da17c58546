import ArgumentParser
import BatonCore
import BatonStore
import Foundation

struct Lanes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lanes across the cluster: cap, running, waiting, oldest wait and recent queue waits.")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await reporting {
            let store = try await openStore(try global.loadConfig())
            let lanes = try await store.lanes()
            try await store.close()
            if json { return printJSON(.array(lanes.map(\.json))) }
            var table = Table("LANE", "CAP", "RUNNING", "WAITING", "READY", "OLDEST WAIT", "WAIT P50", "P90", "P99", "STARTS")
            for lane in lanes {
                table.add(lane.name, lane.cap.map(String.init) ?? "-", String(lane.running), String(lane.waiting), String(lane.ready),
                          lane.oldestReadySec.map(Format.duration) ?? "-", Self.ms(lane.wait.p50Ms), Self.ms(lane.wait.p90Ms),
                          Self.ms(lane.wait.p99Ms), String(lane.wait.count))
            }
            print(lanes.isEmpty ? "no lanes" : table.render())
        }
    }

    static func ms(_ value: Int64?) -> String { value.map { "\($0) ms" } ?? "-" }
}

extension LaneStats {
    var json: JSONValue {
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
