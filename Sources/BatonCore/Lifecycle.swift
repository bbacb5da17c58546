import Foundation

/// The states of a job.
///
/// ```
/// queued ──claim──▶ running ──▶ succeeded
///   ▲                 │ ├──▶ retry_wait ──(backoff elapsed)──▶ queued
///   │                 │ ├──▶ dead        (fatal, attempts exhausted)
///   └────release──────┘ └──▶ cancelled
/// queued / retry_wait ──(ttl or queue_timeout passed)──▶ expired
/// gated ──(gate released)──▶ queued       (held by a human gate: its key kept dying)
/// ```
public enum JobState: String, Sendable, Hashable, CaseIterable, Codable {
    case queued
    case running
    case retryWait = "retry_wait"
    case succeeded
    case dead
    case cancelled
    case expired
    /// Submitted while its idempotency key's human gate is closed: waits for `baton gate release`.
    case gated

    public var isTerminal: Bool {
        switch self {
        case .succeeded, .dead, .cancelled, .expired: true
        case .queued, .running, .retryWait, .gated: false
        }
    }

    /// Jobs in these states are dead letters: not retried automatically, ready for redrive.
    public static let deadLetterStates: [JobState] = [.dead, .expired]

    /// The transitions the lifecycle allows. Stores refuse anything else.
    public func canMove(to next: JobState) -> Bool {
        switch (self, next) {
        case (.queued, .running), (.queued, .cancelled), (.queued, .expired): true
        case (.retryWait, .queued), (.retryWait, .running), (.retryWait, .cancelled), (.retryWait, .expired): true
        case (.running, .succeeded), (.running, .retryWait), (.running, .queued), (.running, .dead),
             (.running, .cancelled), (.running, .expired): true
        case (.dead, .queued), (.expired, .queued), (.cancelled, .queued): true  // redrive
        case (.gated, .queued), (.gated, .cancelled): true
        default: false
        }
    }

    public static func parse(_ text: String) throws(BatonError) -> JobState {
        guard let state = JobState(rawValue: text) else {
            throw BatonError(.invalidInput, field: "state",
                             "expected one of \(allCases.map(\.rawValue).joined(separator: ", ")), got \"\(text)\"")
        }
        return state
    }
}

/// How a failed attempt is treated.
public enum ErrorClass: String, Sendable, Hashable, CaseIterable, Codable {
    /// Worth retrying with backoff: timeouts, connection resets, 429/503, exit code 75.
    case transient
    /// Retrying cannot help: dead-letter at once.
    case fatal
    /// An operator cancelled the job.
    case cancelled
    /// Shutdown or reload handed the attempt back; it does not count as an attempt.
    case released
}

/// Why an attempt failed, as classified by the executor.
public struct Failure: Sendable, Hashable {
    public var errorClass: ErrorClass
    /// A stable, machine-readable reason: `exit_code`, `exec_timeout`, `lease_expired`, ...
    public var reason: String
    /// Detail for people.
    public var message: String
    /// A delay the far side asked for (Retry-After); overrides the computed backoff.
    public var retryAfterSec: Double?

    public init(_ errorClass: ErrorClass, reason: String, message: String, retryAfterSec: Double? = nil) {
        self.errorClass = errorClass
        self.reason = reason
        self.message = message
        self.retryAfterSec = retryAfterSec
    }

    public static func transient(_ reason: String, _ message: String, retryAfterSec: Double? = nil) -> Failure {
        Failure(.transient, reason: reason, message: message, retryAfterSec: retryAfterSec)
    }

    public static func fatal(_ reason: String, _ message: String) -> Failure {
        Failure(.fatal, reason: reason, message: message)
    }
}

