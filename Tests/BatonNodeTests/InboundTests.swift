import BatonCore
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

/// Inbound chat messages through `baton inbound`, as separate processes deliver them.
extension MultiProcessTests {
@Suite(.serialized) struct InboundTests {
    func inbound(_ h: ProcessHarness, config: String, id: String, text: String) throws -> Process {
        try h.launch(["inbound", "--config", config, "--channel", "telegram", "--account", "bot", "--peer", "42",
                      "--message-id", id, "--text", text])
    }

    @Test(arguments: [ProcessHarness.Engine.sqlite, .postgres])
    func aMessageDeliveredFiveTimesToDifferentNodesMakesOneJob(_ engine: ProcessHarness.Engine) async throws {
        if engine == .postgres && !TestPostgresServer.enabled { return }
        let h = try await ProcessHarness(engine)
        defer { h.finish() }
        let configs = try (0..<5).map { try h.config(node: "gateway-\($0)") }
        let deliveries = try configs.map { try inbound(h, config: $0, id: "update-7781", text: "deploy please") }
        for process in deliveries { try await h.waitForExit(process, timeout: 30) }
        #expect(deliveries.allSatisfy { $0.terminationStatus == 0 })
        let jobs = try await h.store.jobs(matching: JobFilter())
        #expect(jobs.count == 1, "five deliveries of one message, \(jobs.count) jobs")
        #expect(jobs.first?.spec.sessionKey == "telegram:bot:42")
    }

    @Test func fourMessagesWithinTheDebounceRunAsOneJobWithEveryTextInOrder() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let out = h.directory.appendingPathComponent("runs.txt").path
        let inboundConfig = """
            messages:
              inbound:
                debounceMs: 1500
                run: {shell: "cat \\"$BATON_PAYLOAD\\" >> \(out); echo >> \(out)"}
            """
        let config = try h.config(node: "gateway", extra: inboundConfig)
        try h.startWorker("runner", extra: inboundConfig)
        let texts = ["hi", "can you", "rebuild the", "ios app"]
        for (index, text) in texts.enumerated() {
            if index > 0 { try await Task.sleep(for: .milliseconds(300)) }
            let process = try inbound(h, config: config, id: "m-\(index)", text: text)
            try await h.waitForExit(process, timeout: 30)
        }
        try await h.waitUntil(timeout: 30, "the batch to run") { try await h.store.counts()[.succeeded] == 1 }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await h.store.jobs(matching: JobFilter()).count == 1)
        let runs = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").filter { !$0.isEmpty }
        #expect(runs.count == 1)
        let payload = try JSONValue.parse(Data(try #require(runs.first).utf8), what: "payload")
        guard case .object(let root) = payload, case .object(let inbound)? = root["inbound"],
              case .array(let messages)? = inbound["messages"] else {
            Issue.record("unexpected payload \(payload)")
            return
        }
        let received = messages.compactMap { message -> String? in
            if case .object(let fields) = message, case .string(let text)? = fields["text"] { text } else { nil }
        }
        #expect(received == texts)
    }
}
}
