import Foundation

/// A model (or, with `model == "*"`, a whole provider) that must not be called until `until`.
/// Kept in the store, so every node of the cluster skips it: one node's 429 spares the others
/// the same 429.
public struct ModelCooldown: Sendable, Hashable {
    /// The `model` of a cooldown that holds every model of its provider (bad credentials, no quota).
    public static let wholeProvider = "*"

    public var provider: String
    public var model: String
    /// Failures in a row that counted (the step of the schedule reached, 1-based).
    public var level: Int
    public var until: Date
    /// Why: `rate_limited`, `overloaded`, `model_not_found`, `bad_credentials`, `insufficient_quota`.
    public var reason: String
    /// The first failure of this streak, and the latest one.
    public var since: Date
    public var lastFailureAt: Date
    /// Failures seen in this streak (those during an active cooldown included).
    public var failures: Int
    /// The node that saw the latest failure.
    public var nodeID: String?
    /// For a provider hold: which key was refused (`ModelCooldown.keyID(of:)`), so a node
    /// holding another key (rotated, or its own) still calls. Nil: whatever the key.
    public var keyID: String?

    public init(provider: String, model: String, level: Int, until: Date, reason: String, since: Date,
                lastFailureAt: Date, failures: Int, nodeID: String?, keyID: String? = nil) {
        self.keyID = keyID
        self.provider = provider
        self.model = model
        self.level = level
        self.until = until
        self.reason = reason
        self.since = since
        self.lastFailureAt = lastFailureAt
        self.failures = failures
        self.nodeID = nodeID
    }

    public var isWholeProvider: Bool { model == Self.wholeProvider }

    public func isActive(at now: Date) -> Bool { until > now }

    /// Whether this cooldown keeps `ref` from being called at `now` by a node whose key for
    /// the provider is `keyID`.
    public func holds(_ ref: ModelRef, at now: Date, keyID callerKey: String? = nil) -> Bool {
        guard provider == ref.provider, isActive(at: now) else { return false }
        if model == ref.model { return true }
        return isWholeProvider && (keyID == nil || keyID == callerKey)
    }

    /// A short digest of an API key (48 bits of FNV-1a): enough to tell keys apart, far too
    /// little to learn anything about one. Stored instead of the key, never the key itself.
    public static func keyID(of key: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "baton-key-v1:\(key)".utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        let hex = String(hash >> 16, radix: 16)
        return String(repeating: "0", count: 12 - hex.count) + hex
    }
}

/// A failure of one model call that cools the model (or its provider) down.
public struct ModelFailure: Sendable, Hashable {
    public enum Scope: String, Sendable, Hashable {
        /// This model only, on the escalating schedule.
        case model
        /// Every model of the provider, for `CooldownPolicy.providerHoldSec` (credentials, quota).
        case provider
    }

    public var ref: ModelRef
    public var scope: Scope
    public var reason: String
    /// From `Retry-After` or a rate-limit reset header: replaces the schedule's step.
    public var retryAfterSec: Double?
    public var nodeID: String?
    /// For a provider hold: the refused key's `ModelCooldown.keyID(of:)`.
    public var keyID: String?

    public init(ref: ModelRef, scope: Scope = .model, reason: String, retryAfterSec: Double? = nil, nodeID: String? = nil,
                keyID: String? = nil) {
        self.keyID = keyID
        self.ref = ref
        self.scope = scope
        self.reason = reason
        self.retryAfterSec = retryAfterSec
        self.nodeID = nodeID
    }

    /// The stored model name of the cooldown this failure writes.
    public var model: String { scope == .provider ? ModelCooldown.wholeProvider : ref.model }
}

/// How long a model rests after a rate limit or an overload: the documented 1, 5, 25 and 60
/// minutes by default, one step per failure in a row, the last step repeating.
///
/// - a failure while the model is already cooling down (another node's call was in flight) does
///   not climb a step: it only moves `until` later when the far side asked for longer;
/// - `Retry-After` (or a rate-limit reset header) replaces the step's length;
/// - jitter spreads each step by ±`jitter` (a fraction), so a fleet does not return at once;
/// - a success deletes the cooldown: the next failure starts at the first step again, and so
///   does a failure after a quiet spell longer than the last step.
public struct CooldownPolicy: Sendable, Hashable {
    public static let documentedScheduleSec: [Double] = [60, 300, 1500, 3600]

