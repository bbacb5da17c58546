/// A model a stage may call: a provider configured on the nodes (`providers:`) and one of its
/// models, written `provider/model` (`anthropic/claude-opus-4-6`, `openai/gpt-4o`). The model
/// part may itself contain `/` (`openrouter/meta-llama/llama-3-70b`): the provider ends at the
/// first one.
public struct ModelRef: Sendable, Hashable, CustomStringConvertible, Comparable {
    public var provider: String
    public var model: String

    public init(provider: String, model: String) {
        self.provider = provider
        self.model = model
    }

    public var description: String { "\(provider)/\(model)" }

    public static func < (lhs: ModelRef, rhs: ModelRef) -> Bool { lhs.description < rhs.description }

    static let what = "a model as provider/model (e.g. anthropic/claude-sonnet-4-5)"

    /// Parses `provider/model`, naming `field` in the error.
    public static func parse(_ text: String, field: String) throws(BatonError) -> ModelRef {
        guard let slash = text.firstIndex(of: "/") else {
            throw BatonError(.invalidInput, field: field, "expected \(what), got \(JSONValue.string(text).preview)")
        }
        let provider = String(text[..<slash])
        let model = String(text[text.index(after: slash)...])
        guard !provider.isEmpty, provider.count <= 64, provider.allSatisfy(Identifier.isAllowed),
              !model.isEmpty, model.utf8.count <= 200, !model.contains(where: { $0.isWhitespace || $0.isNewline }) else {
            throw BatonError(.invalidInput, field: field,
                             "expected \(what): a provider name of letters, digits and - _ . : and a model id without spaces, got \(JSONValue.string(text).preview)")
        }
        return ModelRef(provider: provider, model: model)
    }
}

/// `model.primary` and `model.fallbacks`: the models tried in order until one answers.
public struct ModelChain: Sendable, Hashable {
    public var primary: ModelRef
    public var fallbacks: [ModelRef]

    public init(primary: ModelRef, fallbacks: [ModelRef] = []) {
        self.primary = primary
        self.fallbacks = fallbacks
    }

    /// Every model in the order they are tried, each once.
    public var candidates: [ModelRef] {
        var seen: Set<ModelRef> = []
        return ([primary] + fallbacks).filter { seen.insert($0).inserted }
    }

    /// Reads `"provider/model"` (a chain of one) or `{primary, fallbacks}`.
    public static func read(_ value: JSONValue, path: String) throws(BatonError) -> ModelChain {
        if case .string(let text) = value { return ModelChain(primary: try ModelRef.parse(text, field: path)) }
        let r = try ObjectReader(value, path: path, allowedKeys: ["primary", "fallbacks"])
        guard let primary = try r.string("primary", maxLength: 300) else {
            throw BatonError(.invalidInput, field: r.field("primary"), "is required: expected \(ModelRef.what)")
        }
        var fallbacks: [ModelRef] = []
        for (index, item) in (try r.stringArray("fallbacks", maxCount: 16) ?? []).enumerated() {
            fallbacks.append(try ModelRef.parse(item, field: "\(r.field("fallbacks"))[\(index)]"))
        }
        return ModelChain(primary: try ModelRef.parse(primary, field: r.field("primary")), fallbacks: fallbacks)
    }

    public var json: JSONValue {
        .object(["primary": .string(primary.description), "fallbacks": .array(fallbacks.map { .string($0.description) })])
    }
}

/// One message of a conversation sent to a model.
public struct LLMMessage: Sendable, Hashable, Codable {
    public static let roles = ["user", "assistant"]

    public var role: String
    /// A template: it may use outputs of earlier stages (`{{output.KEY}}`).
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// What an `llm` stage asks: a conversation (or one prompt), the models to try and a token
/// cap. Texts are templates over earlier stages' outputs, rendered by the node.
public struct LLMStageRequest: Sendable, Hashable {
    public static let defaultMaxTokens = 1024

    /// An agent of the shared configuration (`agents.list[].id`) whose `model` chain applies
    /// when the stage names none.
    public var agent: String?
    /// The models to try; nil: the agent's chain, else `agents.defaults.model`.
    public var model: ModelChain?
    public var system: String?
    public var messages: [LLMMessage]
    public var maxTokens: Int
    public var temperature: Double?
    /// Tokens this job may send again (retries, fallbacks, re-runs after a release) beyond the
    /// first call of each stage; nil: the nodes' `models.token_budget`.
    public var tokenBudget: Int?

    public init(agent: String? = nil, model: ModelChain? = nil, system: String? = nil, messages: [LLMMessage],
                maxTokens: Int = LLMStageRequest.defaultMaxTokens, temperature: Double? = nil, tokenBudget: Int? = nil) {
        self.agent = agent
        self.model = model
        self.system = system
        self.messages = messages
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.tokenBudget = tokenBudget
    }

    static let keys = ["agent", "model", "system", "prompt", "messages", "max_tokens", "temperature", "token_budget"]
    static let maxText = 4 * 1_048_576

