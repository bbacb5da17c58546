import BatonCore
import BatonNode
import BatonSQLite
import BatonStore
import Foundation
import Logging
import Testing

/// http stages run by a real worker node on a real SQLite store, against a real local server:
/// what the retry machinery makes of the executor's answers.
@Suite(.timeLimit(.minutes(1)))
struct HTTPExecutorJobTests {
    typealias Reply = ScriptedHTTPServer.Reply

    /// Runs a single-stage http job on a fresh store and worker until the job is finished;
    /// returns the server's calls and the job's detail.
    func run(_ replies: [Reply], retry: RetryPolicy) async throws -> ([ScriptedHTTPServer.Call], JobDetail) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-http-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteJobStore(path: directory.appendingPathComponent("baton.db").path)
        try await store.migrate()
        let server = try await ScriptedHTTPServer.start(replies)
        let worker = WorkerNode(
            store: store,
            options: WorkerOptions(nodeID: "http-node", capacity: 2, pollIntervalSec: 0.02, drainTimeoutSec: 2,
                                   rescueIntervalSec: 60, logDirectory: directory.appendingPathComponent("logs").path,
                                   heartbeatIntervalSec: 1),
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let running = Task { try await worker.run() }
        let spec = JobSpec(id: JobID.make(), stages: [
            StageSpec(name: "notify", run: .http(HTTPStageRequest(method: "POST", url: server.url + "/hook",
                                                                  body: #"{"job": "{{job.id}}"}"#)),
                      timeoutSec: 10),
        ], retry: retry)
        do {
            _ = try await store.enqueue(spec)
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if try await store.job(id: spec.id)?.state.isTerminal == true { break }
                try await Task.sleep(for: .milliseconds(20))
            }
        } catch {
            worker.beginDrain()
            _ = await running.result
            await server.stop()
            throw error
        }
        worker.beginDrain()
        try await running.value
        await server.stop()
        let detail = try #require(try await store.detail(id: spec.id))
        try await store.close()
        return (server.calls, detail)
    }

    @Test func jobRetriesThrough429And503HonouringRetryAfterThenSucceeds() async throws {
        let replies = [Reply(status: 429, headers: ["Retry-After": "2"]), Reply(status: 503), Reply(status: 200, body: "ok")]
        let policy = RetryPolicy(maxAttempts: 5, initialSec: 0.2, multiplier: 1, maxSec: 1, jitter: 0)
        let (calls, detail) = try await run(replies, retry: policy)

        #expect(detail.job.state == .succeeded)
        #expect(calls.count == 3)
        #expect(calls.allSatisfy { $0.body == #"{"job": "\#(detail.job.spec.id)"}"# })
        let retried = detail.events.filter { $0.kind == .retried }
        #expect(retried.map { $0.detail["reason"] } == ["http_429", "http_503"])
        #expect(retried.first?.detail["delay_sec"] == "2.000")
        #expect(retried.first?.detail["retry_after_honoured"] == "true")
        #expect(retried.last?.detail["delay_sec"] == "0.200")
        #expect(retried.last?.detail["retry_after_honoured"] == "false")
        if calls.count == 3 {
            #expect(calls[1].at - calls[0].at >= .seconds(2), "the server asked for 2 s")
            #expect(calls[2].at - calls[1].at >= .milliseconds(200))
        }
        #expect(detail.attempts.map(\.reason) == ["http_429", "http_503", nil])
        #expect(detail.attempts.last?.report.stdout == "ok")
    }

    @Test func unauthorizedJobIsDeadAfterOneCall() async throws {
        let (calls, detail) = try await run([Reply(status: 401)], retry: RetryPolicy(maxAttempts: 5, initialSec: 0.2))
        #expect(detail.job.state == .dead)
        #expect(detail.job.lastReason == "http_401")
        #expect(detail.job.lastErrorClass == .fatal)
        #expect(calls.count == 1)
        #expect(!detail.events.contains { $0.kind == .retried })
    }
}
