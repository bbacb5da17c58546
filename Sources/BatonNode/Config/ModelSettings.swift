import BatonCore
import BatonStore
import Foundation

/// A model provider the nodes call for `llm` stages (`providers:`).
public struct ProviderSettings: Sendable, Hashable {
    /// The wire format it speaks.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The OpenAI-compatible Chat Completions API (`POST {base_url}/chat/completions`):
        /// OpenAI, and the many servers and proxies that speak it.
        case openai
        /// The Anthropic Messages API (`POST {base_url}/v1/messages`).
        case anthropic

        public var defaultBaseURL: String {
            switch self {
            case .openai: "https://api.openai.com/v1"
            case .anthropic: "https://api.anthropic.com"
            }
        }
    }

    /// What `provider/model` references start with.
    public var name: String
    public var kind: Kind
    public var baseURL: String
    /// The environment variable holding the API key, read on each node when a call is made:
    /// the key itself is never in the configuration, its hash, the store or a log line. Nil
    /// for a provider that needs none (a local server).
    public var apiKeyEnv: String?
    /// The longest one call may take (the stage's own timeout still bounds the whole stage).
    public var timeoutSec: Int
    /// How an `openai` provider is told the answer's length: `max_completion_tokens` (what
    /// api.openai.com wants, and its reasoning models require) or `max_tokens` (what most
    /// OpenAI-compatible servers read). Default: the first for api.openai.com, the second
    /// elsewhere. Anthropic's API has one field, `max_tokens`.
    public var maxTokensField: String

    public static let maxTokensFields = ["max_tokens", "max_completion_tokens"]

    public init(name: String, kind: Kind, baseURL: String? = nil, apiKeyEnv: String? = nil, timeoutSec: Int = 600,
                maxTokensField: String? = nil) {
        let url = baseURL ?? kind.defaultBaseURL
        self.maxTokensField = maxTokensField
            ?? (kind == .openai && url.hasPrefix("https://api.openai.com") ? "max_completion_tokens" : "max_tokens")
        self.name = name
        self.kind = kind
        self.baseURL = baseURL ?? kind.defaultBaseURL
        self.apiKeyEnv = apiKeyEnv
        self.timeoutSec = timeoutSec
    }

    static let keys = ["name", "kind", "base_url", "api_key_env", "timeout_sec", "max_tokens_field"]

    static func read(_ value: JSONValue, path: String) throws(BatonError) -> ProviderSettings {
        let r = try ObjectReader(value, path: path, allowedKeys: keys)
        guard let name = try r.string("name", maxLength: 64, allowed: Identifier.isAllowed,
                                      what: "a provider name of letters, digits and - _ . :") else {
            throw BatonError(.invalidInput, field: r.field("name"), "is required: expected the name models are written with (name/model)")
        }
        let kinds = Kind.allCases.map(\.rawValue).joined(separator: ", ")
        guard let kindText = try r.string("kind", maxLength: 32) else {
            throw BatonError(.invalidInput, field: r.field("kind"), "is required: expected one of \(kinds)")
        }
        guard let kind = Kind(rawValue: kindText) else { throw r.invalid("kind", .string(kindText), "expected one of \(kinds)") }
        let baseURL = try r.string("base_url", maxLength: 2048)
        if let baseURL, !(baseURL.hasPrefix("http://") || baseURL.hasPrefix("https://")) || baseURL.contains(where: \.isWhitespace) {
            throw r.invalid("base_url", .string(baseURL), "expected an http:// or https:// URL")
        }
        if let baseURL, let parts = URLComponents(string: baseURL),
           parts.user != nil || parts.password != nil || parts.query != nil || parts.fragment != nil {
            // The URL is shown (baton models, GET /v1/models) and hashed: a key has no place in it.
            throw BatonError(.invalidInput, field: r.field("base_url"),
                             "expected a URL without credentials, query or fragment (the key goes in the variable api_key_env names)")
        }
        let trimmed = baseURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        if kind == .anthropic, let trimmed, trimmed.hasSuffix("/v1") {
            throw r.invalid("base_url", .string(baseURL ?? ""),
                            "expected the API's root without /v1 (Baton adds /v1/messages), such as https://api.anthropic.com")
        }
        let keyEnv = try r.string("api_key_env", maxLength: 128, allowed: { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") },
                                  what: "an environment variable name (letters, digits and _)")
        if keyEnv == nil && baseURL == nil {
            throw BatonError(.invalidInput, field: r.field("api_key_env"),
                             "is required for \(kind.defaultBaseURL): expected the name of the variable that holds the key "
                                 + "(only a provider with its own base_url, such as a local server, may go without one)")
        }
        let field = try r.string("max_tokens_field", maxLength: 32)
        if let field, !maxTokensFields.contains(field) {
            throw r.invalid("max_tokens_field", .string(field), "expected one of \(maxTokensFields.joined(separator: ", "))")
        }
        return ProviderSettings(name: name, kind: kind, baseURL: trimmed, apiKeyEnv: keyEnv,
                                timeoutSec: try r.int("timeout_sec", in: 1...86_400) ?? 600, maxTokensField: field)
    }

    var json: JSONValue {
        var fields: [String: JSONValue] = ["name": .string(name), "kind": .string(kind.rawValue), "base_url": .string(baseURL),
                                           "timeout_sec": .int(Int64(timeoutSec)), "max_tokens_field": .string(maxTokensField)]
        if let apiKeyEnv { fields["api_key_env"] = .string(apiKeyEnv) }
        return .object(fields)
    }
}

