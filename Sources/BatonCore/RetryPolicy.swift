/// Exponential backoff with a cap and proportional jitter.
///
/// The delay before attempt `n + 1`, after attempt `n` failed, is
/// `min(max_sec, initial_sec × multiplier^(n-1))`, then scaled by `1 + jitter × u` for a
/// random `u` in -1...1, and clamped to 0...max_sec. `max_attempts` counts every attempt,
/// the first included.
public struct RetryPolicy: Sendable, Hashable {
    public var maxAttempts: Int
    public var initialSec: Double
    public var multiplier: Double
    public var maxSec: Double
    public var jitter: Double

    public init(maxAttempts: Int = 5, initialSec: Double = 1, multiplier: Double = 2,
                maxSec: Double = 300, jitter: Double = 0.2) {
        self.maxAttempts = maxAttempts
        self.initialSec = initialSec
        self.multiplier = multiplier
        self.maxSec = maxSec
        self.jitter = jitter
    }

    /// The built-in default: 5 attempts, 1 s doubling to at most 5 min, ±20 % jitter.
    public static let standard = RetryPolicy()

    /// The delay before the next attempt after attempt `attempt` (1-based) failed.
    /// - Parameter jitterUnit: a value in -1...1 (random in production, fixed in tests).
    public func delay(afterAttempt attempt: Int, jitterUnit: Double) -> Double {
        let exponent = Double(max(0, attempt - 1))
        let base = min(maxSec, initialSec * pow(multiplier, exponent))
        let unit = min(1, max(-1, jitterUnit))
        let jittered = base * (1 + jitter * unit)
        return min(maxSec, max(0, jittered))
    }

    /// The smallest and largest delay jitter can produce after `attempt`.
    public func delayBounds(afterAttempt attempt: Int) -> ClosedRange<Double> {
        delay(afterAttempt: attempt, jitterUnit: -1)...delay(afterAttempt: attempt, jitterUnit: 1)
    }

    public func hasAttemptsLeft(after attempt: Int) -> Bool { attempt < maxAttempts }

    static let keys = ["max_attempts", "initial_sec", "multiplier", "max_sec", "jitter"]

    /// Reads a `retry` object, filling absent fields from `defaults`.
    public static func read(_ value: JSONValue, path: String, defaults: RetryPolicy) throws(BatonError) -> RetryPolicy {
        let r = try ObjectReader(value, path: path, allowedKeys: keys)
        var policy = defaults
        policy.maxAttempts = try r.int("max_attempts", in: 1...1000) ?? defaults.maxAttempts
        policy.initialSec = try r.double("initial_sec", in: 0.001...86_400) ?? defaults.initialSec
        policy.multiplier = try r.double("multiplier", in: 1...100) ?? defaults.multiplier
        policy.maxSec = try r.double("max_sec", in: 0.001...604_800) ?? defaults.maxSec
        policy.jitter = try r.double("jitter", in: 0...1) ?? defaults.jitter
        if policy.maxSec < policy.initialSec {
            // Blame the field the user wrote: with max_sec left out, it is initial_sec that is too large.
            guard r.has("max_sec") else {
                throw BatonError(.invalidInput, field: r.field("initial_sec"),
                                 "expected a value no larger than max_sec (\(ObjectReader.format(policy.maxSec)) by default), got \(ObjectReader.format(policy.initialSec))")
            }
            let initial = ObjectReader.format(policy.initialSec) + (r.has("initial_sec") ? "" : " by default")
            throw BatonError(.invalidInput, field: r.field("max_sec"),
                             "expected a value no smaller than initial_sec (\(initial)), got \(ObjectReader.format(policy.maxSec))")
        }
        return policy
    }

    public var json: JSONValue {
        .object([
            "max_attempts": .int(Int64(maxAttempts)),
            "initial_sec": .double(initialSec),
            "multiplier": .double(multiplier),
            "max_sec": .double(maxSec),
            "jitter": .double(jitter),
        ])
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