    /// Reads `run.llm` of an envelope: `prompt` (one user message) or `messages`, checking
    /// every template.
    static func read(_ value: JSONValue, path: String) throws(BatonError) -> LLMStageRequest {
        let r = try ObjectReader(value, path: path, allowedKeys: keys)
        let agent = try r.string("agent", maxLength: 64)
        let model = try r.value("model").map { value throws(BatonError) in try ModelChain.read(value, path: r.field("model")) }
        let system = try r.string("system", maxLength: maxText)
        if let system { _ = try Template.parse(system, field: r.field("system"), allowEnv: false) }
        var messages: [LLMMessage] = []
        switch (r.has("prompt"), r.has("messages")) {
        case (true, true):
            throw BatonError(.invalidInput, field: r.field("prompt"), "expected prompt or messages, not both")
        case (false, false):
            throw BatonError(.invalidInput, field: r.field("prompt"),
                             "is required: expected a prompt (text) or messages ([{role, content}])")
        case (true, false):
            let prompt = try r.string("prompt", maxLength: maxText) ?? ""
            _ = try Template.parse(prompt, field: r.field("prompt"), allowEnv: false)
            messages = [LLMMessage(role: "user", content: prompt)]
        case (false, true):
            let items = try r.array("messages", maxCount: 1000) ?? []
            guard !items.isEmpty else {
                throw BatonError(.invalidInput, field: r.field("messages"), "expected at least one message, got an empty array")
            }
            for (index, item) in items.enumerated() {
                let m = try ObjectReader(item, path: "\(r.field("messages"))[\(index)]", allowedKeys: ["role", "content"])
                guard let role = try m.string("role", maxLength: 16), LLMMessage.roles.contains(role) else {
                    throw BatonError(.invalidInput, field: m.field("role"),
                                     "expected one of \(LLMMessage.roles.joined(separator: ", ")) (the system text goes in system), got \(m.value("role")?.summary ?? "nothing")")
                }
                guard let content = try m.string("content", maxLength: maxText) else {
                    throw BatonError(.invalidInput, field: m.field("content"), "is required: expected the message text")
                }
                _ = try Template.parse(content, field: m.field("content"), allowEnv: false)
                messages.append(LLMMessage(role: role, content: content))
            }
            guard messages.last?.role == "user" else {
                throw BatonError(.invalidInput, field: r.field("messages"),
                                 "expected the last message to be the user's (the model answers it), got role \"\(messages.last?.role ?? "")\"")
            }
        }
        return LLMStageRequest(
            agent: agent, model: model, system: system, messages: messages,
            maxTokens: try r.int("max_tokens", in: 1...1_000_000) ?? defaultMaxTokens,
            temperature: try r.double("temperature", in: 0...2),
            tokenBudget: try r.int("token_budget", in: 0...1_000_000_000))
    }

    var json: JSONValue {
        var fields: [String: JSONValue] = [
            "messages": .array(messages.map { .object(["role": .string($0.role), "content": .string($0.content)]) }),
            "max_tokens": .int(Int64(maxTokens)),
        ]
        if let agent { fields["agent"] = .string(agent) }
        if let model { fields["model"] = model.json }
        if let system { fields["system"] = .string(system) }
        if let temperature { fields["temperature"] = .double(temperature) }
        if let tokenBudget { fields["token_budget"] = .int(Int64(tokenBudget)) }
        return .object(fields)
    }
}

extension LLMStageRequest: Codable {
    enum CodingKeys: String, CodingKey {
        case agent, model, system, messages, maxTokens = "max_tokens", temperature, tokenBudget = "token_budget"
    }

    enum ChainKeys: String, CodingKey { case primary, fallbacks }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var chain: ModelChain?
        if c.contains(.model) {
            let m = try c.nestedContainer(keyedBy: ChainKeys.self, forKey: .model)
            let primary = try ModelRef.parse(try m.decode(String.self, forKey: .primary), field: "model.primary")
            let fallbacks = try (try m.decodeIfPresent([String].self, forKey: .fallbacks) ?? []).map { text in
                try ModelRef.parse(text, field: "model.fallbacks")
            }
            chain = ModelChain(primary: primary, fallbacks: fallbacks)
        }
        self.init(agent: try c.decodeIfPresent(String.self, forKey: .agent), model: chain,
                  system: try c.decodeIfPresent(String.self, forKey: .system),
                  messages: try c.decode([LLMMessage].self, forKey: .messages),
                  maxTokens: try c.decode(Int.self, forKey: .maxTokens),
                  temperature: try c.decodeIfPresent(Double.self, forKey: .temperature),
                  tokenBudget: try c.decodeIfPresent(Int.self, forKey: .tokenBudget))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(agent, forKey: .agent)
        if let model {
            var m = c.nestedContainer(keyedBy: ChainKeys.self, forKey: .model)
            try m.encode(model.primary.description, forKey: .primary)
            try m.encode(model.fallbacks.map(\.description), forKey: .fallbacks)
        }
        try c.encodeIfPresent(system, forKey: .system)
        try c.encode(messages, forKey: .messages)
        try c.encode(maxTokens, forKey: .maxTokens)
        try c.encodeIfPresent(temperature, forKey: .temperature)
        try c.encodeIfPresent(tokenBudget, forKey: .tokenBudget)
    }
}
