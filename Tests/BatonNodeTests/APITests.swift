import AsyncHTTPClient
import BatonAPI
import BatonCore
import BatonNode
import BatonSQLite
import BatonStore
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Prometheus
import Testing

/// The HTTP API through a real HTTP client against a running server (SQLite store, an
/// ephemeral port on loopback).
@Suite struct APITests {
    static let admin = "admin-token-0123456789abcdef"
    static let producer = "producer-token-0123456789ab"
    static let reader = "reader-token-0123456789abcd"

    final class Server: Sendable {
        let store: SQLiteJobStore
        let base: String
        let task: Task<Void, any Error>
        let directory: URL

        init(store: SQLiteJobStore, base: String, task: Task<Void, any Error>, directory: URL) {
            self.store = store
            self.base = base
            self.task = task
            self.directory = directory
        }

        static func start(maxBodyBytes: Int = 1 << 20, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
                          models: ModelSettings = .standard) async throws -> Server {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-api-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let store = try SQLiteJobStore(path: directory.appendingPathComponent("baton.db").path)
            try await store.migrate()
            var config = BatonConfig()
            config.models = models
            config.api = APISettings(host: "127.0.0.1", port: 0, maxBodyBytes: maxBodyBytes, tokens: [
                .init(name: "ops", scope: .admin, env: "T_ADMIN"), .init(name: "ci", scope: .producer, env: "T_PRODUCER"),
                .init(name: "dash", scope: .reader, env: "T_READER"),
            ])
            let (ports, announce) = AsyncStream.makeStream(of: Int.self)
            let server = try APIServer(store: store, config: config,
                                       environment: ["T_ADMIN": admin, "T_PRODUCER": producer, "T_READER": reader],
                                       logger: Logger(label: "api-test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                       registry: registry) { port in
                announce.yield(port)
                announce.finish()
            }
            let task = Task { try await server.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            return Server(store: store, base: "http://127.0.0.1:\(port)", task: task, directory: directory)
        }

        func stop() async {
            task.cancel()
            _ = await task.result
            try? await store.close()
            try? FileManager.default.removeItem(at: directory)
        }

        /// GET /metrics as text.
        func metrics() async throws -> String {
            var request = HTTPClientRequest(url: base + "/metrics")
            request.headers.add(name: "authorization", value: "Bearer \(APITests.reader)")
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            #expect(response.status.code == 200)
            return String(buffer: try await response.body.collect(upTo: 16 << 20))
        }

        /// Sends a request; returns the status and the JSON body (null when empty).
        func call(_ method: HTTPMethod, _ path: String, token: String? = nil, body: String? = nil) async throws -> (Int, JSONValue) {
            var request = HTTPClientRequest(url: base + path)
            request.method = method
            if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
            if let body {
                request.headers.add(name: "content-type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: body))
            }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let bytes = try await response.body.collect(upTo: 16 << 20)
            let data = Data(bytes.readableBytesView)
            return (Int(response.status.code), data.isEmpty ? .null : try JSONValue.parse(data, what: "response"))
        }
    }

    static func field(_ value: JSONValue, _ path: String...) -> JSONValue? {
        var current: JSONValue? = value
        for key in path {
            guard case .object(let fields)? = current else { return nil }
            current = fields[key]
        }
        return current
    }

    static func array(_ value: JSONValue?) -> [JSONValue]? {
        if case .array(let items)? = value { return items }
        return nil
    }

    static func string(_ value: JSONValue, _ path: String...) -> String? {
        var current: JSONValue? = value
        for key in path {
            guard case .object(let fields)? = current else { return nil }
            current = fields[key]
        }
        if case .string(let s)? = current { return s }
        return nil
    }

    static let noop = #"{"stages": [{"name": "s", "run": {"noop": {}}}]}"#

    @Test func openRoutesNeedNoTokenAndEveryOtherRouteNeedsOne() async throws {
        let server = try await Server.start()
        for (method, path) in [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json")] {
            let (status, _) = try await server.call(.init(rawValue: method), path)
            #expect(status == 200, "\(method) \(path)")
        }
        for route in OpenAPI.routes where route.contains("/v1/") {
            let parts = route.split(separator: " ")
            let path = parts[1].replacingOccurrences(of: "{id}", with: "x").replacingOccurrences(of: "{key}", with: "k")
            let (status, body) = try await server.call(.init(rawValue: parts[0].uppercased()), path)
            #expect(status == 401 && Self.string(body, "error", "code") == "unauthorized", "\(route) without a token: \(status)")
            let (wrong, _) = try await server.call(.init(rawValue: parts[0].uppercased()), path, token: "not-a-token-at-all-0000")
            #expect(wrong == 401, "\(route) with an unknown token")
        }
        await server.stop()
    }

    @Test func scopesAllowWhatTheyShouldAndRefuseTheRestWith403() async throws {
        let server = try await Server.start()
        let (readerEnqueue, body) = try await server.call(.POST, "/v1/jobs", token: Self.reader, body: Self.noop)
        #expect(readerEnqueue == 403 && Self.string(body, "error", "code") == "forbidden")
        let (producerEnqueue, _) = try await server.call(.POST, "/v1/jobs", token: Self.producer, body: Self.noop)
        #expect(producerEnqueue == 201)
        let (producerCancel, _) = try await server.call(.POST, "/v1/jobs/x/cancel", token: Self.producer)
        #expect(producerCancel == 403, "cancelling is an admin's")
        let (readerList, _) = try await server.call(.GET, "/v1/jobs", token: Self.reader)
        #expect(readerList == 200)
        await server.stop()
    }

    @Test func jobsAreEnqueuedListedShownAndCancelled() async throws {
        let server = try await Server.start()
        let batch = "[\(Self.noop), {\"job_id\": \"build-7\", \"idempotency_key\": \"k\", \"stages\": [{\"name\": \"s\", \"run\": {\"noop\": {}}}]}]"
        let (created, body) = try await server.call(.POST, "/v1/jobs", token: Self.producer, body: batch)
        #expect(created == 201)
        guard case .array(let jobs)? = Self.field(body, "jobs") else { Issue.record("no jobs in \(body)"); return }
        #expect(jobs.count == 2)
        let (again, dedupe) = try await server.call(.POST, "/v1/jobs", token: Self.producer,
                                                    body: "{\"idempotency_key\": \"k\", \"stages\": [{\"name\": \"s\", \"run\": {\"noop\": {}}}]}")
        #expect(again == 201)
        let results = try #require(Self.array(Self.field(dedupe, "jobs")), "\(dedupe)")
        #expect(Self.string(results[0], "job_id") == "build-7")
        let (listed, list) = try await server.call(.GET, "/v1/jobs?state=queued&limit=10", token: Self.reader)
        let items = try #require(Self.array(Self.field(list, "jobs")), "\(list)")
        #expect(listed == 200 && items.count == 2)
        let (shown, detail) = try await server.call(.GET, "/v1/jobs/build-7", token: Self.reader)
        #expect(shown == 200 && Self.string(detail, "job", "state") == "queued")
        #expect(Self.field(detail, "events") != nil && Self.field(detail, "envelope") != nil)
        let (cancelled, record) = try await server.call(.POST, "/v1/jobs/build-7/cancel", token: Self.admin, body: #"{"reason": "not needed"}"#)
        #expect(cancelled == 200 && Self.string(record, "state") == "cancelled")
        let (twice, conflict) = try await server.call(.POST, "/v1/jobs/build-7/cancel", token: Self.admin)
        #expect(twice == 409 && Self.string(conflict, "error", "code") == "invalid_state")
        let (missing, notFound) = try await server.call(.GET, "/v1/jobs/nope", token: Self.reader)
        #expect(missing == 404 && Self.string(notFound, "error", "field") == "id")
        await server.stop()
    }

    @Test func badInputNamesTheFieldAndStoresNothing() async throws {
        let server = try await Server.start(maxBodyBytes: 1024)
        let (bad, body) = try await server.call(.POST, "/v1/jobs", token: Self.producer,
                                                body: "[\(Self.noop), {\"stages\": [{\"name\": \"s\", \"run\": {\"shel\": \"x\"}}]}]")
        #expect(bad == 422)
        #expect(Self.string(body, "error", "field")?.hasPrefix("[1].stages[0].run") == true, "\(body)")
        #expect(try await server.store.counts().values.reduce(0, +) == 0, "a bad batch stores nothing")
        let (notJSON, parse) = try await server.call(.POST, "/v1/jobs", token: Self.producer, body: "{oops")
        #expect(notJSON == 422 && Self.string(parse, "error", "field") == "(document)")
        let (badState, state) = try await server.call(.GET, "/v1/jobs?state=lost", token: Self.reader)
        #expect(badState == 422 && Self.string(state, "error", "field") == "state")
        let (badLimit, limit) = try await server.call(.GET, "/v1/jobs?limit=0", token: Self.reader)
        #expect(badLimit == 422 && Self.string(limit, "error", "field") == "limit")
        let big = "[" + Array(repeating: Self.noop, count: 40).joined(separator: ",") + "]"
        let (tooLarge, large) = try await server.call(.POST, "/v1/jobs", token: Self.producer, body: big)
        #expect(tooLarge == 413 && Self.string(large, "error", "code") == "too_large")
        #expect(Self.string(large, "error", "message")?.contains("1024") == true)
        let (unknown, route) = try await server.call(.GET, "/v1/nothing-here", token: Self.reader)
        #expect(unknown == 404 && Self.string(route, "error", "code") == "not_found")
        let (inbound, missing) = try await server.call(.POST, "/v1/inbound", token: Self.producer, body: #"{"account": "bot"}"#)
        #expect(inbound == 422 && Self.string(missing, "error", "field") == "channel")
        await server.stop()
    }

    @Test func deadLettersGatesNodesAndLanesAreReadAndActedOn() async throws {
        let server = try await Server.start()
        _ = try await server.store.enqueue(JobSpec(id: "broken", stages: [StageSpec(name: "s", run: .noop)]))
        let lease = try #require(try await server.store.claim(ClaimRequest(nodeID: "n1", limit: 1)).first)
        _ = try await server.store.fail(lease, failure: .fatal("exit_code", "exited with status 1"), report: .empty)
        let (listed, dead) = try await server.call(.GET, "/v1/dead-letters", token: Self.reader)
        let jobs = try #require(Self.array(Self.field(dead, "jobs")), "\(dead)")
        #expect(listed == 200 && jobs.count == 1)
        let (redriven, job) = try await server.call(.POST, "/v1/dead-letters/broken/redrive", token: Self.admin, body: #"{"from_start": true}"#)
        #expect(redriven == 200 && Self.string(job, "state") == "queued")
        let (gates, _) = try await server.call(.GET, "/v1/gates", token: Self.reader)
        #expect(gates == 200)
        let (release, none) = try await server.call(.POST, "/v1/gates/some-key/release", token: Self.admin)
        #expect(release == 404 && Self.string(none, "error", "field") == "key")
        let (nodes, _) = try await server.call(.GET, "/v1/nodes", token: Self.reader)
        #expect(nodes == 200)
        let (lanes, lanesBody) = try await server.call(.GET, "/v1/lanes", token: Self.reader)
        #expect(lanes == 200 && Self.field(lanesBody, "lanes") != nil)
        await server.stop()
    }

    @Test func schedulesAndInboundMessagesGoThroughTheAPI() async throws {
        let server = try await Server.start()
        let schedule = "{\"id\": \"nightly\", \"cron\": \"0 3 * * *\", \"timezone\": \"Europe/Berlin\", \"job\": \(Self.noop)}"
        let (added, record) = try await server.call(.POST, "/v1/schedules", token: Self.admin, body: schedule)
        #expect(added == 201 && Self.string(record, "next_fire")?.hasSuffix("T02:00:00.000Z") == true, "\(record)")
        let (badCron, bad) = try await server.call(.POST, "/v1/schedules", token: Self.admin,
                                                   body: "{\"id\": \"x\", \"cron\": \"61 * * * *\", \"job\": \(Self.noop)}")
        #expect(badCron == 422 && Self.string(bad, "error", "field") == "cron")
        let (pastAt, past) = try await server.call(.POST, "/v1/schedules", token: Self.admin,
                                                   body: "{\"id\": \"once\", \"at\": \"2020-01-01T00:00:00Z\", \"job\": \(Self.noop)}")
        #expect(pastAt == 422 && Self.string(past, "error", "field") == "at", "a one-shot in the past would never fire")
        let (paused, pausedBody) = try await server.call(.POST, "/v1/schedules/nightly/pause", token: Self.admin, body: #"{"reason": "freeze"}"#)
        #expect(paused == 200 && Self.string(pausedBody, "reason") == "freeze")
        let (resumed, resumedBody) = try await server.call(.POST, "/v1/schedules/nightly/resume", token: Self.admin)
        #expect(resumed == 200 && Self.string(resumedBody, "state") == "active")
        let (ran, run) = try await server.call(.POST, "/v1/schedules/nightly/run", token: Self.admin)
        #expect(ran == 201 && Self.string(run, "job_id") != nil)
        let (listed, list) = try await server.call(.GET, "/v1/schedules", token: Self.reader)
        let items = try #require(Self.array(Self.field(list, "schedules")), "\(list)")
        #expect(listed == 200 && items.count == 1)
        let (removed, _) = try await server.call(.DELETE, "/v1/schedules/nightly", token: Self.admin)
        #expect(removed == 204)
        let (again, _) = try await server.call(.DELETE, "/v1/schedules/nightly", token: Self.admin)
        #expect(again == 404)
        let message = #"{"channel": "telegram", "account": "bot", "peer": "42", "message_id": "m-1", "text": "hi"}"#
        let (first, created) = try await server.call(.POST, "/v1/inbound", token: Self.producer, body: message)
        let (second, duplicate) = try await server.call(.POST, "/v1/inbound", token: Self.producer, body: message)
        #expect(first == 201 && Self.string(created, "result") == "created")
        #expect(second == 200 && Self.string(duplicate, "result") == "duplicate")
        #expect(Self.string(created, "job_id") == Self.string(duplicate, "job_id"))
        await server.stop()
    }

    /// The OpenAPI document in the repository lists exactly the routes the server answers,
    /// each /v1 route with bearer security and the scope the server asks for.
    @Test func theOpenAPIDocumentMatchesTheRoutes() throws {
        guard case .object(let paths)? = Self.field(OpenAPI.document, "paths") else {
            Issue.record("the document has no paths")
            return
        }
        var documented: [String] = []
        for (path, value) in paths {
            guard case .object(let operations) = value else { continue }
            for (method, operation) in operations {
                documented.append("\(method) \(path)")
                if path.hasPrefix("/v1/") || path == "/metrics" {
                    #expect(Self.field(operation, "security") == .array([.object(["bearer": .array([])])]), "\(method) \(path)")
                    let served = OpenAPI.scopes["\(method) \(path)"] ?? nil
                    #expect(served != nil && Self.string(operation, "x-baton-scope") == served, "\(method) \(path): documented scope is the served one")
                }
            }
        }
        #expect(documented.sorted() == OpenAPI.routes.sorted())
        #expect(Self.string(OpenAPI.document, "openapi") == "3.1.0")
    }

    @Test func aTokenMatchesOnlyItselfNotAPrefixOrALongerString() async throws {
        let server = try await Server.start()
        for wrong in [String(Self.reader.dropLast()), Self.reader + "x", Self.reader + String(repeating: "A", count: 256),
                      Self.reader + String(repeating: "A", count: 512), String(Self.reader.reversed())] {
            let (status, _) = try await server.call(.GET, "/v1/jobs", token: wrong)
            #expect(status == 401, "\(wrong.count) characters")
        }
        let (right, _) = try await server.call(.GET, "/v1/jobs", token: Self.reader)
        #expect(right == 200)
        await server.stop()
    }

    @Test func aTokenWhoseSecretIsMissingOrShortIsRefusedAtStart() throws {
        var config = BatonConfig()
        config.api.tokens = [.init(name: "ops", scope: .admin, env: "T_MISSING")]
        let store = try SQLiteJobStore(path: FileManager.default.temporaryDirectory.appendingPathComponent("api-\(UUID()).db").path)
        #expect(throws: BatonError.self) {
            _ = try APIServer(store: store, config: config, environment: [:], logger: Logger(label: "t"))
        }
        do {
            _ = try APIServer(store: store, config: config, environment: ["T_MISSING": "short"], logger: Logger(label: "t"))
            Issue.record("a short token was accepted")
        } catch {
            #expect(error.field == "api.tokens[0].token_env" && error.message.contains("at least 16"))
        }
    }

    /// The process's metrics backend, set up once for the whole test run (swift-metrics allows
    /// one): in-process workers of every test report into it.
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(BatonMetricsFactory(registry: registry))
        return registry
    }()

    /// The value of one sample line (`name{labels} value`), or nil when absent.
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    /// /metrics moves as jobs run, and Prometheus's promtool accepts it.
    @Test func metricsMoveAsJobsRunAndPassPromtool() async throws {
        let server = try await Server.start(registry: Self.registry)
        let lane = "metrics-\(UUID().uuidString.prefix(6).lowercased())"
        let jobs = (0..<5).map { _ in "{\"lane\": \"\(lane)\", \"stages\": [{\"name\": \"s\", \"run\": {\"noop\": {}}}]}" }
            + (0..<2).map { _ in
                "{\"lane\": \"\(lane)\", \"stages\": [{\"name\": \"s\", \"run\": {\"shell\": \"exit 75\"}}], \"retry\": {\"max_attempts\": 2, \"initial_sec\": 0.05, \"jitter\": 0}}"
            }
        let (created, _) = try await server.call(.POST, "/v1/jobs", token: Self.producer, body: "[" + jobs.joined(separator: ",") + "]")
        #expect(created == 201)
        let before = try await server.metrics()
        #expect(Self.sample(before, "baton_queue_depth{lane=\"\(lane)\"}") == 7)
        let retriesBefore = Self.sample(before, "baton_retries_total{reason=\"exit_code\"}") ?? 0

        let worker = WorkerNode(store: server.store, options: WorkerOptions(
            nodeID: "metrics-node", capacity: 4, pollIntervalSec: 0.05,
            logDirectory: server.directory.appendingPathComponent("logs").path),
                                logger: Logger(label: "metrics-test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let running = Task { try await worker.run() }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let counts = try await server.store.counts()
            if (counts[.succeeded] ?? 0) + (counts[.dead] ?? 0) == 7 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        worker.beginDrain()
        try await running.value

        let after = try await server.metrics()
        #expect(Self.sample(after, "baton_queue_depth{lane=\"\(lane)\"}") == 0)
        #expect(Self.sample(after, "baton_job_duration_seconds_count{lane=\"\(lane)\",outcome=\"succeeded\"}") == 5)
        #expect(Self.sample(after, "baton_job_duration_seconds_count{lane=\"\(lane)\",outcome=\"dead\"}") == 2)
        #expect(Self.sample(after, "baton_queue_wait_seconds_count{lane=\"\(lane)\"}") == 9, "7 first runs and 2 retries")
        #expect((Self.sample(after, "baton_retries_total{reason=\"exit_code\"}") ?? 0) >= retriesBefore + 2)
        #expect((Self.sample(after, "baton_dead_letters_total{reason=\"exit_code\"}") ?? 0) >= 2)
        #expect(Self.sample(after, "baton_nodes{state=\"stopped\"}") ?? 0 >= 1)
        #expect(after.contains("baton_stage_duration_seconds_bucket{stage_kind=\"noop\""))

        // promtool (scripts/test installs it and sets BATON_PROMTOOL).
        if let promtool = ProcessInfo.processInfo.environment["BATON_PROMTOOL"], !promtool.isEmpty {
            let file = server.directory.appendingPathComponent("metrics.txt")
            try after.write(to: file, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\(promtool) check metrics < \(file.path) > \(file.path).out 2>&1"]
            try process.run()
            while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
            let output = (try? String(contentsOf: URL(fileURLWithPath: file.path + ".out"), encoding: .utf8)) ?? ""
            #expect(process.terminationStatus == 0, "promtool check metrics: \(output)")
        } else if ProcessInfo.processInfo.environment["BATON_REQUIRE_POSTGRES"] != nil {
            Issue.record("scripts/test runs this test with promtool (BATON_PROMTOOL) set")
        }
        await server.stop()
    }

    /// `llm` stages show at /metrics: failovers by from/to/reason, retries by provider and
    /// reason, tokens by model, and each model's cooldown read from the store.
    @Test func llmFailoversRetriesTokensAndCooldownsAreExported() async throws {
        let provider = try await FakeProvider.start()
        defer { Task { await provider.stop() } }
        provider.script("busy", .error(429, type: "rate_limit_error", headers: ["retry-after": "90"]))
        var settings = ModelSettings(providers: [ProviderSettings(name: "mx", kind: .openai, baseURL: provider.openAIURL)])
        settings.defaultChain = ModelChain(primary: ModelRef(provider: "mx", model: "busy"), fallbacks: [ModelRef(provider: "mx", model: "free")])
        let server = try await Server.start(registry: Self.registry, models: settings)
        let executor = LLMExecutor(store: server.store, settings: settings)
        let spec = JobSpec(id: JobID.make(), stages: [StageSpec(name: "ask", run: .llm(LLMStageRequest(
            model: ModelChain(primary: ModelRef(provider: "mx", model: "busy"), fallbacks: [ModelRef(provider: "mx", model: "free")]),
            messages: [LLMMessage(role: "user", content: "hi")])))])
        _ = try await server.store.enqueue(spec)
        let lease = try #require(try await server.store.claim(ClaimRequest(nodeID: "m1", limit: 1)).first)
        let result = await executor.execute(StageContext(lease: lease, abort: AbortSignal(), logDirectory: server.directory.path,
                                                         captureBytes: 1024))
        guard case .succeeded = result else { Issue.record("expected an answer, got \(result)"); return }
        let text = try await server.metrics()
        #expect((Self.sample(text, "baton_llm_failovers_total{from=\"mx/busy\",to=\"mx/free\",reason=\"rate_limited\"}") ?? 0) >= 1, "\(text)")
        #expect((Self.sample(text, "baton_llm_retries_total{provider=\"mx\",reason=\"rate_limited\"}") ?? 0) >= 1)
        #expect((Self.sample(text, "baton_llm_tokens_total{provider=\"mx\",model=\"free\",kind=\"input\"}") ?? 0) >= 11)
        #expect((Self.sample(text, "baton_llm_calls_total{provider=\"mx\",model=\"busy\",outcome=\"http_429\"}") ?? 0) >= 1)
        let rest = try #require(Self.sample(text, "baton_model_cooldown_seconds{model=\"mx/busy\"}"))
        #expect(rest > 80 && rest <= 90)

        // The same state over the API: a reader sees it, only an admin lifts it.
        let (status, models) = try await server.call(.GET, "/v1/models", token: Self.reader)
        #expect(status == 200)
        #expect(models.objectValue?["providers"] == .array([.object(["name": .string("mx"), "kind": .string("openai"),
                                                                     "base_url": .string(provider.openAIURL)])]))
        #expect(models.objectValue?["chains"]?.objectValue?["agents.defaults"] == settings.defaultChain?.json)
        let cooldown = try #require(models.objectValue?["cooldowns"]?.arrayValue?.first?.objectValue)
        #expect(cooldown["model"] == .string("busy") && cooldown["state"] == .string("cooling_down")
                && cooldown["reason"] == .string("rate_limited"))
        #expect(try await server.call(.POST, "/v1/models/mx/clear", token: Self.reader).0 == 403)
        #expect(try await server.call(.POST, "/v1/models/bad%20name/clear", token: Self.admin).0 == 422)
        let (cleared, body) = try await server.call(.POST, "/v1/models/mx/clear?model=busy", token: Self.admin)
        #expect(cleared == 200 && body.objectValue?["cleared"] == .int(1))
        #expect(try await server.call(.GET, "/v1/models", token: Self.reader).1.objectValue?["cooldowns"] == .array([]))
        await server.stop()
    }

    /// The dashboard: sign in with a token (cookie), an overview, a job page with its stages,
    /// attempts and handovers, and dead letters that only an admin may redrive.
    @Test func theDashboardSignsInShowsTheClusterAndLetsAnAdminRedrive() async throws {
        let server = try await Server.start()
        _ = try await server.store.enqueue(JobSpec(id: "chain-1", stages: [
            StageSpec(name: "compile", run: .noop), StageSpec(name: "sign", run: .noop), StageSpec(name: "upload", run: .noop),
        ]))
        // compile on mini-01, which then stops (releasing sign); mini-02 takes the job over: one handover.
        let first = try #require(try await server.store.claim(ClaimRequest(nodeID: "mini-01", limit: 1)).first)
        guard case .nextStage(let second) = try await server.store.complete(first) else { Issue.record("expected the next stage"); return }
        try await server.store.release(second, reason: "shutdown")
        var lease = try #require(try await server.store.claim(ClaimRequest(nodeID: "mini-02", limit: 1)).first)
        while case .nextStage(let next) = try await server.store.complete(lease) { lease = next }
        _ = try await server.store.enqueue(JobSpec(id: "broken", stages: [StageSpec(name: "s", run: .noop)]))
        let broken = try #require(try await server.store.claim(ClaimRequest(nodeID: "mini-02", limit: 1)).first)
        _ = try await server.store.fail(broken, failure: .fatal("exit_code", "exited with status 1"), report: .empty)

        // Redirects are what is checked here: not followed.
        let client = HTTPClient(configuration: .init(redirectConfiguration: .disallow))
        func get(_ path: String, cookie: String?) async throws -> (Int, String, String?) {
            var request = HTTPClientRequest(url: server.base + path)
            if let cookie { request.headers.add(name: "cookie", value: cookie) }
            let response = try await client.execute(request, timeout: .seconds(10))
            return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 4 << 20)),
                    response.headers.first(name: "location"))
        }
        let (anonymous, _, location) = try await get("/dashboard", cookie: nil)
        #expect(anonymous == 303 && location == "/dashboard/login")

