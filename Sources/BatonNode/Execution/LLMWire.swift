import BatonCore
import Foundation

/// The two wire formats an `llm` stage speaks, as pure functions over bytes and headers:
/// building the request, reading an answer, and reading what an error answer says (its
/// machine type and how long the provider asked us to wait).
enum LLMWire {
    /// A call ready to send. The API key is in `headers` only.
    struct Request: Sendable {
        var url: String
        var headers: [(name: String, value: String)]
        var body: [UInt8]
    }

    /// What a model answered.
    struct Answer: Sendable, Hashable {
        var text: String
        var model: String
        var inputTokens: Int?
        var outputTokens: Int?
        var finishReason: String?
    }

    static let anthropicVersion = "2023-06-01"

    static func request(_ provider: ProviderSettings, apiKey: String?, model: String, system: String?,
                        messages: [LLMMessage], maxTokens: Int, temperature: Double?) -> Request {
        var headers: [(name: String, value: String)] = [("content-type", "application/json"),
                                                        ("user-agent", "baton/\(BatonVersion.current)")]
        var fields: [String: JSONValue] = ["model": .string(model)]
        if let temperature {
            // Anthropic takes 0...1, OpenAI 0...2: one chain may hold both.
            fields["temperature"] = .double(provider.kind == .anthropic ? min(1, temperature) : temperature)
        }
        let turns = messages.map { JSONValue.object(["role": .string($0.role), "content": .string($0.content)]) }
        let url: String
        switch provider.kind {
        case .openai:
            url = provider.baseURL + "/chat/completions"
            fields[provider.maxTokensField] = .int(Int64(maxTokens))
            if let apiKey { headers.append(("authorization", "Bearer \(apiKey)")) }
            let systemTurn = system.map { [JSONValue.object(["role": .string("system"), "content": .string($0)])] } ?? []
            fields["messages"] = .array(systemTurn + turns)
        case .anthropic:
            url = provider.baseURL + "/v1/messages"
            fields["max_tokens"] = .int(Int64(maxTokens))
            if let apiKey { headers.append(("x-api-key", apiKey)) }
            headers.append(("anthropic-version", anthropicVersion))
            if let system { fields["system"] = .string(system) }
            fields["messages"] = .array(turns)
        }
        return Request(url: url, headers: headers, body: Array(JSONValue.object(fields).encoded()))
    }

    /// Reads a successful answer; nil when the body is not that format's answer.
    static func answer(_ kind: ProviderSettings.Kind, body: [UInt8]) -> Answer? {
        guard case .object(let root)? = try? JSONValue.parse(Data(body), what: "answer") else { return nil }
        switch kind {
        case .openai:
            guard case .array(let choices)? = root["choices"], case .object(let choice)? = choices.first,
                  case .object(let message)? = choice["message"] else { return nil }
            let text: String
            switch message["content"] {
            case .string(let s)?: text = s
            case .null?, nil: text = ""
            default: return nil
            }
            let usage = root["usage"]?.objectValue
            return Answer(text: text, model: root["model"]?.stringValue ?? "",
                          inputTokens: usage?["prompt_tokens"]?.intValue, outputTokens: usage?["completion_tokens"]?.intValue,
                          finishReason: choice["finish_reason"]?.stringValue)
        case .anthropic:
            guard root["type"]?.stringValue == "message", case .array(let blocks)? = root["content"] else { return nil }
            let text = blocks.compactMap { block -> String? in
                guard case .object(let b) = block, b["type"]?.stringValue == "text" else { return nil }
                return b["text"]?.stringValue
            }.joined()
            let usage = root["usage"]?.objectValue
            return Answer(text: text, model: root["model"]?.stringValue ?? "",
                          inputTokens: usage?["input_tokens"]?.intValue, outputTokens: usage?["output_tokens"]?.intValue,
                          finishReason: root["stop_reason"]?.stringValue)
        }
    }

    /// The machine type of an error answer: Anthropic's `error.type`
    /// (`rate_limit_error`, `overloaded_error`, ...), OpenAI's `error.code`, else its `error.type`
    /// (`insufficient_quota`, `invalid_api_key`, ...). Nil when the body says none.
    static func errorType(body: [UInt8]) -> String? {
        guard case .object(let root)? = try? JSONValue.parse(Data(body), what: "error"),
              case .object(let error)? = root["error"] else { return nil }
        return error["code"]?.stringValue ?? error["type"]?.stringValue
    }

    /// The error's own message, cut to `limit` characters (for the event log; providers do not
    /// echo keys in it, but it is redacted by the caller anyway).
    static func errorMessage(body: [UInt8], limit: Int = 300) -> String? {
        guard case .object(let root)? = try? JSONValue.parse(Data(body), what: "error"),
              case .object(let error)? = root["error"], let message = error["message"]?.stringValue else { return nil }
        return String(message.prefix(limit))
    }

    /// How long the provider asked callers to wait: `retry-after-ms`, `retry-after` (seconds or
    /// an HTTP date), else the latest reset among the rate limits it reports as used up
    /// (OpenAI's `x-ratelimit-reset-*` durations such as `6m0s`; Anthropic's
    /// `anthropic-ratelimit-*-reset` times). Nil when it said nothing.
    static func retryAfter(_ header: (String) -> String?, now: Date) -> Double? {
        if let ms = header("retry-after-ms").flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }), ms >= 0, ms.isFinite {
            return ms / 1000
        }
        if let value = header("retry-after"), let seconds = HTTPResponsePolicy.retryAfterSeconds(value, now: now) {
            return seconds
        }
        var latest: Double?
        for limit in ["requests", "tokens", "input-tokens", "output-tokens"] {
            if let reset = header("x-ratelimit-reset-\(limit)"), exhausted(header("x-ratelimit-remaining-\(limit)")),
               let seconds = duration(reset) {
                latest = max(latest ?? 0, seconds)
            }
            if let reset = header("anthropic-ratelimit-\(limit)-reset"), exhausted(header("anthropic-ratelimit-\(limit)-remaining")),
               let date = rfc3339(reset) {
                latest = max(latest ?? 0, max(0, date.timeIntervalSince(now)))
            }
        }
        return latest
    }

    /// A limit whose remaining count is absent is taken as the one that was hit.
    private static func exhausted(_ remaining: String?) -> Bool {
        guard let remaining, let count = Double(remaining.trimmingCharacters(in: .whitespaces)) else { return true }
        return count <= 0
    }

    /// Go-style durations as OpenAI writes them: `1s`, `6m0s`, `1h2m3.5s`, `20ms`.
    static func duration(_ text: String) -> Double? {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty else { return nil }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            switch unit {
            case "h": total += value * 3600
            case "m": total += value * 60
            case "s": total += value
            case "ms": total += value / 1000
            default: return nil
            }
        }
        return total
    }

    static func rfc3339(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}
