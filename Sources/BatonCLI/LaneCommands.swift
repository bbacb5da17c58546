import ArgumentParser
import BatonCore
import BatonNode
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

struct Inbound: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hand Baton one inbound chat message: duplicates are dropped, quick successive messages of a session batched (messages.inbound).")

    @OptionGroup var global: GlobalOptions
    @Option(help: "The channel (telegram, discord, ...).") var channel: String
    @Option(help: "The bot account on that channel.") var account: String
    @Option(help: "Who sent it.") var peer: String
    @Option(help: "The conversation (default channel:account:peer).") var session: String?
    @Option(help: "The channel's id of the message (what duplicates share).") var messageID: String
    @Option(help: "The text.") var text: String
    @Option(help: "The agent whose lane the run goes to (agents.list).") var agent: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await reporting {
            let config = try global.loadConfig()
            for (name, value) in [("--channel", channel), ("--account", account), ("--peer", peer), ("--message-id", messageID)]
            where value.isEmpty || value.count > 256 {
                throw BatonError(.invalidInput, field: name, "expected 1 to 256 characters, got \(JSONValue.string(value).preview)")
            }
            let policy = try config.inboundPolicy(channel: channel, agent: agent, agentField: "--agent")
            let message = InboundMessage(channel: channel, account: account, peer: peer, session: session,
                                         messageID: messageID, text: text, receivedAt: Date())
            let store = try await openStore(config)
            let result = try await store.receive(message, policy: policy)
            try await store.close()
            let what: String
            switch result {
            case .created: what = "created"
            case .appended: what = "appended"
            case .duplicate: what = "duplicate"
            }
            if json { return printJSON(.object(["job_id": .string(result.jobID), "result": .string(what)])) }
            print("\(result.jobID)  \(what)")
        }
    }
}