    public var scheduleSec: [Double]
    public var jitter: Double
    /// How long a provider with bad credentials or no quota is skipped by every node.
    public var providerHoldSec: Double

    public init(scheduleSec: [Double] = CooldownPolicy.documentedScheduleSec, jitter: Double = 0,
                providerHoldSec: Double = 3600) {
        self.scheduleSec = scheduleSec.isEmpty ? Self.documentedScheduleSec : scheduleSec
        self.jitter = jitter
        self.providerHoldSec = providerHoldSec
    }

    public static let standard = CooldownPolicy()

    /// The rest after failure number `level` in a row (1-based), before jitter.
    public func stepSec(level: Int) -> Double {
        scheduleSec[min(max(level, 1), scheduleSec.count) - 1]
    }

    /// The shortest and longest rest jitter can give after failure number `level`.
    public func bounds(level: Int) -> ClosedRange<Double> {
        let step = stepSec(level: level)
        return step * (1 - jitter)...step * (1 + jitter)
    }

    /// The cooldown after `failure` at `now`, given the one stored (nil: none).
    /// - Parameter jitterUnit: a value in -1...1 (random in production, fixed in tests).
    public func next(after failure: ModelFailure, current: ModelCooldown?, now: Date, jitterUnit: Double) -> ModelCooldown {
        let asked = failure.retryAfterSec.map { max(0, $0) }
        // A streak ends when the model stayed quiet longer than the longest rest since its
        // last one ended: a 429 a month after the last starts at the first step again.
        let current = current.flatMap { now.timeIntervalSince($0.until) > (scheduleSec.last ?? 0) ? nil : $0 }
        if let current, current.isActive(at: now) {
            // Already resting: the same burst seen by another call. Only a longer ask moves it.
            var same = current
            if let asked { same.until = max(current.until, now.addingTimeInterval(asked)) }
            same.failures += 1
            same.lastFailureAt = now
            same.nodeID = failure.nodeID
            if failure.scope == .provider { same.keyID = failure.keyID }
            return same
        }
        let level = min((current?.level ?? 0) + 1, scheduleSec.count)
        let rest: Double
        switch failure.scope {
        case .provider:
            rest = asked.map { max($0, providerHoldSec) } ?? providerHoldSec
        case .model:
            let unit = min(1, max(-1, jitterUnit))
            rest = asked ?? stepSec(level: level) * (1 + jitter * unit)
        }
        return ModelCooldown(provider: failure.ref.provider, model: failure.model, level: level,
                             until: now.addingTimeInterval(rest), reason: failure.reason,
                             since: current?.since ?? now, lastFailureAt: now, failures: (current?.failures ?? 0) + 1,
                             nodeID: failure.nodeID, keyID: failure.scope == .provider ? failure.keyID : nil)
    }
}

/// What a provider's answer (or the lack of one) means for the call, the model and the job:
/// decided from status codes, rate-limit headers and the error type in the body, never from
/// the prose of an error message.
public enum ProviderVerdict: Sendable, Hashable {
    /// 429 (rate limit), 529 or an `overloaded_error`, a 404 naming the model: rest this model,
    /// try the next one.
    case coolDown(reason: String, retryAfterSec: Double?)
    /// 401/403, 402 or a quota that is used up, a 404 of the endpoint itself: skip every model
    /// of this provider (for the key that was refused), tell a person.
    case blockProvider(reason: String)
    /// 408, 409, 502, 503, 504, a 500 marked retryable, a reset or a timeout: worth trying
    /// again, no rest for the model.
    case transient(reason: String, retryAfterSec: Double?)
    /// 400, 413, 422, a 500 not marked retryable, other 4xx: the request is at fault, no
    /// other model can help; the job dead-letters.
    case fatal(reason: String)

