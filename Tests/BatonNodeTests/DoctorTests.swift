import BatonCore
import BatonStore
import Foundation
import Testing

/// `baton doctor` finds what the seeds' troubleshooting tables describe.
extension MultiProcessTests {
@Suite(.serialized) struct DoctorTests {
    @Test func aStoreThatRefusesConnectionsFailsNamingItsHostAndPort() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let config = h.directory.appendingPathComponent("down.yaml")
        try "store: postgres://postgres@127.0.0.1:1/postgres\n".write(to: config, atomically: true, encoding: .utf8)
        let result = try await h.cli(["doctor", "--config", config.path])
        #expect(result.status == 1)
        #expect(result.output.contains("FAIL  store"), "\(result.output)")
        #expect(result.output.contains("127.0.0.1:1") && result.output.lowercased().contains("refused"), "\(result.output)")
        #expect(result.output.contains("fix: start PostgreSQL there"))
    }

    @Test func aNodeWithAnotherConfigurationIsFlaggedAsDrift() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        for (id, hash) in [("mini-01", "aaaaaaaaaaaaaaaa"), ("mini-02", "aaaaaaaaaaaaaaaa"), ("mini-03", "bbbbbbbbbbbbbbbb")] {
            _ = try await h.store.registerNode(NodeInfo(id: id, host: "host-\(id)", pid: 100, capacity: 4, version: "0.1.0",
                                                        configHash: hash), replacing: nil)
        }
        let result = try await h.cli(["doctor", "--config", try h.config(node: "doctor-a")])
        #expect(result.status == 0, "drift warns, it does not fail: \(result.output)")
        #expect(result.output.contains("WARN  drift") && result.output.contains("mini-03 (config"), "\(result.output)")
        #expect(!result.output.contains("mini-01 (config"))
    }

    @Test func aNodeIDHeldByALiveProcessElsewhereFails() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        _ = try await h.store.registerNode(NodeInfo(id: "dup-node", host: "other-host", pid: 4242, capacity: 4, version: "0.1.0",
                                                    configHash: "cccccccccccccccc"), replacing: nil)
        let result = try await h.cli(["doctor", "--config", try h.config(node: "dup-node")])
        #expect(result.status == 1)
        #expect(result.output.contains("FAIL  node id") && result.output.contains("pid 4242 on host other-host"), "\(result.output)")
        let free = try await h.cli(["doctor", "--config", try h.config(node: "another-node")])
        #expect(free.output.contains("PASS  node id"), "\(free.output)")
    }
}
}
