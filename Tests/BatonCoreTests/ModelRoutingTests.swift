import BatonCore
import Foundation
import Testing

@Suite("llm stages: envelope, cooldowns, verdicts, token budget")
struct ModelRoutingTests {
    // MARK: Envelope

    @Test func anLLMStageReadsItsChainPromptAndLimitsAndSurvivesStorage() throws {
        let spec = try readOne(envelope(stages: #"""
            [{"name": "ask", "run": {"llm": {
                "model": {"primary": "anthropic/claude-opus-4-6", "fallbacks": ["openai-codex/gpt-5.3-codex", "router/meta/llama-3"]},
                "system": "You are terse.", "prompt": "Summarise {{output.log}}", "max_tokens": 300,
                "temperature": 0.3, "token_budget": 5000}}}]
            """#))
        guard case .llm(let request) = spec.stages[0].run else { Issue.record("expected an llm stage"); return }
        #expect(request.model?.primary == ModelRef(provider: "anthropic", model: "claude-opus-4-6"))
        #expect(request.model?.fallbacks == [ModelRef(provider: "openai-codex", model: "gpt-5.3-codex"),
                                             ModelRef(provider: "router", model: "meta/llama-3")])
        #expect(request.messages == [LLMMessage(role: "user", content: "Summarise {{output.log}}")])
        #expect(request.system == "You are terse." && request.maxTokens == 300 && request.temperature == 0.3 && request.tokenBudget == 5000)
        #expect(try JobSpec.decode(Data(spec.storedJSON().utf8)) == spec)
        // What `baton show` prints reads back as the same job.
        #expect(try readOne(Data(spec.envelope.encoded())) == spec)
    }

    @Test func anLLMStageTakesAConversationOrAnAgentAndDefaultsItsLength() throws {
        let spec = try readOne(envelope(stages: #"""
            [{"name": "turn", "run": {"llm": {"agent": "support", "messages": [
                {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "status?"}]}}}]
            """#))
        guard case .llm(let request) = spec.stages[0].run else { Issue.record("expected an llm stage"); return }
        #expect(request.agent == "support" && request.model == nil && request.messages.count == 3)
        #expect(request.maxTokens == LLMStageRequest.defaultMaxTokens && request.tokenBudget == nil)
        #expect(try JobSpec.decode(Data(spec.storedJSON().utf8)) == spec)
    }

    @Test(arguments: [
        (#"{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}"#, "stages[0].run.llm.prompt", "not both"),
        (#"{"model": "x/y"}"#, "stages[0].run.llm.prompt", "is required"),
        (#"{"prompt": "a", "model": "gpt-4o"}"#, "stages[0].run.llm.model", "provider/model"),
        (#"{"prompt": "a", "model": {"primary": "a/b", "fallbacks": ["c"]}}"#, "stages[0].run.llm.model.fallbacks[0]", "provider/model"),
        (#"{"prompt": "a", "model": {"fallbacks": ["c/d"]}}"#, "stages[0].run.llm.model.primary", "is required"),
        (#"{"messages": [{"role": "system", "content": "x"}]}"#, "stages[0].run.llm.messages[0].role", "system text goes in system"),
        (#"{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}"#, "stages[0].run.llm.messages",
         "last message to be the user's"),
        (#"{"messages": []}"#, "stages[0].run.llm.messages", "at least one message"),
        (#"{"prompt": "a", "max_tokens": 0}"#, "stages[0].run.llm.max_tokens", "from 1"),
        (#"{"prompt": "a", "temperature": 3}"#, "stages[0].run.llm.temperature", "from 0"),
        (#"{"prompt": "{{env.KEY}}"}"#, "stages[0].run.llm.prompt", "env"),
        (#"{"prompt": "a", "temprature": 1}"#, "stages[0].run.llm.temprature", "temperature"),
    ])
    func aBadLLMStageNamesItsFieldAndWhatWasExpected(_ run: String, _ field: String, _ mention: String) {
        let error = readError(envelope(stages: #"[{"name": "ask", "run": {"llm": \#(run)}}]"#))
        #expect(error?.field == field, "\(run): \(error.map { "\($0)" } ?? "accepted")")
        #expect(error?.message.contains(mention) == true, "\(run): \(error?.message ?? "accepted")")
    }

    // MARK: Cooldowns

    @Test func theDocumentedScheduleIsOneFiveTwentyFiveAndSixtyMinutesExactly() {
        let clock = ManualClock()
        let policy = CooldownPolicy.standard
        let failure = ModelFailure(ref: ModelRef(provider: "anthropic", model: "opus"), reason: "rate_limited")
        var current: ModelCooldown?
        var rests: [Double] = []
        for _ in 0..<6 {
            let next = policy.next(after: failure, current: current, now: clock.now, jitterUnit: 0.9)
            rests.append(next.until.timeIntervalSince(clock.now))
            clock.set(next.until)
            current = next
        }
        #expect(rests == [60, 300, 1500, 3600, 3600, 3600])
        #expect(current?.level == 4 && current?.failures == 6)
    }

    @Test func jitterKeepsEachRestWithinItsBounds() {
        let policy = CooldownPolicy(jitter: 0.2)
        let failure = ModelFailure(ref: ModelRef(provider: "p", model: "m"), reason: "rate_limited")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        for unit in stride(from: -1.0, through: 1.0, by: 0.25) {
            let rest = policy.next(after: failure, current: nil, now: now, jitterUnit: unit).until.timeIntervalSince(now)
            #expect(policy.bounds(level: 1).contains(rest))
        }
        #expect(policy.bounds(level: 1) == 48...72)
        #expect(policy.bounds(level: 3) == 1200...1800)
        // Out-of-range units are clamped, never beyond the bounds.
        #expect(policy.next(after: failure, current: nil, now: now, jitterUnit: 7).until.timeIntervalSince(now) == 72)
    }

    @Test func aFailureDuringARestDoesNotClimbAndRetryAfterOnlyLengthensIt() {
        let policy = CooldownPolicy.standard
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let ref = ModelRef(provider: "p", model: "m")
        let first = policy.next(after: ModelFailure(ref: ref, reason: "rate_limited"), current: nil, now: now, jitterUnit: 0)
        let burst = policy.next(after: ModelFailure(ref: ref, reason: "overloaded", retryAfterSec: 5), current: first,
                                now: now.addingTimeInterval(1), jitterUnit: 0)
        #expect(burst.level == 1 && burst.until == first.until && burst.failures == 2)
        let longer = policy.next(after: ModelFailure(ref: ref, reason: "rate_limited", retryAfterSec: 120), current: burst,
                                 now: now.addingTimeInterval(2), jitterUnit: 0)
        #expect(longer.until == now.addingTimeInterval(122) && longer.level == 1)
    }

    @Test func aProviderHoldLastsItsHoldTimeAndNamesTheRefusedKeyOnly() {
        let policy = CooldownPolicy(providerHoldSec: 900)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let key = ModelCooldown.keyID(of: "sk-live-abcdef0123456789")
        let hold = policy.next(after: ModelFailure(ref: ModelRef(provider: "p", model: "m"), scope: .provider, reason: "bad_credentials",
                                                   keyID: key),
                               current: nil, now: now, jitterUnit: 0)
        #expect(hold.model == "*" && hold.until == now.addingTimeInterval(900) && hold.keyID == key)
        #expect(hold.holds(ModelRef(provider: "p", model: "other"), at: now, keyID: key))
        #expect(!hold.holds(ModelRef(provider: "p", model: "other"), at: now, keyID: ModelCooldown.keyID(of: "sk-rotated")))
        #expect(!hold.holds(ModelRef(provider: "q", model: "m"), at: now, keyID: key))
        #expect(!hold.holds(ModelRef(provider: "p", model: "m"), at: now.addingTimeInterval(900), keyID: key))
        #expect(key.count == 12 && !key.contains("abcdef0123456789"))
    }

    // MARK: Verdicts

    @Test(arguments: [
        (429, "rate_limit_error", false, ProviderVerdict.coolDown(reason: "rate_limited", retryAfterSec: 3)),
        (429, "rate_limit_exceeded", false, .coolDown(reason: "rate_limited", retryAfterSec: 3)),
        (429, "insufficient_quota", false, .blockProvider(reason: "insufficient_quota")),
        (529, "overloaded_error", false, .coolDown(reason: "overloaded", retryAfterSec: 3)),
        (503, "overloaded_error", false, .coolDown(reason: "overloaded", retryAfterSec: 3)),
        (503, "api_error", false, .transient(reason: "http_503", retryAfterSec: 3)),
        (502, nil, false, .transient(reason: "http_502", retryAfterSec: 3)),
        (408, nil, false, .transient(reason: "http_408", retryAfterSec: 3)),
        (401, "authentication_error", false, .blockProvider(reason: "bad_credentials")),
        (403, "permission_error", false, .blockProvider(reason: "bad_credentials")),
        (401, nil, false, .blockProvider(reason: "bad_credentials")),
        (400, "invalid_api_key", false, .blockProvider(reason: "bad_credentials")),
        (402, nil, false, .blockProvider(reason: "insufficient_quota")),
        (400, "invalid_request_error", false, .fatal(reason: "http_400")),
        (413, "request_too_large", false, .fatal(reason: "http_413")),
        (422, nil, false, .fatal(reason: "http_422")),
        (500, "api_error", false, .fatal(reason: "http_500")),
        (500, "api_error", true, .transient(reason: "http_500", retryAfterSec: 3)),
        (404, "not_found_error", false, .coolDown(reason: "model_not_found", retryAfterSec: nil)),
        (404, "model_not_found", false, .coolDown(reason: "model_not_found", retryAfterSec: nil)),
        (404, nil, false, .blockProvider(reason: "endpoint_not_found")),
    ] as [(Int, String?, Bool, ProviderVerdict)])
    func answersAreClassifiedFromStatusAndErrorType(_ status: Int, _ type: String?, _ retryable: Bool, _ expected: ProviderVerdict) {
        #expect(ProviderVerdict.classify(status: status, errorType: type, retryAfterSec: 3, retryable: retryable) == expected)
    }

    // MARK: Token budget

    @Test func theFirstCallOfAStageIsFreeAndEveryLaterOneCountsAgainstTheBudget() {
        let tokens = TokenBudget.estimate(["x", String(repeating: "y", count: 400)])
        #expect(tokens == 1 + 4 + 100 + 4)
        var spend = LLMSpend.none
        #expect(TokenBudget.refusal(stage: "ask", tokens: 500, spend: spend, budget: 0) == nil)
        spend = spend.adding(stage: "ask", tokens: 500)
        #expect(TokenBudget.refusal(stage: "ask", tokens: 500, spend: spend, budget: 499) == 500)
        #expect(TokenBudget.refusal(stage: "ask", tokens: 500, spend: spend, budget: 500) == nil)
        spend = spend.adding(stage: "ask", tokens: 500)
        #expect(spend.tokensResent == 500 && spend.tokensSent == 1000 && spend.calls == 2)
        // Another stage's first call is not a resend.
        #expect(TokenBudget.refusal(stage: "review", tokens: 9999, spend: spend, budget: 500) == nil)
    }
}
