import BatonCore
import BatonNode
import BatonPostgres
import BatonSQLite
import BatonStore
import BatonStoreTesting
import Foundation
import Synchronization
import Testing

/// A fake provider, a store on a manual clock and the settings that point at both: each test
/// enqueues `llm` jobs, claims them as a node would and runs the stage.
struct LLMRig {
    static let keys = ["AN_KEY": "an-secret-0123456789", "OA_KEY": "oa-secret-9876543210"]

    let provider: FakeProvider
    let store: any JobStore
    let clock: ManualClock
    let directory: URL
    var settings: ModelSettings
    let alerts = AlertInbox()

    init(store: (any JobStore)? = nil, clock: ManualClock = ManualClock(), providerKeys: [String: String] = [:]) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-llm-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.clock = clock
        self.store = try store ?? SQLiteJobStore.sqlite(path: directory.appendingPathComponent("baton.db").path, clock: clock.clock)
        try await self.store.migrate()
        provider = try await FakeProvider.start(keys: providerKeys)
        settings = ModelSettings(providers: [
            ProviderSettings(name: "an", kind: .anthropic, baseURL: provider.anthropicURL, apiKeyEnv: "AN_KEY", timeoutSec: 30),
            ProviderSettings(name: "oa", kind: .openai, baseURL: provider.openAIURL, apiKeyEnv: "OA_KEY", timeoutSec: 30),
        ])
    }

    func executor(_ store: (any JobStore)? = nil, environment: [String: String] = LLMRig.keys) -> LLMExecutor {
        let alerts = self.alerts
        return LLMExecutor(store: store ?? self.store, settings: settings, environment: { environment[$0] }, clock: clock.clock,
                           alerts: Alerts(webhookURL: "http://alerts.invalid/") { _, body in
                               alerts.add(try JSONValue.parse(body, what: "alert"))
                           })
    }

    func job(_ models: String..., prompt: String = "Summarise the build log in one line.", tokenBudget: Int? = nil,
             timeoutSec: Int? = nil) throws -> JobSpec {
        let chain = ModelChain(primary: try ModelRef.parse(models[0], field: "model"),
                               fallbacks: try models.dropFirst().map { try ModelRef.parse($0, field: "model") })
        let request = LLMStageRequest(model: chain, system: "You are terse.", messages: [LLMMessage(role: "user", content: prompt)],
                                      maxTokens: 64, tokenBudget: tokenBudget)
        return JobSpec(id: JobID.make(at: clock.now), stages: [StageSpec(name: "ask", run: .llm(request), timeoutSec: timeoutSec)],
                       retry: RetryPolicy(maxAttempts: 5, initialSec: 1, multiplier: 2, maxSec: 60, jitter: 0))
    }

    /// Enqueues `spec`, claims it as `node` and runs its stage with `executor`.
    func run(_ spec: JobSpec, node: String = "n1", with executor: LLMExecutor? = nil,
             abort: AbortSignal = AbortSignal()) async throws -> (StageResult, Lease) {
        _ = try await store.enqueue(spec)
        return try await claimAndRun(spec.id, node: node, with: executor, store: store, abort: abort)
    }

    func claimAndRun(_ id: String, node: String, with executor: LLMExecutor?, store: any JobStore,
                     abort: AbortSignal = AbortSignal()) async throws -> (StageResult, Lease) {
        let lease = try #require(try await store.claim(ClaimRequest(nodeID: node, limit: 1)).first { $0.jobID == id })
        let context = StageContext(lease: lease, abort: abort, logDirectory: directory.path, captureBytes: 4096)
        return (await (executor ?? self.executor(store)).execute(context), lease)
    }

    func events(_ id: String, _ kinds: JobEvent.Kind...) async throws -> [JobEvent] {
        try await store.events(jobID: id).filter { kinds.isEmpty || kinds.contains($0.kind) }
    }

    func finish() async {
        await provider.stop()
        try? await store.close()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Alerts a test's nodes posted.
final class AlertInbox: Sendable {
    private let documents = Mutex<[JSONValue]>([])
    func add(_ document: JSONValue) { documents.withLock { $0.append(document) } }
    var all: [JSONValue] { documents.withLock { $0 } }
}

extension StageResult {
    var output: [String: String]? { if case .succeeded(let report) = self { report.output?.values } else { nil } }
    var failure: Failure? { if case .failed(let failure, _) = self { failure } else { nil } }
}

@Suite("llm stages")
struct LLMExecutorTests {
    @Test func aRateLimitedPrimaryFallsBackToAnotherProviderAndRestsOnlyThatModel() async throws {
        let rig = try await LLMRig()
        defer { Task { await rig.finish() } }
        rig.provider.script("opus", .error(429, type: "rate_limit_error"))
        let first = try rig.job("an/opus", "oa/gpt")
        let (result, _) = try await rig.run(first)
        let output = try #require(result.output, "\(result)")
        #expect(output["reply"] == "answer from gpt")
        #expect(output["model"] == "oa/gpt" && output["provider"] == "oa" && output["provider_model"] == "gpt-2026")
        #expect(output["input_tokens"] == "11" && output["output_tokens"] == "7")
        let trail = try await rig.events(first.id, .modelSkipped, .modelFailed, .modelAnswered)
        #expect(trail.map(\.kind) == [.modelFailed, .modelAnswered])
        #expect(trail[0].detail["model"] == "an/opus" && trail[0].detail["reason"] == "rate_limited" && trail[0].detail["status"] == "429")
        #expect(trail[0].detail["cooldown_until"] == JSONTime.string(rig.clock.now.addingTimeInterval(60)))
        #expect(trail[1].detail["model"] == "oa/gpt")

        // A second job during the rest skips opus without calling it.
        let second = try rig.job("an/opus", "oa/gpt")
        let (again, _) = try await rig.run(second)
        #expect(again.output?["model"] == "oa/gpt")
        #expect(rig.provider.calls(to: "opus").count == 1)
        let skipped = try #require(try await rig.events(second.id, .modelSkipped).first)
        #expect(skipped.detail["model"] == "an/opus" && skipped.detail["reason"] == "cooling_down")
        #expect(skipped.detail["cause"] == "rate_limited")

        // Another model of the same provider is still called: the rest is per model.
        let third = try rig.job("an/sonnet", "oa/gpt")
        let (sonnet, _) = try await rig.run(third)
        #expect(sonnet.output?["model"] == "an/sonnet")
        #expect(rig.provider.calls(to: "sonnet").count == 1)
        #expect(try await rig.events(third.id, .modelSkipped).isEmpty)
    }

    @Test func bothWireFormatsCarryTheirKeysHeadersAndConversation() async throws {
        let rig = try await LLMRig()
        defer { Task { await rig.finish() } }
        _ = try await rig.run(try rig.job("an/opus"))
        _ = try await rig.run(try rig.job("oa/gpt"))
        let anthropic = try #require(rig.provider.calls(to: "opus").first)
        #expect(anthropic.format == "anthropic" && anthropic.apiKey == LLMRig.keys["AN_KEY"] && anthropic.anthropicVersion == "2023-06-01")
        #expect(anthropic.body.objectValue?["system"] == .string("You are terse."))
        #expect(anthropic.body.objectValue?["max_tokens"] == .int(64))
        #expect(anthropic.body.objectValue?["messages"] == .array([.object([
            "role": .string("user"), "content": .string("Summarise the build log in one line."),
        ])]))
        let openAI = try #require(rig.provider.calls(to: "gpt").first)
        #expect(openAI.format == "openai" && openAI.apiKey == LLMRig.keys["OA_KEY"])
        #expect(openAI.body.objectValue?["messages"] == .array([
            .object(["role": .string("system"), "content": .string("You are terse.")]),
            .object(["role": .string("user"), "content": .string("Summarise the build log in one line.")]),
        ]))
    }

    @Test func aModelRestsOneFiveTwentyFiveThenSixtyMinutesAcrossJobs() async throws {
        let rig = try await LLMRig()
        defer { Task { await rig.finish() } }
        var rests: [Double] = []
        for step in 0..<5 {
            rig.provider.script("opus", .error(429, type: "rate_limit_error"))
            let spec = try rig.job("an/opus", "oa/gpt")
            let (result, _) = try await rig.run(spec)
            #expect(result.output?["model"] == "oa/gpt")
            let failed = try #require(try await rig.events(spec.id, .modelFailed).first, "step \(step)")
            let until = try #require(failed.detail["cooldown_until"].flatMap(JSONTime.parse))
            let rest = until.timeIntervalSince(rig.clock.now)
            rests.append(rest)
            // A second before the rest ends the model is still skipped; at its end it is called again.
            rig.clock.advance(by: rest - 1)
            let early = try rig.job("an/opus", "oa/gpt")
            _ = try await rig.run(early)
            #expect(try await rig.events(early.id, .modelSkipped).first?.detail["model"] == "an/opus")
            rig.clock.advance(by: 1)
        }
        #expect(rests == [60, 300, 1500, 3600, 3600])
        #expect(rig.provider.calls(to: "opus").count == 5)
    }

    @Test func retryAfterAndRateLimitResetHeadersReplaceTheSchedule() async throws {
        let rig = try await LLMRig()
        defer { Task { await rig.finish() } }
        rig.provider.script("opus", .error(429, type: "rate_limit_error", headers: ["retry-after": "7"]))
        rig.provider.script("gpt", .error(429, type: "rate_limit_exceeded",
                                          headers: ["x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s",
                                                    "x-ratelimit-remaining-requests": "12", "x-ratelimit-reset-requests": "1s"]))
        let spec = try rig.job("an/opus", "oa/gpt")
        let (result, _) = try await rig.run(spec)
        let now = rig.clock.now
        let rests = Dictionary(uniqueKeysWithValues: try await rig.store.modelCooldowns().map { ("\($0.provider)/\($0.model)", $0.until) })
        #expect(rests["an/opus"] == now.addingTimeInterval(7))
        #expect(rests["oa/gpt"] == now.addingTimeInterval(360))
        // Both resting: the attempt comes back when the first rest ends, not before.
        let failure = try #require(result.failure)
        #expect(failure.errorClass == .transient && failure.reason == "llm_unavailable")
        #expect(failure.retryAfterSec == 7)
        #expect(failure.message.contains("an/opus failed (rate_limited, HTTP 429)"))
    }

    @Test func overloadedAndTransientAnswersMoveOnButOnlyOverloadRests() async throws {
        let rig = try await LLMRig()
        defer { Task { await rig.finish() } }
        rig.provider.script("opus", .error(529, type: "overloaded_error"))
        rig.provider.script("sonnet", .error(503, type: "api_error"))
        rig.provider.script("gpt", .reset)
        rig.provider.script("gpt-mini", .error(500, type: "server_error", headers: ["x-should-retry": "true"]))
        let spec = try rig.job("an/opus", "an/sonnet", "oa/gpt", "oa/gpt-mini", "oa/gpt-nano")
        let (result, _) = try await rig.run(spec)
        #expect(result.output?["model"] == "oa/gpt-nano")
        let failed = try await rig.events(spec.id, .modelFailed)
        #expect(failed.map { $0.detail["reason"] ?? "" } == ["overloaded", "http_503", "connection_error", "http_500"])
        #expect(try await rig.store.modelCooldowns().map { "\($0.provider)/\($0.model)" } == ["an/opus"])
    }

    @Test func aSlowModelPastTheProviderTimeoutIsTransientAndTheNextAnswers() async throws {
        var slow = try await LLMRig()
        slow.settings.providers[0].timeoutSec = 1
        let rig = slow
        defer { Task { await rig.finish() } }
        rig.provider.script("opus", .slow(5, .answer("too late")))
        let spec = try rig.job("an/opus", "oa/gpt")
        let (result, _) = try await rig.run(spec)
        #expect(result.output?["model"] == "oa/gpt")
        #expect(try await rig.events(spec.id, .modelFailed).first?.detail["reason"] == "timeout")
        #expect(try await rig.store.modelCooldowns().isEmpty)
    }

    @Test func refusedCredentialsHoldTheProviderSkipItsModelsAndAlertWithoutRetrying() async throws {
        let rig = try await LLMRig(providerKeys: ["anthropic": "the-right-key"])
        defer { Task { await rig.finish() } }
        let spec = try rig.job("an/opus", "an/sonnet", "oa/gpt")
        let (result, lease) = try await rig.run(spec)
        #expect(result.output?["model"] == "oa/gpt")
        #expect(rig.provider.calls(to: "opus").count == 1)
        #expect(rig.provider.calls(to: "sonnet").isEmpty)
        let hold = try #require(try await rig.store.modelCooldowns().first)
        #expect(hold.provider == "an" && hold.model == ModelCooldown.wholeProvider && hold.reason == "bad_credentials")
        #expect(hold.until == rig.clock.now.addingTimeInterval(3600))
        let trail = try await rig.events(spec.id, .modelSkipped, .modelFailed, .modelAnswered)
        #expect(trail.map { "\($0.kind):\($0.detail["model"] ?? ""):\($0.detail["reason"] ?? "")" } == [
            "model_failed:an/opus:bad_credentials", "model_skipped:an/sonnet:provider_held", "model_answered:oa/gpt:",
        ])
        try await waitFor("the alert") { !rig.alerts.all.isEmpty }
        let alert = try #require(rig.alerts.all.first?.objectValue)
        #expect(alert["kind"] == .string("provider_held") && alert["provider"] == .string("an") && alert["job_id"] == .string(lease.jobID))
        // The key is in no event, no alert and no stored row.
        let everything = "\(try await rig.store.events(jobID: spec.id))\(rig.alerts.all)\(try await rig.store.modelCooldowns())"
        #expect(!everything.contains(LLMRig.keys["AN_KEY"]!))

        // With every model held, nothing is called; the attempt fails for its backoff (a node
        // holding another key may take the next one).
        let stuck = try rig.job("an/opus", "an/sonnet")
        let (held, _) = try await rig.run(stuck)
        let failure = try #require(held.failure)
        #expect(failure.errorClass == .transient && failure.reason == "llm_no_usable_model" && failure.retryAfterSec == nil)
        #expect(rig.provider.calls(to: "opus").count == 1)

        // The hold is for the refused key: a node with the right one still calls the provider.
        let fixed = rig.executor(environment: LLMRig.keys.merging(["AN_KEY": "the-right-key"]) { $1 })
        let (answered, _) = try await rig.run(try rig.job("an/sonnet"), node: "n2", with: fixed)
        #expect(answered.output?["model"] == "an/sonnet")
        #expect(rig.provider.calls(to: "sonnet").count == 1)
        // Its answer lifts nothing: the hold of the bad key still runs.
        #expect(try await rig.store.modelCooldowns().count == 1)
    }

    @Test func aMalformedRequestDeadLettersWithoutTryingAFallback() async throws {
        let rig = try await LLMRig()
        defer { Task { await rig.finish() } }
        rig.provider.script("opus", .error(400, type: "invalid_request_error"))
        let spec = try rig.job("an/opus", "oa/gpt")
        let (result, lease) = try await rig.run(spec)
        let failure = try #require(result.failure)
        #expect(failure.errorClass == .fatal && failure.reason == "llm_http_400")
        #expect(rig.provider.calls(to: "gpt").isEmpty)
        #expect(try await rig.store.modelCooldowns().isEmpty)
        let decision = try await rig.store.fail(lease, failure: failure, report: .empty)
        #expect(decision == .deadLettered(reason: "llm_http_400"))

        for (status, type) in [(413, "request_too_large"), (422, "invalid_request_error"), (500, "api_error")] {
            rig.provider.script("opus", .error(status, type: type))
            let (other, _) = try await rig.run(try rig.job("an/opus", "oa/gpt"))
            #expect(other.failure?.errorClass == .fatal && other.failure?.reason == "llm_http_\(status)")
        }
        #expect(rig.provider.calls(to: "gpt").isEmpty)
    }

    @Test func theTokenBudgetDeadLettersARetryInsteadOfResendingTheContext() async throws {
        let rig = try await LLMRig()
        defer { Task { await rig.finish() } }
        let prompt = String(repeating: "context ", count: 100)  // ≈ 200 tokens, and the system text
        let tokens = TokenBudget.estimate(["You are terse.", prompt])
        rig.provider.script("opus", .error(503, type: "api_error"), .error(503, type: "api_error"))
        // Room for one resend, not two.
        let spec = try rig.job("an/opus", prompt: prompt, tokenBudget: tokens + 10)
        let (first, lease) = try await rig.run(spec)
        #expect(first.failure?.reason == "llm_unavailable")
        _ = try await rig.store.fail(lease, failure: try #require(first.failure), report: .empty)
        rig.clock.advance(by: 5)
        let (second, secondLease) = try await rig.claimAndRun(spec.id, node: "n1", with: nil, store: rig.store)
        #expect(second.failure?.reason == "llm_unavailable")
        _ = try await rig.store.fail(secondLease, failure: try #require(second.failure), report: .empty)
        rig.clock.advance(by: 5)
        let (third, thirdLease) = try await rig.claimAndRun(spec.id, node: "n1", with: nil, store: rig.store)
        let failure = try #require(third.failure)
        #expect(failure.errorClass == .fatal && failure.reason == "token_budget_exceeded")
        #expect(rig.provider.calls(to: "opus").count == 2)
        #expect(try await rig.store.fail(thirdLease, failure: failure, report: .empty) == .deadLettered(reason: "token_budget_exceeded"))
        let spend = try await rig.store.llmSpend(jobID: spec.id)
        #expect(spend.calls == 2 && spend.tokensResent == tokens)
        let refused = try #require(try await rig.events(spec.id, .modelSkipped).last)
        #expect(refused.detail["reason"] == "token_budget_exceeded")
    }

    @Test func anAbortCutsTheCallInFlightAndReportsItForRelease() async throws {
        let rig = try await LLMRig()
        defer { Task { await rig.finish() } }
        rig.provider.script("opus", .slow(30, .answer("never seen")))
        let abort = AbortSignal()
        let spec = try rig.job("an/opus", "oa/gpt")
        let running = Task { try await rig.run(spec, abort: abort) }
        try await waitFor("the call to be in flight") { rig.provider.inFlight == 1 }
        abort.trigger(.shutdown)
        let (result, _) = try await running.value
        guard case .aborted(.shutdown, _) = result else {
            Issue.record("expected an abort for release, got \(result)")
            return
        }
        #expect(rig.provider.calls(to: "gpt").isEmpty)
        #expect(try await rig.events(spec.id, .modelFailed).first?.detail["reason"] == "cut")
        #expect(try await rig.store.llmSpend(jobID: spec.id).calls == 1)
    }

    @Test func aStageWithoutAModelOrWithAMissingOutputFailsBeforeAnyCall() async throws {
        let rig = try await LLMRig()
        defer { Task { await rig.finish() } }
        var spec = try rig.job("an/opus")
        spec.stages[0].run = .llm(LLMStageRequest(agent: "ghost", messages: [LLMMessage(role: "user", content: "hi")]))
        let (noModel, _) = try await rig.run(spec)
        #expect(noModel.failure?.reason == "no_model")
        let missing = try rig.job("an/opus", prompt: "Summarise {{output.log}}")
        let (result, _) = try await rig.run(missing)
        #expect(result.failure?.reason == "missing_output")
        #expect(rig.provider.calls.isEmpty)
    }

    @Test(.enabled(if: TestPostgresServer.enabled))
    func twoNodesShareCooldownsThroughTheStore() async throws {
        let url = try #require(TestPostgresServer.url)
        var options = PostgresJobStore.Options()
        options.schema = TestPostgresServer.freshSchema()
        options.listen = false
        let clock = ManualClock()
        let storeA = try PostgresJobStore.postgres(url: url, options: options, clock: clock.clock)
        options.dropSchemaOnClose = true
        let storeB = try PostgresJobStore.postgres(url: url, options: options, clock: clock.clock)
        let rig = try await LLMRig(store: storeB, clock: clock)
        defer { Task { await rig.finish(); try? await storeA.close() } }
        try await storeA.migrate()
        let nodeA = rig.executor(storeA)
        let nodeB = rig.executor(storeB)
        rig.provider.script("opus", .error(429, type: "rate_limit_error"))
        let first = try rig.job("an/opus", "oa/gpt")
        _ = try await storeA.enqueue(first)
        let (a, _) = try await rig.claimAndRun(first.id, node: "node-a", with: nodeA, store: storeA)
        #expect(a.output?["model"] == "oa/gpt")
        let second = try rig.job("an/opus", "oa/gpt")
        _ = try await storeB.enqueue(second)
        let (b, _) = try await rig.claimAndRun(second.id, node: "node-b", with: nodeB, store: storeB)
        #expect(b.output?["model"] == "oa/gpt")
        #expect(rig.provider.calls(to: "opus").count == 1, "node B must skip the model node A saw rate-limited")
        let skipped = try #require(try await storeB.events(jobID: second.id).first { $0.kind == .modelSkipped })
        #expect(skipped.nodeID == "node-b" && skipped.detail["reason"] == "cooling_down")
        #expect(try await storeB.modelCooldowns().first?.nodeID == "node-a")
    }
}

/// Polls `condition` every 20 ms for up to `timeout` seconds.
func waitFor(_ what: String, timeout: Double = 10, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting for \(what)")
}
