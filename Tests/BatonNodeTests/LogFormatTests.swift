import BatonCore
import BatonStore
import Foundation
import Testing

/// `--log-format json`: one JSON object a line, with the node, job, stage and lane as fields.
extension MultiProcessTests {
@Suite(.serialized) struct LogFormatTests {
    @Test func jsonLogsCarryNodeJobStageAndLaneAsFields() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        _ = try await h.store.enqueue(JobSpec(id: "logged-job", lane: "builds", stages: [StageSpec(name: "compile", run: .shell("exit 3"))]))
        try h.startWorker("json-a", arguments: ["--log-format", "json"])
        try await h.waitUntil(timeout: 20, "the job to become a dead letter") { try await h.store.job(id: "logged-job")?.state == .dead }
        h.killWorkers()
        let lines = h.log(of: "json-a").split(separator: "\n")
        #expect(!lines.isEmpty)
        var objects: [[String: JSONValue]] = []
        for line in lines {
            guard case .object(let fields) = try JSONValue.parse(Data(line.utf8), what: "log line") else {
                Issue.record("not a JSON object: \(line)")
                continue
            }
            objects.append(fields)
        }
        let failed = try #require(objects.first { $0["message"] == .string("stage failed") }, "a stage failed line")
        #expect(failed["job.id"] == .string("logged-job"))
        #expect(failed["job.stage"] == .string("compile"))
        #expect(failed["lane"] == .string("builds"))
        #expect(failed["node.id"] == .string("json-a"))
        #expect(failed["level"] == .string("info") && failed["ts"] != nil)
        #expect(failed["meta.message"] == .string("exited with status 3"), "a metadata key named message does not hide the message")
    }
}
}