        var login = HTTPClientRequest(url: server.base + "/dashboard/login")
        login.method = .POST
        login.headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
        login.body = .bytes(ByteBuffer(string: "token=\(Self.reader)"))
        let signedIn = try await client.execute(login, timeout: .seconds(10))
        let setCookie = try #require(signedIn.headers.first(name: "set-cookie"))
        #expect(signedIn.status.code == 303 && setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict"))
        let cookie = String(setCookie.split(separator: ";")[0])

        let (overview, html, _) = try await get("/dashboard", cookie: cookie)
        #expect(overview == 200)
        #expect(html.contains("mini-01 → mini-02"), "the overview lists the handover")
        for section in ["<h2>Lanes</h2>", "<h2>Nodes</h2>", "<h2>Recent handovers</h2>", "<h2>Recent jobs</h2>", "<h2>Dead letters</h2>",
                        "<h2>Held gates</h2>"] {
            #expect(html.contains(section), "overview shows \(section)")
        }
        #expect(html.contains("/dashboard/jobs/chain-1") && html.contains("http-equiv=refresh"))

        let (jobPage, job, _) = try await get("/dashboard/jobs/chain-1", cookie: cookie)
        #expect(jobPage == 200)
        for text in ["compile", "sign", "upload", "<h2>Handovers</h2>", "handed over from mini-01", "<h2>Attempts</h2>", "<h2>Events</h2>"] {
            #expect(job.contains(text), "the job page shows \(text)")
        }
        try await Self.renderInChromium(["overview": html, "job": job], in: server.directory)
        let (missing, _, _) = try await get("/dashboard/jobs/nope", cookie: cookie)
        #expect(missing == 404)