/// Everything `llm` stages need from the shared configuration: the providers, the model chains
/// of the agents, how long a failing model rests and how many tokens a job may resend.
public struct ModelSettings: Sendable, Hashable {
    public var providers: [ProviderSettings]
    /// `models.cooldown_schedule_sec` (default 60, 300, 1500, 3600), `models.cooldown_jitter`
    /// (default 0) and `models.provider_hold_sec` (default 3600).
    public var cooldown: CooldownPolicy
    /// `models.token_budget`: tokens a job may send again beyond each stage's first call
    /// (default 200000); a stage's `token_budget` overrides it.
    public var tokenBudget: Int
    /// `agents.defaults.model`: the chain of stages that name neither a model nor an agent with one.
    public var defaultChain: ModelChain?
    /// `agents.list[].model`, by agent id.
    public var agentChains: [String: ModelChain]

    public init(providers: [ProviderSettings] = [], cooldown: CooldownPolicy = .standard, tokenBudget: Int = 200_000,
                defaultChain: ModelChain? = nil, agentChains: [String: ModelChain] = [:]) {
        self.providers = providers
        self.cooldown = cooldown
        self.tokenBudget = tokenBudget
        self.defaultChain = defaultChain
        self.agentChains = agentChains
    }

    public static let standard = ModelSettings()

    public func provider(named name: String) -> ProviderSettings? { providers.first { $0.name == name } }

    /// The chain a stage uses: its own, its agent's, else the defaults'.
    public func chain(for request: LLMStageRequest) -> ModelChain? {
        request.model ?? request.agent.flatMap { agentChains[$0] } ?? defaultChain
    }

    static let keys = ["cooldown_schedule_sec", "cooldown_jitter", "provider_hold_sec", "token_budget"]

    /// Reads `models:` into `self`.
    mutating func read(_ value: JSONValue, path: String) throws(BatonError) {
        let r = try ObjectReader(value, path: path, allowedKeys: Self.keys)
        if let steps = try r.array("cooldown_schedule_sec", maxCount: 32) {
            var schedule: [Double] = []
            for (index, step) in steps.enumerated() {
                let seconds: Double? = switch step {
                case .int(let i): Double(i)
                case .double(let d): d
                default: nil
                }
                guard let seconds, seconds > 0, seconds <= 604_800 else {
                    throw BatonError(.invalidInput, field: "\(r.field("cooldown_schedule_sec"))[\(index)]",
                                     "expected seconds from 0 (excluded) to 604800, got \(step.summary)")
                }
                schedule.append(seconds)
            }
            guard !schedule.isEmpty else {
                throw BatonError(.invalidInput, field: r.field("cooldown_schedule_sec"),
                                 "expected at least one step (the default is [60, 300, 1500, 3600]), got an empty list")
            }
            cooldown.scheduleSec = schedule
        }
        cooldown.jitter = try r.double("cooldown_jitter", in: 0...1) ?? cooldown.jitter
        cooldown.providerHoldSec = try r.double("provider_hold_sec", in: 1...604_800) ?? cooldown.providerHoldSec
        tokenBudget = try r.int("token_budget", in: 0...1_000_000_000) ?? tokenBudget
    }

    /// Checks that every chain names configured providers.
    func check(chain: ModelChain, field: String) throws(BatonError) {
        for (index, ref) in chain.candidates.enumerated() where provider(named: ref.provider) == nil {
            let known = providers.map(\.name)
            throw BatonError(.invalidInput, field: index == 0 ? "\(field).primary" : "\(field).fallbacks",
                             "names the provider \"\(ref.provider)\" (in \(ref)), which providers: does not configure"
                                 + (known.isEmpty ? " (no provider is configured)" : " (configured: \(known.joined(separator: ", ")))"))
        }
    }

    /// What `GET /v1/models` and `baton models --json` show: the providers (the name of each
    /// key's variable, never a key), the chains by where they are set, and the cooldowns.
    public func report(cooldowns: [ModelCooldown], now: Date, keyState: ((ProviderSettings) -> String)? = nil) -> JSONValue {
        var chains: [String: JSONValue] = [:]
        if let defaultChain { chains["agents.defaults"] = defaultChain.json }
        for (agent, chain) in agentChains { chains["agent \(agent)"] = chain.json }
        return .object([
            "providers": .array(providers.map { provider in
                var fields: [String: JSONValue] = ["name": .string(provider.name), "kind": .string(provider.kind.rawValue),
                                                   "base_url": .string(provider.baseURL)]
                if let env = provider.apiKeyEnv { fields["api_key_env"] = .string(env) }
                if let keyState { fields["key"] = .string(keyState(provider)) }
                return .object(fields)
            }),
            "chains": .object(chains),
            "cooldowns": .array(cooldowns.map { $0.json(now: now) }),
        ])
    }

    var json: JSONValue {
        .object([
            "cooldown_schedule_sec": .array(cooldown.scheduleSec.map { .double($0) }),
            "cooldown_jitter": .double(cooldown.jitter),
            "provider_hold_sec": .double(cooldown.providerHoldSec),
            "token_budget": .int(Int64(tokenBudget)),
        ])
    }
}