    /// Classifies an HTTP answer that was not a success.
    /// - Parameters:
    ///   - errorType: the error's machine type from the body (`error.type` / `error.code`), if any.
    ///   - retryAfterSec: the rest the far side asked for (`Retry-After`, rate-limit reset headers).
    ///   - retryable: the response carried `x-should-retry: true`.
    public static func classify(status: Int, errorType: String?, retryAfterSec: Double?, retryable: Bool) -> ProviderVerdict {
        let type = errorType?.lowercased()
        if let type, quotaTypes.contains(type) { return .blockProvider(reason: "insufficient_quota") }
        if let type, credentialTypes.contains(type) { return .blockProvider(reason: "bad_credentials") }
        if type == "overloaded_error" || status == 529 { return .coolDown(reason: "overloaded", retryAfterSec: retryAfterSec) }
        switch status {
        case 429:
            return .coolDown(reason: "rate_limited", retryAfterSec: retryAfterSec)
        case 401, 403:
            return .blockProvider(reason: "bad_credentials")
        case 402:
            return .blockProvider(reason: "insufficient_quota")
        case 404 where type.map(modelNotFoundTypes.contains) == true:
            return .coolDown(reason: "model_not_found", retryAfterSec: nil)
        case 404:
            // Not the model but the endpoint: a base_url that does not serve this API.
            return .blockProvider(reason: "endpoint_not_found")
        case 408, 409, 502, 503, 504:
            return .transient(reason: "http_\(status)", retryAfterSec: retryAfterSec)
        case 500:
            return retryable ? .transient(reason: "http_500", retryAfterSec: retryAfterSec) : .fatal(reason: "http_500")
        case 501..<600:
            return .transient(reason: "http_\(status)", retryAfterSec: retryAfterSec)
        default:
            return .fatal(reason: "http_\(status)")
        }
    }

    static let quotaTypes: Set<String> = ["insufficient_quota", "billing_error", "billing_hard_limit_reached"]
    static let credentialTypes: Set<String> = ["authentication_error", "permission_error", "invalid_api_key"]
    static let modelNotFoundTypes: Set<String> = ["not_found_error", "model_not_found"]
}

/// The cap on tokens a job sends again: the first call of each `llm` stage is free, every
/// later call of that stage (a fallback, a retry, a re-run after a release) counts its input
/// tokens against the job's budget, checked before the call is made.
public enum TokenBudget {
    /// A rough count of the tokens a text costs: one per 4 UTF-8 bytes, rounded up. Used
    /// before a call, when no tokenizer has seen the text; the provider's own count is
    /// reported after it.
    public static func estimate(_ texts: [String]) -> Int {
        texts.reduce(0) { total, text in total + (text.utf8.count + 3) / 4 + 4 }
    }

    /// Whether a call of `tokens` input tokens may be made, given the job's `spend` so far.
    /// Nil when allowed; otherwise the resent total the call would have reached.
    public static func refusal(stage: String, tokens: Int, spend: LLMSpend, budget: Int) -> Int? {
        guard (spend.stages[stage]?.calls ?? 0) > 0 else { return nil }
        let after = spend.tokensResent + tokens
        return after > budget ? after : nil
    }
}

/// The `llm` calls a job made: per stage, how many and how many input tokens they sent.
public struct LLMSpend: Sendable, Hashable {
    public struct Stage: Sendable, Hashable {
        public var calls: Int
        public var tokensSent: Int
        /// The input tokens of the stage's first call (not a resend).
        public var firstTokens: Int

        public init(calls: Int, tokensSent: Int, firstTokens: Int) {
            self.calls = calls
            self.tokensSent = tokensSent
            self.firstTokens = firstTokens
        }

        public var tokensResent: Int { max(0, tokensSent - firstTokens) }
    }

    public var stages: [String: Stage]

    public init(stages: [String: Stage] = [:]) { self.stages = stages }

    public static let none = LLMSpend()

    public var calls: Int { stages.values.reduce(0) { $0 + $1.calls } }
    public var tokensSent: Int { stages.values.reduce(0) { $0 + $1.tokensSent } }
    public var tokensResent: Int { stages.values.reduce(0) { $0 + $1.tokensResent } }

    /// The spend after one more call of `stage` sending `tokens`.
    public func adding(stage: String, tokens: Int) -> LLMSpend {
        var copy = self
        var entry = stages[stage] ?? Stage(calls: 0, tokensSent: 0, firstTokens: tokens)
        entry.calls += 1
        entry.tokensSent += tokens
        copy.stages[stage] = entry
        return copy
    }
}