/// Pure decisions of the job lifecycle. Stores load a job, ask the lifecycle what follows, and
/// persist the answer; no store makes these decisions on its own.
public enum Lifecycle {
    /// What follows a failed attempt.
    public enum FailureDecision: Sendable, Hashable {
        /// Wait `delaySec`, then queue again.
        case retry(at: Date, delaySec: Double)
        /// Dead-letter with a reason.
        case deadLetter(reason: String)
        /// The job's time to live would pass before the retry: expire it.
        case expire(reason: String)
        /// The operator cancelled it.
        case cancel
    }

    /// Decides what follows when attempt `attempt` (1-based) of a job failed with `failure`.
    /// - Parameters:
    ///   - deadline: the job's ttl deadline (enqueued at + ttl_sec).
    ///   - jitterUnit: a random value in -1...1.
    public static func afterFailure(attempt: Int, policy: RetryPolicy, failure: Failure, now: Date,
                                    deadline: Date, jitterUnit: Double) -> FailureDecision {
        switch failure.errorClass {
        case .cancelled:
            return .cancel
        case .fatal:
            return .deadLetter(reason: failure.reason)
        case .released:
            // Released attempts never reach this function: they are handed back by `release`.
            return .retry(at: now, delaySec: 0)
        case .transient:
            guard policy.hasAttemptsLeft(after: attempt) else {
                return .deadLetter(reason: "attempts_exhausted")
            }
            let delay = failure.retryAfterSec.map { max(0, $0) }
                ?? policy.delay(afterAttempt: attempt, jitterUnit: jitterUnit)
            let at = now.addingTimeInterval(delay)
            if at >= deadline { return .expire(reason: "ttl") }
            return .retry(at: at, delaySec: delay)
        }
    }

    /// What follows when a running job's lease expired without a heartbeat (its node died,
    /// stalled or lost the store). The attempt counts: a job that kills its nodes must not
    /// loop forever. It is queued again at once, since the failure was not the job's code.
    public static func afterLeaseExpired(attempt: Int, policy: RetryPolicy, now: Date, deadline: Date,
                                         reason: String = "lease_expired") -> FailureDecision {
        guard policy.hasAttemptsLeft(after: attempt) else { return .deadLetter(reason: reason) }
        if now >= deadline { return .expire(reason: "ttl") }
        return .retry(at: now, delaySec: 0)
    }

    /// The latest moment a job may still be claimed, given whether it was ever claimed.
    /// `queue_timeout_sec` bounds the wait before the first claim; `ttl_sec` bounds every claim.
    public static func claimDeadline(enqueuedAt: Date, queueTimeoutSec: Int?, ttlSec: Int, everClaimed: Bool) -> Date {
        let ttlDeadline = enqueuedAt.addingTimeInterval(Double(ttlSec))
        guard !everClaimed, let queueTimeoutSec else { return ttlDeadline }
        return min(ttlDeadline, enqueuedAt.addingTimeInterval(Double(queueTimeoutSec)))
    }

    /// The reason a waiting job expires at `now`, or nil while it may still be claimed.
    public static func expiryReason(enqueuedAt: Date, queueTimeoutSec: Int?, ttlSec: Int,
                                    everClaimed: Bool, now: Date) -> String? {
        if now >= enqueuedAt.addingTimeInterval(Double(ttlSec)) { return "ttl" }
        if !everClaimed, let queueTimeoutSec, now >= enqueuedAt.addingTimeInterval(Double(queueTimeoutSec)) {
            return "queue_timeout"
        }
        return nil
    }

    /// How often a lease is renewed: three heartbeats per lease period.
    public static func heartbeatInterval(leaseTTLSec: Int) -> Double { max(0.2, Double(leaseTTLSec) / 3) }

    /// Classifies a shell exit status: 0 succeeds, 75 (EX_TEMPFAIL) and the stage's
    /// `transient_exit_codes` are transient, anything else is fatal.
    public static func classifyExit(code: Int32, transientCodes: [Int32]) -> Failure? {
        if code == 0 { return nil }
        if code == 75 || transientCodes.contains(code) {
            return .transient("exit_code", "exited with status \(code)")
        }
        return .fatal("exit_code", "exited with status \(code)")
    }
}
