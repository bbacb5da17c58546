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

    /// Takes back jobs whose lease expired, declares nodes dead that stayed silent past their
    /// threshold (taking back their jobs at once, without waiting for lease expiry), and
    /// expires waiting jobs past their deadlines.
    func rescue() async throws -> RescueReport

    // MARK: Node registry

    /// Registers a node. A node id held by another instance that is still healthy or late is
    /// refused (`.conflict`) unless `replacing` names that instance (the caller proved it gone,
    /// e.g. its pid no longer exists on this host). Taking over a registration rescues the
    /// jobs still leased to that node id at once.
    func registerNode(_ info: NodeInfo, replacing instance: String?) async throws -> NodeRegistration

    /// Records that the node is alive (and its current info and in-flight count).
    func nodeHeartbeat(_ info: NodeInfo, inFlight: Int) async throws -> NodeHeartbeatResult

    /// Marks the node stopped (graceful exit), if `instance` still holds its id.
    func deregisterNode(id: String, instance: String) async throws

    /// Every registered node, by id.
    func nodes() async throws -> [NodeRecord]

    /// Cancels a job that has not finished. A running job's node learns of it at its next
    /// heartbeat. Throws `notFound` or `invalidState`.
    func cancel(jobID: String, reason: String) async throws -> JobRecord

    /// Queues a dead, expired or cancelled job again with a fresh attempt budget, resuming at
    /// the stage that failed (or at the first stage, its outputs dropped, with `fromStart`).
    /// Throws `notFound` or `invalidState`.
    func redrive(jobID: String, fromStart: Bool) async throws -> JobRecord

    /// Redrives every dead letter (states dead and expired). Returns the ids redriven.
    func redriveAll() async throws -> [String]

    func job(id: String) async throws -> JobRecord?

    // MARK: Lanes

    /// Publishes the cluster's lane caps (from the shared configuration): each named lane may
    /// have at most that many running jobs across all nodes, enforced inside every claim.
    /// Lanes not named have no cap. Replaces the caps published before; running jobs are not
    /// touched (a lowered cap lets no new job start until enough have finished).
    func setLaneCaps(_ caps: [String: Int]) async throws

    /// Every lane with a cap or with jobs waiting or running, by name.
    func lanes() async throws -> [LaneStats]

    /// How many jobs of `lane` started from `since` until now: for a job that just started
    /// after waiting since `since`, its position in the lane's queue when it became ready.
    func startsInLane(_ lane: String, since: Date) async throws -> Int

    // MARK: Inbound messages

    /// Takes one inbound chat message: a duplicate delivery (same channel, account, peer,
    /// session and message id inside `policy.dedupeTTLSec`) is dropped, on every node; with a
    /// debounce, a message joins its session's batch while that batch's job has not started
    /// (and pushes its start back by the debounce), otherwise it starts a new job.
    func receive(_ message: InboundMessage, policy: InboundPolicy) async throws -> InboundResult

    // MARK: Schedules

    /// Creates a schedule (its cursor at now: no tick before its creation fires) or replaces
    /// the definition of an existing one, keeping its state and cursor.
    func putSchedule(_ spec: ScheduleSpec, source: ScheduleSource) async throws -> ScheduleRecord

    /// Removes a schedule and its run history (its jobs stay). Throws `notFound`.
    func removeSchedule(id: String) async throws

    /// Every schedule, by id.
    func schedules() async throws -> [ScheduleRecord]

    /// Pauses (with `reason`) or resumes a schedule. Resuming moves its cursor to now (ticks
    /// due while paused are not run) and starts its failure count again. With `ifVersion`,
    /// nothing happens (nil is returned) unless the schedule is still at that version.
    /// Throws `notFound`.
    func setSchedulePaused(id: String, paused: Bool, reason: String?, ifVersion: Int64?) async throws -> ScheduleRecord?

    /// Carries out one scheduler decision atomically (see `ScheduleFire`). Throws `notFound`.
    func fireSchedule(_ fire: ScheduleFire) async throws -> ScheduleFireResult

    /// A schedule's runs, newest first, with their jobs' current states; with `jobsOnly`, the
    /// ticks that enqueued a job (not the ones skipped or missed).
    func scheduleRuns(id: String, limit: Int, jobsOnly: Bool) async throws -> [ScheduleRun]

    // MARK: Model providers

    /// Every model cooldown and provider hold on record (running or run out), by provider,
    /// then model.
    func modelCooldowns() async throws -> [ModelCooldown]

    /// Records a failed model call atomically: `policy` turns the stored cooldown of the
    /// failure's model (or provider) into the next one, which is stored and returned.
    func recordModelFailure(_ failure: ModelFailure, policy: CooldownPolicy) async throws -> ModelCooldown

    /// Deletes the cooldowns of `provider`: of one model with `model` (`*` is the provider
    /// hold), all of them without; with `onlyEnded`, only those whose rest is over by the
    /// store's clock (a node that just got an answer must not lift a rest another node set
    /// meanwhile). Returns how many were deleted.
    func clearModelCooldowns(provider: String, model: String?, onlyEnded: Bool) async throws -> Int

    /// The `llm` calls a job made, per stage (what its token budget is checked against).
    func llmSpend(jobID: String) async throws -> LLMSpend

    /// Records one `llm` call about to be sent (before it is: a call cut by a crash still
    /// counts) and returns the job's spend with it. A redrive starts the spend again.
    func recordLLMCall(jobID: String, stage: String, tokens: Int) async throws -> LLMSpend

    /// Appends an executor's account of its work to job logs (the models an `llm` stage
    /// tried, skipped or failed). Events of jobs that do not exist are dropped.
    func appendEvents(_ events: [JobEvent]) async throws

    // MARK: Human gates

    /// Every gate, held ones first, newest first.
    func gates() async throws -> [GateRecord]

    /// Opens a held gate: the jobs it held are queued, oldest first, and the key's dead-letter
    /// count starts again. Throws `notFound` when no gate is held for the key.
    func releaseGate(key: String) async throws -> GateRelease

    /// The job with its attempts and its event log, oldest first.
    func detail(id: String) async throws -> JobDetail?

    /// Jobs matching `filter`, newest first: in the order the store received them (PostgreSQL,
    /// whose nodes' clocks may differ) or by enqueue time (SQLite, one host's clock).
    func jobs(matching filter: JobFilter) async throws -> [JobRecord]

    /// Counts jobs per state (all lanes).
    func counts() async throws -> [JobState: Int]

    // MARK: Health

    /// Attempts started since `since`, how many of them failed or lost their lease, and jobs
    /// that became dead letters since then (for `baton doctor`; reads the attempts of the
    /// period, so it is not for a hot path).
    func activity(since: Date) async throws -> ActivityStats

    /// The newest events of `kinds` across all jobs, newest first, looking back at most
    /// `window` events (for the dashboard's recent handovers).
    func recentEvents(kinds: [JobEvent.Kind], limit: Int, window: Int) async throws -> [JobEvent]

    /// The store server's clock (PostgreSQL's `now()`), to measure this host's skew against
    /// it; nil when the store has no clock of its own (SQLite: the same host).
    func serverTime() async throws -> Date?

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

    public func scheduleRuns(id: String, limit: Int) async throws -> [ScheduleRun] {
        try await scheduleRuns(id: id, limit: limit, jobsOnly: false)
    }

    public func clearModelCooldowns(provider: String, model: String?) async throws -> Int {
        try await clearModelCooldowns(provider: provider, model: model, onlyEnded: false)
    }

    public func redrive(jobID: String) async throws -> JobRecord {
        try await redrive(jobID: jobID, fromStart: false)
    }

    public func events(jobID: String) async throws -> [JobEvent] {
        try await detail(id: jobID)?.events ?? []
    }
}
