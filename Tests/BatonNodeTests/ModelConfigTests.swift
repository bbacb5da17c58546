import BatonCore
import BatonNode
import Foundation
import Testing

/// `providers:`, `models:` and the model chains of `agents:` in baton.yaml.
struct ModelConfigTests {
    static let example = """
        providers:
          - {name: anthropic, kind: anthropic, api_key_env: ANTHROPIC_API_KEY}
          - {name: openai-codex, kind: openai, api_key_env: OPENAI_API_KEY, timeout_sec: 300}
          - {name: local, kind: openai, base_url: "http://127.0.0.1:11434/v1/"}
        models: {cooldown_schedule_sec: [30, 120], cooldown_jitter: 0.1, provider_hold_sec: 600, token_budget: 5000}
        agents:
          defaults:
            maxConcurrent: 6
            model: {primary: anthropic/claude-opus-4-6, fallbacks: [openai-codex/gpt-5.3-codex]}
          list:
            - {id: support, lane: support, model: local/llama3}
        """

    func load(_ yaml: String) throws(BatonError) -> BatonConfig { try loadYAML(yaml) }

    func failure(_ yaml: String) -> BatonError? { yamlFailure(yaml) }

    @Test func providersChainsAndCooldownsAreRead() throws {
        let config = try load(Self.example)
        let models = config.models
        #expect(models.providers.map(\.name) == ["anthropic", "openai-codex", "local"])
        #expect(models.providers[0].baseURL == "https://api.anthropic.com" && models.providers[0].timeoutSec == 600)
        #expect(models.providers[1].baseURL == "https://api.openai.com/v1" && models.providers[1].maxTokensField == "max_completion_tokens")
        #expect(models.providers[2].baseURL == "http://127.0.0.1:11434/v1" && models.providers[2].apiKeyEnv == nil
                && models.providers[2].maxTokensField == "max_tokens")
        #expect(models.cooldown == CooldownPolicy(scheduleSec: [30, 120], jitter: 0.1, providerHoldSec: 600))
        #expect(models.tokenBudget == 5000)
        #expect(models.defaultChain == ModelChain(primary: ModelRef(provider: "anthropic", model: "claude-opus-4-6"),
                                                  fallbacks: [ModelRef(provider: "openai-codex", model: "gpt-5.3-codex")]))
        #expect(models.agentChains["support"] == ModelChain(primary: ModelRef(provider: "local", model: "llama3")))
        #expect(config.lanes.caps["main"] == 6 && config.agents.first?.lane == "support")
        // The stage's own chain wins, then its agent's, then the defaults'.
        let own = LLMStageRequest(agent: "support", model: ModelChain(primary: ModelRef(provider: "local", model: "x")), messages: [])
        #expect(models.chain(for: own)?.primary.model == "x")
        #expect(models.chain(for: LLMStageRequest(agent: "support", messages: []))?.primary.model == "llama3")
        #expect(models.chain(for: LLMStageRequest(agent: "other", messages: []))?.primary.model == "claude-opus-4-6")
    }

    @Test func theBuiltInDocumentedDefaults() throws {
        let models = try load("").models
        #expect(models.cooldown.scheduleSec == [60, 300, 1500, 3600] && models.cooldown.jitter == 0)
        #expect(models.cooldown.providerHoldSec == 3600 && models.tokenBudget == 200_000 && models.providers.isEmpty)
    }

    @Test func providersAndChainsAreInTheDriftDigestButNoKeyIs() throws {
        let base = try load(Self.example)
        let otherChain = try load(Self.example.replacingOccurrences(of: "model: local/llama3", with: "model: local/mistral"))
        #expect(base.configHash != otherChain.configHash)
        #expect(!"\(base.json)".contains("sk-"))
        #expect("\(base.json)".contains("ANTHROPIC_API_KEY"))
    }

    @Test(arguments: [
        ("providers: [{name: a, kind: gemini, api_key_env: K}]", "providers[0].kind", "expected one of openai, anthropic"),
        ("providers: [{kind: openai, api_key_env: K}]", "providers[0].name", "is required"),
        ("providers: [{name: a, kind: openai}]", "providers[0].api_key_env", "is required for https://api.openai.com/v1"),
        ("providers: [{name: a, kind: anthropic, base_url: 'https://api.anthropic.com/v1', api_key_env: K}]", "providers[0].base_url",
         "without /v1"),
        ("providers: [{name: a, kind: openai, base_url: 'ftp://x', api_key_env: K}]", "providers[0].base_url", "http:// or https://"),
        ("providers: [{name: a, kind: openai, base_url: 'https://u:sk-1@proxy/v1'}]", "providers[0].base_url", "without credentials"),
        ("providers: [{name: a, kind: openai, base_url: 'https://proxy/v1?api-key=sk-1'}]", "providers[0].base_url", "without credentials"),
        ("providers: [{name: a, kind: openai, api_key_env: 'MY-KEY'}]", "providers[0].api_key_env", "environment variable name"),
        ("providers: [{name: a, kind: openai, api_key_env: K, max_tokens_field: n}]", "providers[0].max_tokens_field", "max_tokens"),
        ("providers: [{name: a, kind: openai, api_key_env: K}, {name: a, kind: anthropic, api_key_env: L}]", "providers[1].name",
         "unique"),
        ("models: {cooldown_schedule_sec: []}", "models.cooldown_schedule_sec", "at least one step"),
        ("models: {cooldown_schedule_sec: [60, -1]}", "models.cooldown_schedule_sec[1]", "got an integer -1"),
        ("models: {cooldown_jitter: 2}", "models.cooldown_jitter", "from 0 to 1"),
        ("agents: {defaults: {model: {primary: nobody/x}}}", "agents.defaults.model.primary", "providers: does not configure"),
        ("providers: [{name: a, kind: openai, api_key_env: K}]\nagents: {list: [{id: s, model: {primary: a/x, fallbacks: [b/y]}}]}",
         "agents.list[0].model.fallbacks", "names the provider \"b\""),
        ("agents: {defaults: {model: claude}}", "agents.defaults.model", "provider/model"),
    ])
    func badModelSettingsNameTheKeyAndWhatWasExpected(_ yaml: String, _ field: String, _ mention: String) {
        let error = failure(yaml)
        #expect(error?.field == field, "\(yaml): \(error.map { "\($0)" } ?? "loaded")")
        #expect(error?.message.contains(mention) == true, "\(yaml): \(error?.message ?? "loaded")")
    }
}
