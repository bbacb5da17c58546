import BatonCore
import Foundation

/// The contract every storage engine fulfils. Both engines (embedded SQLite, multi-node
/// PostgreSQL) pass one conformance suite (`BatonStoreTesting`); a behaviour only one engine
/// has is a bug.
///
/// Engines persist decisions; they do not make them. What follows a failure, when a job
/// expires, how long a backoff lasts: `Lifecycle` and `RetryPolicy` in `BatonCore` decide.
public protocol JobStore: Sendable {
    /// Creates or upgrades the schema. Safe to call from several processes at once.
    func migrate() async throws

    /// Stores new jobs atomically: either every envelope is stored (or deduplicated) or none.
    /// An envelope whose idempotency key was seen inside its dedupe window yields the earlier
    /// job, reported as deduplicated.
    func enqueue(_ specs: [JobSpec]) async throws -> [EnqueueResult]

    /// Leases up to `request.limit` ready jobs to a node, highest priority first, then oldest.
    func claim(_ request: ClaimRequest) async throws -> [Lease]

    /// Extends leases still held; reports the ones that are gone.
    func heartbeat(_ leases: [Lease]) async throws -> [HeartbeatResult]

    /// Records finished stages. A completion whose lease is stale is refused (and logged).
    func complete(_ completions: [Completion]) async throws -> [CompletionResult]

    /// Records a failed attempt and applies the lifecycle's decision (retry with backoff,
    /// dead-letter, expire). Throws `staleLease` when the lease is no longer current.
    func fail(_ lease: Lease, failure: Failure, report: AttemptReport) async throws -> FailureResult

    /// Hands a leased job back without counting the attempt (shutdown, reload).
    /// Throws `staleLease` when the lease is no longer current.
    func release(_ lease: Lease, reason: String) async throws

    /// Takes back jobs whose lease expired and expires waiting jobs past their deadlines.
    func rescue() async throws -> RescueReport

    /// Cancels a job that has not finished. A running job's node learns of it at its next
    /// heartbeat. Throws `notFound` or `invalidState`.
    func cancel(jobID: String, reason: String) async throws -> JobRecord

    /// Queues a dead, expired or cancelled job again with a fresh attempt budget, resuming at
    /// the stage that failed. Throws `notFound` or `invalidState`.
    func redrive(jobID: String) async throws -> JobRecord

    /// Redrives every dead letter (states dead and expired). Returns the ids redriven.
    func redriveAll() async throws -> [String]

    func job(id: String) async throws -> JobRecord?

    /// The job with its attempts and its event log, oldest first.
    func detail(id: String) async throws -> JobDetail?

    func jobs(matching filter: JobFilter) async throws -> [JobRecord]

    /// Counts jobs per state (all lanes).
    func counts() async throws -> [JobState: Int]

    /// Waits until work may be ready (a job was enqueued or released) or `seconds` passed.
    /// Polling stays the fallback: engines without push simply sleep.
    func waitForWork(upTo seconds: Double) async

    /// Releases connections and files.
    func close() async throws
}

extension JobStore {
    public func enqueue(_ spec: JobSpec) async throws -> EnqueueResult {
        guard let result = try await enqueue([spec]).first else {
            throw BatonError(.internal, "enqueue returned no result")
        }
        return result
    }

    public func complete(_ lease: Lease, report: AttemptReport = .empty) async throws -> CompletionResult {
        guard let result = try await complete([Completion(lease: lease, report: report)]).first else {
            throw BatonError(.internal, "complete returned no result")
        }
        return result
    }

    public func events(jobID: String) async throws -> [JobEvent] {
        try await detail(id: jobID)?.events ?? []
    }
}
