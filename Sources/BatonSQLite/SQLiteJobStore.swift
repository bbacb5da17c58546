import BatonCore
import BatonStore
import Foundation
import GRDB

/// The embedded engine: one SQLite file in WAL mode, shared safely by every worker process on
/// one host. Every operation is one immediate transaction, so concurrent processes serialise
/// on the write lock (with a busy timeout) instead of failing.
public final class SQLiteJobStore: JobStore {
    public struct Options: Sendable {
        /// `normal` survives any process crash (the promise Baton makes); `full` also survives
        /// power loss, at a cost in throughput.
        public enum Synchronous: String, Sendable { case normal = "NORMAL", full = "FULL" }

        public var synchronous: Synchronous = .normal
        /// How long a write waits for another process's transaction.
        public var busyTimeoutSec: Double = 30
        /// When a key's dead letters make its human gate hold.
        public var gates = GatePolicy.standard
        /// Whether a session's job in backoff after a failure keeps the session's later jobs
        /// waiting (no overtaking). Default true.
        public var retryHoldsPlace = true
        /// Priority ageing: a ready job gains one priority step per this many seconds of
        /// waiting, at most `ageingMaxBoost` steps (0 turns ageing off).
        public var ageingEverySec = 60
        public var ageingMaxBoost = 10
        public init() {}
    }

    let pool: DatabasePool
    let clock: BatonClock
    let jitter: @Sendable () -> Double
    let gates: GatePolicy
    let retryHoldsPlace: Bool
    let ageing: (everySec: Int, maxBoost: Int)
    /// Ageing runs at most every quarter of its step.
    let ageingThrottle: Throttle
    let signal = WorkSignal()
    public let path: String