        var redrive = HTTPClientRequest(url: server.base + "/dashboard/dead-letters/broken/redrive")
        redrive.method = .POST
        redrive.headers.add(name: "cookie", value: cookie)
        #expect(try await client.execute(redrive, timeout: .seconds(10)).status.code == 403, "a reader may not redrive")
        redrive.headers.replaceOrAdd(name: "cookie", value: "baton_token=\(Self.admin)")
        // Another origin (a page on another port of this host is the same site) may not post.
        var forged = redrive
        forged.headers.add(name: "origin", value: "http://127.0.0.1:3000")
        #expect(try await client.execute(forged, timeout: .seconds(10)).status.code == 403, "a form from another origin")
        forged.headers.remove(name: "origin")
        forged.headers.add(name: "sec-fetch-site", value: "same-site")
        #expect(try await client.execute(forged, timeout: .seconds(10)).status.code == 403, "a same-site but cross-origin form")
        #expect(try await server.store.job(id: "broken")?.state == .dead, "nothing was redriven by them")
        let redriven = try await client.execute(redrive, timeout: .seconds(10))
        #expect(redriven.status.code == 200)
        #expect(String(buffer: try await redriven.body.collect(upTo: 1 << 20)).contains("queued again"))
        #expect(try await server.store.job(id: "broken")?.state == .queued)
        try await client.shutdown()
        await server.stop()
    }

    /// Renders each page in headless Chromium (scripts/test installs Debian's chromium and sets
    /// BATON_CHROMIUM): a screenshot is written and the rendered DOM keeps the page's tables.
    static func renderInChromium(_ pages: [String: String], in directory: URL) async throws {
        guard let chromium = ProcessInfo.processInfo.environment["BATON_CHROMIUM"], !chromium.isEmpty else {
            if ProcessInfo.processInfo.environment["BATON_REQUIRE_POSTGRES"] != nil {
                Issue.record("scripts/test runs this test with Chromium (BATON_CHROMIUM) set")
            }
            return
        }
        for (name, html) in pages {
            let page = directory.appendingPathComponent("\(name).html")
            try html.write(to: page, atomically: true, encoding: .utf8)
            let png = directory.appendingPathComponent("\(name).png")
            let dom = directory.appendingPathComponent("\(name).dom")
            let flags = "--headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1000"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\(chromium) \(flags) --screenshot=\(png.path) file://\(page.path) >/dev/null 2>&1 && "
                                 + "\(chromium) \(flags) --dump-dom file://\(page.path) > \(dom.path) 2>/dev/null"]
            try process.run()
            let deadline = Date().addingTimeInterval(60)
            while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
            if process.isRunning { process.terminate() }
            #expect(process.terminationStatus == 0, "chromium rendered \(name)")
            let size = (try? FileManager.default.attributesOfItem(atPath: png.path)[.size] as? Int) ?? 0
            #expect(size > 10_000, "a screenshot of \(name) was written (\(size) bytes)")
            let rendered = (try? String(contentsOf: dom, encoding: .utf8)) ?? ""
            #expect(rendered.contains("<table>") && rendered.contains("Baton"), "the rendered DOM of \(name) has its tables")
        }
    }
}
