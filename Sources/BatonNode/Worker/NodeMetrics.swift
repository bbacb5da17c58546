import BatonCore
import Metrics

/// What a node measures, through swift-metrics: a process that serves the API (`baton up`)
/// exports them at `/metrics`; elsewhere they cost nothing (no metrics backend is set up).
/// Labels stay low-cardinality: lanes, stage kinds, outcomes and failure reasons, never ids.
public enum NodeMetrics {
    /// Help text and (for durations) histogram buckets in seconds of every metric a node
    /// records, by name.
    public static let catalog: [String: (help: String, bucketsSec: [Double]?)] = [
        "baton_queue_wait_seconds": ("How long jobs waited in their lane before a node started them.",
                                     [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900]),
        "baton_stage_duration_seconds": ("How long stages ran, by stage kind.",
                                         [0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600]),
        "baton_job_duration_seconds": ("How long jobs ran on the node that finished them, by lane and outcome.",
                                       [0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400]),
        "baton_handoff_latency_seconds": ("How long a stage handed to another node waited for that node to claim it.",
                                          [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]),
        "baton_retries_total": ("Failed attempts that will run again after a backoff, by failure reason.", nil),
        "baton_dead_letters_total": ("Jobs that became dead letters, by failure reason.", nil),
        "baton_lease_expiries_total": ("Leases taken back by a rescue (expired, or held by a node declared dead).", nil),
        "baton_llm_failovers_total": ("llm stages that moved from one model of their chain to the next, by from, to and reason.", nil),
        "baton_llm_retries_total": ("Model calls that failed in a way worth another call (next model or later attempt), by provider and reason.", nil),
        "baton_llm_tokens_total": ("Tokens the providers reported for answered calls, by provider, model and kind (input, output).", nil),
        "baton_llm_calls_total": ("Model calls made, by provider, model and outcome.", nil),
    ]

    /// How long a job waited in its lane before a node started it.
    static func queueWait(lane: String, ms: Int64) {
        Metrics.Timer(label: "baton_queue_wait_seconds", dimensions: [("lane", lane)]).recordMilliseconds(ms)
    }

    /// A stage handed over by another node (placement), from the handoff to this claim.
    static func handoff(ms: Int64) {
        Metrics.Timer(label: "baton_handoff_latency_seconds").recordMilliseconds(ms)
    }

    /// One stage's run on this node, by what kind of stage it is.
    static func stage(kind: String, since start: ContinuousClock.Instant) {
        Metrics.Timer(label: "baton_stage_duration_seconds", dimensions: [("stage_kind", kind)])
            .recordNanoseconds(nanoseconds(since: start))
    }

    /// A job's run on the node that finished it (succeeded, dead, expired, cancelled).
    static func job(lane: String, outcome: String, since start: ContinuousClock.Instant) {
        Metrics.Timer(label: "baton_job_duration_seconds", dimensions: [("lane", lane), ("outcome", outcome)])
            .recordNanoseconds(nanoseconds(since: start))
    }

    static func retry(reason: String) {
        Metrics.Counter(label: "baton_retries_total", dimensions: [("reason", reason)]).increment()
    }

    static func deadLetter(reason: String) {
        Metrics.Counter(label: "baton_dead_letters_total", dimensions: [("reason", reason)]).increment()
    }

    /// Leases taken back by a rescue pass (expired, or held by a node declared dead).
    static func leaseExpiries(_ count: Int) {
        guard count > 0 else { return }
        Metrics.Counter(label: "baton_lease_expiries_total").increment(by: count)
    }

    /// An `llm` stage moved on from `from` (failed or skipped, for `reason`) to call `to`.
    static func failover(from: ModelRef, to: ModelRef, reason: String) {
        Metrics.Counter(label: "baton_llm_failovers_total",
                        dimensions: [("from", from.description), ("to", to.description), ("reason", reason)]).increment()
    }

    static func llmRetry(provider: String, reason: String) {
        Metrics.Counter(label: "baton_llm_retries_total", dimensions: [("provider", provider), ("reason", reason)]).increment()
    }

    static func llmCall(_ ref: ModelRef, outcome: String) {
        Metrics.Counter(label: "baton_llm_calls_total",
                        dimensions: [("provider", ref.provider), ("model", ref.model), ("outcome", outcome)]).increment()
    }

    static func tokens(_ ref: ModelRef, input: Int?, output: Int?) {
        for (kind, count) in [("input", input), ("output", output)] {
            guard let count, count > 0 else { continue }
            Metrics.Counter(label: "baton_llm_tokens_total",
                            dimensions: [("provider", ref.provider), ("model", ref.model), ("kind", kind)]).increment(by: count)
        }
    }

    static func nanoseconds(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = ContinuousClock.now - start
        return elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
    }
}