    public init(path: String, options: Options = Options(), clock: BatonClock = .system,
                jitter: @escaping @Sendable () -> Double = { Double.random(in: -1...1) }) throws {
        var config = Configuration()
        config.busyMode = .timeout(options.busyTimeoutSec)
        let synchronous = options.synchronous.rawValue
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            db.add(function: Self.tagsFunction)
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            throw BatonError(.storeUnavailable, field: "store", "cannot open SQLite database at \(path): \(error)")
        }
        self.path = path
        self.clock = clock
        self.jitter = jitter
        self.gates = options.gates
        self.retryHoldsPlace = options.retryHoldsPlace
        self.ageing = (options.ageingEverySec, options.ageingMaxBoost)
        self.ageingThrottle = Throttle(intervalMs: Int64(options.ageingEverySec) * 250)
    }

    /// `baton_tags_ok(required, offered)`: whether a node offering the comma-separated tags
    /// `offered` carries every one of `required` (the claimed stage's `node_tags`).
    static let tagsFunction = DatabaseFunction("baton_tags_ok", argumentCount: 2, pure: true) { values in
        guard let required = String.fromDatabaseValue(values[0]) else { return true }
        let offered = Set((String.fromDatabaseValue(values[1]) ?? "").split(separator: ","))
        return required.split(separator: ",").allSatisfy(offered.contains)
    }

    public convenience init(path: String, clock: BatonClock = .system,
                            jitter: @escaping @Sendable () -> Double = { Double.random(in: -1...1) }) throws {
        try self.init(path: path, options: Options(), clock: clock, jitter: jitter)
    }

    public func migrate() async throws {
        try await pool.writeWithoutTransaction { db in try SQLiteSchema.migrate(db) }
    }

    public func close() async throws {
        try pool.close()
    }

    public func waitForWork(upTo seconds: Double) async {
        await signal.wait(upTo: seconds)
    }

    /// Runs `body` in one immediate transaction (the write lock is taken up front, so a
    /// transaction never fails half-way on a lock upgrade).
    func write<T: Sendable>(_ body: @escaping @Sendable (Database, Int64) throws -> T) async throws -> T {
        let clock = self.clock
        do {
            return try await pool.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db, clock.now().epochMilliseconds)
                    return .commit
                }
                guard let result else { throw BatonError(.internal, "transaction produced no result") }
                return result
            }
        } catch let error as BatonError {
            throw error
        } catch let error as DatabaseError {
            throw BatonError(.storeUnavailable, field: "store", "SQLite error: \(error.message ?? "\(error.resultCode)")")
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch let error as BatonError {
            throw error
        } catch let error as DatabaseError {
            throw BatonError(.storeUnavailable, field: "store", "SQLite error: \(error.message ?? "\(error.resultCode)")")
        }
    }

    // MARK: Enqueue

    public func enqueue(_ specs: [JobSpec]) async throws -> [EnqueueResult] {
        guard !specs.isEmpty else { return [] }
        let encoded = specs.map { ($0, $0.storedJSON()) }
        let results = try await write { db, now in
            try encoded.map { spec, json in try Self.enqueue(db, spec, json: json, now: now) }
        }
        signal.notify()
        return results
    }

    /// Stores one envelope (or answers it with the live job of its idempotency key).
    static func enqueue(_ db: Database, _ spec: JobSpec, json: String, now: Int64) throws -> EnqueueResult {
        var gated = false
        if let key = spec.idempotencyKey {
            // A key whose job became a dead letter is free again: resubmitting is how
            // a producer retries it (and what the human gate counts).
            if let existing = try Row.fetchOne(db.cachedStatement(sql: """
                SELECT k.job_id FROM idempotency_keys k JOIN jobs j ON j.id = k.job_id
                WHERE k.key = ? AND k.expires_at > ? AND j.state NOT IN ('dead', 'expired', 'cancelled')
                """), arguments: [key, now]) {
                let jobID: String = existing["job_id"]
                try Self.appendEvent(db, JobEvent(jobID: jobID, at: Date(epochMilliseconds: now), kind: .deduplicated,
                                                  detail: ["idempotency_key": key, "submitted_job_id": spec.id]))
                return EnqueueResult(jobID: jobID, deduplicated: true)
            }
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO idempotency_keys (key, job_id, expires_at) VALUES (?, ?, ?)")
                .execute(arguments: [key, spec.id, now + Int64(spec.dedupeWindowSec) * 1000])
            gated = try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM gates WHERE key = ? AND state = 'held'"),
                                      arguments: [key]) ?? false
        }
        let placement = spec.placement(ofStage: 0)
        let deadline = Lifecycle.claimDeadline(enqueuedAt: Date(epochMilliseconds: now), queueTimeoutSec: spec.queueTimeoutSec,
                                               ttlSec: spec.ttlSec, everClaimed: false).epochMilliseconds
        do {
            try db.cachedStatement(sql: """
                INSERT INTO jobs (id, state, lane, session_key, region_affinity, node_tags, region_fallback_ms, priority,
                                  base_priority, idempotency_key, spec, stage_count, enqueued_at, deadline_base,
                                  claim_deadline, run_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [spec.id, gated ? "gated" : "queued", spec.lane, spec.sessionKey, placement.region,
                                         placement.tagsColumn, spec.regionFallbackAfterSec.map { Int64($0) * 1000 },
                                         spec.priority, spec.priority, spec.idempotencyKey, json, spec.stages.count, now,
                                         now, deadline, now, now])
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw BatonError(.invalidInput, field: "job_id", "a job with id \"\(spec.id)\" already exists")
        }
        var detail = ["lane": spec.lane, "stages": String(spec.stages.count)]
        if let key = spec.idempotencyKey { detail["idempotency_key"] = key }
        try Self.appendEvent(db, JobEvent(jobID: spec.id, at: Date(epochMilliseconds: now), kind: .enqueued, detail: detail))
        if gated, let key = spec.idempotencyKey {
            try Self.appendEvent(db, JobEvent(jobID: spec.id, at: Date(epochMilliseconds: now), kind: .gated,
                                              detail: ["idempotency_key": key]))
        }
        return EnqueueResult(jobID: spec.id, deduplicated: false, gated: gated)
    }

    // MARK: Claim

    public func claim(_ request: ClaimRequest) async throws -> [Lease] {
        guard request.limit > 0 else { return [] }
        // A session runs its oldest ready job, one at a time: an older job of the session holds
        // the newer ones back while queued, in backoff (unless sessions.retry_holds_place is
        // off) and once its backoff is over; a dead letter never does.
        let holdsInBackoff = retryHoldsPlace ? "1" : "0"
        return try await write { db, now in
            // Free slots of capped lanes, counted inside the claim's own write transaction:
            // no other claim can start between the count and the update.
            var free = try Self.freeLaneSlots(db)
            var leases: [Lease] = []
            leases.reserveCapacity(request.limit)
            // Candidates come in claim order; a lane that fills up is left out of the next
            // fetch, so a full lane never hides the jobs of other lanes behind it.
            while leases.count < request.limit {
                let full = free.filter { $0.value <= 0 }.keys.sorted()
                var arguments: StatementArguments = [now, now, request.region, now, request.tags.joined(separator: ",")]
                arguments += StatementArguments(full)
                arguments += [now, request.limit - leases.count]
                let rows = try Row.fetchAll(db, sql: """
                    SELECT id, spec, lane, attempts, fence, stage_index, run_at, deadline_base, last_node, last_node_at,
                           region_affinity, outputs, handoff_at
                    FROM jobs INDEXED BY jobs_ready
                    WHERE state IN ('queued', 'retry_wait') AND run_at <= ? AND claim_deadline > ?
                      AND (region_affinity IS NULL OR region_affinity = ? OR run_at + region_fallback_ms <= ?)
                      AND (node_tags IS NULL OR baton_tags_ok(node_tags, ?))
                      \(full.isEmpty ? "" : "AND lane NOT IN (\(full.map { _ in "?" }.joined(separator: ", ")))")
                      AND (session_key IS NULL OR NOT EXISTS (
                          SELECT 1 FROM jobs o INDEXED BY jobs_session
                          WHERE o.session_key = jobs.session_key AND o.state IN ('queued', 'retry_wait', 'running')
                            AND (o.state = 'running'
                                 OR (o.seq < jobs.seq AND (o.state = 'queued' OR \(holdsInBackoff) OR o.run_at <= ?)))))
                    ORDER BY priority DESC, run_at, seq LIMIT ?
                    """, arguments: arguments)
                var laneFilled = false
                for row in rows {
                    let lane: String = row["lane"]
                    if let slots = free[lane] {
                        guard slots > 0 else { laneFilled = true; continue }
                        free[lane] = slots - 1
                    }
                    leases.append(try Self.claim(db, row: row, request: request, now: now))
                }
                // Done unless a lane filled up part-way and other lanes may have more.
                if !laneFilled || rows.isEmpty { break }
            }
            return leases
        }
    }

    /// Running jobs each capped lane may still add across the cluster.
    static func freeLaneSlots(_ db: Database) throws -> [String: Int] {
        var free: [String: Int] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: """
            SELECT l.name, l.cap - (SELECT COUNT(*) FROM jobs j INDEXED BY jobs_lease WHERE j.state = 'running' AND j.lane = l.name) AS free
            FROM lanes l WHERE l.cap IS NOT NULL
            """)) {
            free[row["name"]] = row["free"]
        }
        return free
    }

    /// Moves one candidate row to running under a new fence and opens its attempt.
    static func claim(_ db: Database, row: Row, request: ClaimRequest, now: Int64) throws -> Lease {
        let id: String = row["id"]
        let spec = try JobSpec.decode(Data((row["spec"] as String).utf8))
        let attempt = (row["attempts"] as Int) + 1
        let fence = (row["fence"] as Int64) + 1
        let stageIndex: Int = row["stage_index"]
        let runAt: Int64 = row["run_at"]
        let expires = now + Int64(spec.leaseTTLSec) * 1000
        let deadline = Lifecycle.claimDeadline(enqueuedAt: Date(epochMilliseconds: row["deadline_base"]),
                                               queueTimeoutSec: spec.queueTimeoutSec, ttlSec: spec.ttlSec,
                                               everClaimed: true).epochMilliseconds
        let handoffAt: Int64? = row["handoff_at"]
        try db.cachedStatement(sql: """
            UPDATE jobs SET state = 'running', attempts = ?, fence = ?, ever_claimed = 1, claim_deadline = ?,
                            lease_node = ?, lease_expires_at = ?, last_node = ?, last_node_at = ?, handoff_at = NULL,
                            updated_at = ?
            WHERE id = ?
            """).execute(arguments: [attempt, fence, deadline, request.nodeID, expires, request.nodeID, now, now, id])
        let stageName = spec.stages[stageIndex].name
        try insertAttempt(db, jobID: id, fence: fence, stageIndex: stageIndex, attempt: attempt,
                          stageName: stageName, nodeID: request.nodeID, at: now,
                          handoffMs: handoffAt.map { now - $0 }, lane: spec.lane, waitMs: max(0, now - runAt))
        let detail = ClaimHandover(regionAffinity: row["region_affinity"], request: request, runAt: runAt,
                                   lastNode: row["last_node"], lastNodeAt: row["last_node_at"],
                                   handoffAt: handoffAt, now: now).detail
        try appendEvent(db, JobEvent(jobID: id, at: Date(epochMilliseconds: now), kind: .claimed, nodeID: request.nodeID,
                                     stage: stageName, attempt: attempt, fence: fence, detail: detail))
        return Lease(jobID: id, nodeID: request.nodeID, fence: fence, attempt: attempt, stageIndex: stageIndex,
                     expiresAt: Date(epochMilliseconds: expires), spec: spec,
                     outputs: JobOutputs.stored(row["outputs"]), node: request.placement, waitMs: max(0, now - runAt),
                     handoffMs: handoffAt.map { max(0, now - $0) })
    }

    // MARK: Shared row helpers

    static func appendEvent(_ db: Database, _ event: JobEvent) throws {
        try db.cachedStatement(sql: """
            INSERT INTO events (job_id, at, kind, node_id, stage, attempt, fence, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [event.jobID, event.at.epochMilliseconds, event.kind.rawValue, event.nodeID, event.stage,
                                     event.attempt, event.fence, event.detail.isEmpty ? nil : event.detailJSON])
    }

    /// Opens an attempt. `waitMs` (ready → started) is set for runs that waited in the queue,
    /// not for a stage that follows on the same node at once.
    static func insertAttempt(_ db: Database, jobID: String, fence: Int64, stageIndex: Int, attempt: Int,
                              stageName: String, nodeID: String, at: Int64, handoffMs: Int64? = nil,
                              lane: String? = nil, waitMs: Int64? = nil) throws {
        try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO attempts (job_id, fence, stage_index, attempt, stage_name, node_id, started_at, outcome,
                                             handoff_ms, lane, wait_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)
            """).execute(arguments: [jobID, fence, stageIndex, attempt, stageName, nodeID, at, handoffMs, lane, waitMs])
    }

    static func finishAttempt(_ db: Database, jobID: String, fence: Int64, stageIndex: Int, at: Int64,
                              outcome: AttemptRecord.Outcome, failure: Failure? = nil, report: AttemptReport = .empty) throws {
        try db.cachedStatement(sql: """
            UPDATE attempts SET finished_at = ?, outcome = ?, error_class = ?, reason = ?, message = ?, exit_code = ?,
                                stdout = ?, stderr = ?, log_path = ?, http_status = ?, outputs = ?
            WHERE job_id = ? AND fence = ? AND stage_index = ?
            """).execute(arguments: [at, outcome.rawValue, failure?.errorClass.rawValue, failure?.reason, failure?.message,
                                     report.exitCode, report.stdout, report.stderr, report.logPath, report.httpStatus,
                                     report.output.flatMap { JobOutputs(stages: [$0]).storedJSON }, jobID, fence, stageIndex])
    }
}

extension JobStore where Self == SQLiteJobStore {
    /// The embedded engine on the SQLite file at `path`.
    public static func sqlite(path: String, options: SQLiteJobStore.Options = .init(),
                              clock: BatonClock = .system) throws -> SQLiteJobStore {
        try SQLiteJobStore(path: path, options: options, clock: clock)
    }
}
