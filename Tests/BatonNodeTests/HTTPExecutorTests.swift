import AsyncHTTPClient
import BatonCore
import BatonNode
import BatonStore
import Foundation
import NIOCore
import Testing

/// The http stage executor against a real local HTTP server with scripted answers.
struct HTTPExecutorTests {
    typealias Reply = ScriptedHTTPServer.Reply

    func context(_ request: HTTPStageRequest, timeoutSec: Int? = nil, timeoutClass: TimeoutClass = .exec,
                 outputs: JobOutputs = .empty, abort: AbortSignal = AbortSignal()) -> StageContext {
        let spec = JobSpec(id: JobID.make(), stages: [StageSpec(name: "notify", run: .http(request), timeoutSec: timeoutSec,
                                                                 timeoutClass: timeoutClass)])
        let lease = Lease(jobID: spec.id, nodeID: "node-h", fence: 1, attempt: 1, stageIndex: 0,
                          expiresAt: Date().addingTimeInterval(60), spec: spec, outputs: outputs)
        return StageContext(lease: lease, abort: abort, logDirectory: "/nonexistent", captureBytes: 1024)
    }

    /// Runs `body` against a server answering `replies`, and stops the server afterwards.
    func withServer<T>(_ replies: [Reply], _ body: (ScriptedHTTPServer) async throws -> T) async throws -> T {
        let server = try await ScriptedHTTPServer.start(replies)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    func failure(of result: StageResult) -> (Failure, AttemptReport)? {
        if case .failed(let failure, let report) = result { return (failure, report) }
        Issue.record("expected a failure, got \(result)")
        return nil
    }

    @Test func tooManyRequestsIsTransientAndHonoursRetryAfterSeconds() async throws {
        try await withServer([Reply(status: 429, headers: ["Retry-After": "2"])]) { server in
            let result = await HTTPExecutor().execute(context(HTTPStageRequest(url: server.url + "/hook")))
            guard let (failure, report) = failure(of: result) else { return }
            #expect(failure.errorClass == .transient)
            #expect(failure.reason == "http_429")
            #expect(failure.retryAfterSec == 2)
            #expect(failure.message == "GET \(server.url)/hook answered HTTP 429")
            #expect(report.httpStatus == 429)
        }
    }

    @Test func serviceUnavailableHonoursARetryAfterDateOnTheExecutorsClock() async throws {
        let clock = ManualClock(Date(timeIntervalSince1970: 1_445_412_480))  // Wed, 21 Oct 2015 07:28:00 GMT
        try await withServer([Reply(status: 503, headers: ["Retry-After": "Wed, 21 Oct 2015 07:28:45 GMT"])]) { server in
            let result = await HTTPExecutor(clock: clock.clock).execute(context(HTTPStageRequest(url: server.url)))
            guard let (failure, _) = failure(of: result) else { return }
            #expect(failure.errorClass == .transient)
            #expect(failure.retryAfterSec == 45)
        }
    }

    @Test func serviceUnavailableWithoutRetryAfterIsTransientWithTheComputedBackoff() async throws {
        try await withServer([Reply(status: 503)]) { server in
            let result = await HTTPExecutor().execute(context(HTTPStageRequest(url: server.url)))
            guard let (failure, report) = failure(of: result) else { return }
            #expect(failure.errorClass == .transient)
            #expect(failure.reason == "http_503")
            #expect(failure.retryAfterSec == nil)
            #expect(report.httpStatus == 503)
        }
    }

    @Test func okSucceedsWithABoundedBodyExcerptAndTheStatusAsOutput() async throws {
        // 19 bytes kept: "héllo wörld, g" is 16 bytes, "ü" (17–18) fits, "ß" (19–20) does not.
        let body = "héllo wörld, güß " + String(repeating: "x", count: 10_000)
        try await withServer([Reply(status: 200, body: body)]) { server in
            let request = HTTPStageRequest(method: "POST", url: server.url + "/done", body: "{}", excerptBytes: 19)
            let result = await HTTPExecutor().execute(context(request))
            guard case .succeeded(let report) = result else { Issue.record("expected success, got \(result)"); return }
            #expect(report.httpStatus == 200)
            #expect(report.stdout == "héllo wörld, gü…")
            #expect(report.output == StageOutput(stage: "notify", values: ["http_status": "200"]))
            #expect(server.calls.first?.method == "POST")
            #expect(server.calls.first?.body == "{}")
        }
    }

    @Test func unauthorizedIsFatalWithTheStatusAsReason() async throws {
        try await withServer([Reply(status: 401, body: "no")]) { server in
            let result = await HTTPExecutor().execute(context(HTTPStageRequest(url: server.url)))
            guard let (failure, report) = failure(of: result) else { return }
            #expect(failure.errorClass == .fatal)
            #expect(failure.reason == "http_401")
            #expect(report.httpStatus == 401)
            #expect(report.stdout == "no")
        }
    }

    @Test func internalServerErrorIsFatalUnlessTheResponseMarksItRetryable() async throws {
        let replies = [Reply(status: 500), Reply(status: 500, headers: ["x-should-retry": "true"]),
                       Reply(status: 500, headers: ["Retry-After": "3"])]
        try await withServer(replies) { server in
            let request = HTTPStageRequest(url: server.url)
            guard let (plain, _) = failure(of: await HTTPExecutor().execute(context(request))),
                  let (marked, _) = failure(of: await HTTPExecutor().execute(context(request))),
                  let (delayed, _) = failure(of: await HTTPExecutor().execute(context(request))) else { return }
            #expect(plain.errorClass == .fatal)
            #expect(plain.reason == "http_500")
            #expect(marked.errorClass == .transient)
            #expect(marked.retryAfterSec == nil)
            #expect(delayed.errorClass == .transient)
            #expect(delayed.retryAfterSec == 3)
        }
    }

    @Test func refusedConnectionIsTransient() async throws {
        // A port that was just listening and is now closed. The client keeps retrying a
        // refused connect until its connect timeout: a short one keeps the test fast.
        let server = try await ScriptedHTTPServer.start([Reply(status: 200)])
        await server.stop()
        let client = HTTPClient(configuration: .init(timeout: .init(connect: .milliseconds(300))))
        let result = await HTTPExecutor(client: client).execute(context(HTTPStageRequest(url: server.url + "/gone")))
        try await client.shutdown()
        guard let (failure, report) = failure(of: result) else { return }
        #expect(failure.errorClass == .transient)
        #expect(failure.reason == "connection_error")
        #expect(failure.message.hasPrefix("GET \(server.url)/gone failed before an answer"))
        // Which of the two the client reports depends on timing (on a busy machine its connect
        // timeout can pass before it reports the last refusal); either way it is transient.
        let message = failure.message.lowercased()
        #expect(message.contains("refused") || message.contains("connect timeout"), "\(failure.message)")
        #expect(report.httpStatus == nil)
    }

    @Test func secretHeaderReachesTheServerButNoReportOrMessage() async throws {
        let token = "s3cr3t-\(UUID().uuidString)"
        let executor = HTTPExecutor(environment: { $0 == "TOKEN" ? token : nil })
        let request = HTTPStageRequest(url: "", headers: ["Authorization": "Bearer {{env.TOKEN}}"])
        // The server echoes the headers it received: the excerpt must not hand the token back.
        try await withServer([Reply(status: 200, echoHeaders: true), Reply(status: 401, echoHeaders: true)]) { server in
            var echoing = request
            echoing.url = server.url + "/echo"
            let ok = await executor.execute(context(echoing))
            let denied = await executor.execute(context(echoing))
            #expect(server.calls.map { $0.headers["authorization"] } == ["Bearer \(token)", "Bearer \(token)"])
            guard case .succeeded(let report) = ok else { Issue.record("expected success, got \(ok)"); return }
            #expect(report.stdout?.contains("authorization: [redacted]") == true)
            guard let (failure, deniedReport) = failure(of: denied) else { return }
            for text in ["\(ok)", "\(denied)", failure.message, report.stdout ?? "", deniedReport.stdout ?? ""] {
                #expect(!text.contains(token))
                #expect(!text.contains(String(token.prefix(12))))
            }
        }
    }

    @Test func missingSecretFailsFatallyNamingTheVariableBeforeAnyRequest() async throws {
        try await withServer([Reply(status: 200)]) { server in
            let request = HTTPStageRequest(url: server.url, headers: ["Authorization": "Bearer {{env.API_TOKEN}}"])
            let result = await HTTPExecutor(environment: { _ in nil }).execute(context(request))
            guard let (failure, _) = failure(of: result) else { return }
            #expect(failure.errorClass == .fatal)
            #expect(failure.reason == "missing_secret")
            #expect(failure.message.contains("API_TOKEN"))
            #expect(server.callCount == 0)
        }
    }

    @Test func bodyTemplateRendersEarlierOutputsAsJSON() async throws {
        let outputs = JobOutputs(stages: [StageOutput(stage: "upload", values: ["url": "s3://b/k \"1\"\n", "size": "42"])])
        try await withServer([Reply(status: 204)]) { server in
            let request = HTTPStageRequest(
                method: "POST", url: server.url + "/stage/{{stage.name}}",
                headers: ["Content-Type": "application/json"],
                body: #"{"url": {{output.url | json}}, "size": {{output.size}}, "attempt": {{job.attempt}}}"#)
            let result = await HTTPExecutor().execute(context(request, outputs: outputs))
            guard case .succeeded(let report) = result else { Issue.record("expected success, got \(result)"); return }
            #expect(report.httpStatus == 204)
            let call = try #require(server.calls.first)
            #expect(call.path == "/stage/notify")
            let sent = try #require(try JSONSerialization.jsonObject(with: Data(call.body.utf8)) as? [String: Any])
            #expect(sent["url"] as? String == "s3://b/k \"1\"\n")
            #expect(sent["size"] as? Int == 42)
            #expect(sent["attempt"] as? Int == 1)
        }
    }

    @Test func missingOutputFailsFatallyNamingTheKey() async throws {
        let outputs = JobOutputs(stages: [StageOutput(stage: "build", values: ["sha": "abc"])])
        let request = HTTPStageRequest(method: "POST", url: "http://127.0.0.1:9/x", body: "{{output.url | json}}")
        let result = await HTTPExecutor().execute(context(request, outputs: outputs))
        guard let (failure, _) = failure(of: result) else { return }
        #expect(failure.errorClass == .fatal)
        #expect(failure.reason == "missing_output")
        #expect(failure.message.contains("\"url\""))
        #expect(failure.message.contains("run.http.body"))
    }

    @Test func stageTimeoutCancelsTheRequestAsExecOrUploadTimeout() async throws {
        try await withServer([Reply(status: 200, hang: true)]) { server in
            let request = HTTPStageRequest(url: server.url + "/slow")
            let started = ContinuousClock.now
            async let exec = HTTPExecutor().execute(context(request, timeoutSec: 1))
            async let upload = HTTPExecutor().execute(context(request, timeoutSec: 1, timeoutClass: .upload))
            let results = await [exec, upload]
            #expect(ContinuousClock.now - started < .seconds(10))
            guard let (execFailure, _) = failure(of: results[0]), let (uploadFailure, _) = failure(of: results[1]) else { return }
            #expect(execFailure.errorClass == .transient)
            #expect(execFailure.reason == "exec_timeout")
            #expect(uploadFailure.errorClass == .transient)
            #expect(uploadFailure.reason == "upload_timeout")
        }
    }

    @Test func abortCancelsTheRequestInFlight() async throws {
        try await withServer([Reply(status: 200, hang: true)]) { server in
            let abort = AbortSignal()
            let running = Task { await HTTPExecutor().execute(context(HTTPStageRequest(url: server.url), abort: abort)) }
            while server.callCount == 0 { try await Task.sleep(for: .milliseconds(10)) }
            let aborted = ContinuousClock.now
            abort.trigger(.cancelled("operator"))
            let result = await running.value
            #expect(ContinuousClock.now - aborted < .seconds(2))
            guard case .aborted(.cancelled("operator"), let report) = result else {
                Issue.record("expected an abort, got \(result)")
                return
            }
            #expect(report.httpStatus == nil)
        }
    }
}
