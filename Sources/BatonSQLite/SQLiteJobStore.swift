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
        public init() {}
    }

    let pool: DatabasePool
    let clock: BatonClock
    let jitter: @Sendable () -> Double
    let gates: GatePolicy
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
            var results: [EnqueueResult] = []
            results.reserveCapacity(specs.count)
            for (spec, json) in encoded {
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
                        results.append(EnqueueResult(jobID: jobID, deduplicated: true))
                        continue
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
                                          idempotency_key, spec, stage_count, enqueued_at, deadline_base, claim_deadline,
                                          run_at, updated_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """).execute(arguments: [spec.id, gated ? "gated" : "queued", spec.lane, spec.sessionKey, placement.region,
                                                 placement.tagsColumn, spec.regionFallbackAfterSec.map { Int64($0) * 1000 },
                                                 spec.priority, spec.idempotencyKey, json, spec.stages.count, now, now, deadline,
                                                 now, now])
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
                results.append(EnqueueResult(jobID: spec.id, deduplicated: false, gated: gated))
            }
            return results
        }
        signal.notify()
        return results
    }

    // MARK: Claim

    public func claim(_ request: ClaimRequest) async throws -> [Lease] {
        guard request.limit > 0 else { return [] }
        return try await write { db, now in
            // A job bound to another region is claimable once its fallback wait has passed.
            let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT id, spec, attempts, fence, stage_index, run_at, deadline_base, last_node, last_node_at, region_affinity,
                       outputs, handoff_at
                FROM jobs INDEXED BY jobs_ready
                WHERE state IN ('queued', 'retry_wait') AND run_at <= ? AND claim_deadline > ?
                  AND (region_affinity IS NULL OR region_affinity = ? OR run_at + region_fallback_ms <= ?)
                  AND (node_tags IS NULL OR baton_tags_ok(node_tags, ?))
                ORDER BY priority DESC, run_at, seq LIMIT ?
                """), arguments: [now, now, request.region, now, request.tags.joined(separator: ","), request.limit])
            var leases: [Lease] = []
            leases.reserveCapacity(rows.count)
            for row in rows {
                let id: String = row["id"]
                let spec = try JobSpec.decode(Data((row["spec"] as String).utf8))
                let attempt = (row["attempts"] as Int) + 1
                let fence = (row["fence"] as Int64) + 1
                let stageIndex: Int = row["stage_index"]
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
                try Self.insertAttempt(db, jobID: id, fence: fence, stageIndex: stageIndex, attempt: attempt,
                                       stageName: stageName, nodeID: request.nodeID, at: now,
                                       handoffMs: handoffAt.map { now - $0 })
                let detail = ClaimHandover(regionAffinity: row["region_affinity"], request: request, runAt: row["run_at"],
                                           lastNode: row["last_node"], lastNodeAt: row["last_node_at"],
                                           handoffAt: handoffAt, now: now).detail
                try Self.appendEvent(db, JobEvent(jobID: id, at: Date(epochMilliseconds: now), kind: .claimed, nodeID: request.nodeID,
                                                  stage: stageName, attempt: attempt, fence: fence, detail: detail))
                leases.append(Lease(jobID: id, nodeID: request.nodeID, fence: fence, attempt: attempt, stageIndex: stageIndex,
                                    expiresAt: Date(epochMilliseconds: expires), spec: spec,
                                    outputs: JobOutputs.stored(row["outputs"]), node: request.placement))
            }
            return leases
        }
    }

    // MARK: Shared row helpers

    static func appendEvent(_ db: Database, _ event: JobEvent) throws {
        try db.cachedStatement(sql: """
            INSERT INTO events (job_id, at, kind, node_id, stage, attempt, fence, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [event.jobID, event.at.epochMilliseconds, event.kind.rawValue, event.nodeID, event.stage,
                                     event.attempt, event.fence, event.detail.isEmpty ? nil : event.detailJSON])
    }

    static func insertAttempt(_ db: Database, jobID: String, fence: Int64, stageIndex: Int, attempt: Int,
                              stageName: String, nodeID: String, at: Int64, handoffMs: Int64? = nil) throws {
        try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO attempts (job_id, fence, stage_index, attempt, stage_name, node_id, started_at, outcome,
                                             handoff_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)
            """).execute(arguments: [jobID, fence, stageIndex, attempt, stageName, nodeID, at, handoffMs])
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
