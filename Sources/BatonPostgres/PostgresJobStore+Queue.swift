import BatonCore
import BatonStore
import Foundation
import PostgresNIO

extension PostgresJobStore {
    // MARK: Enqueue

    public func enqueue(_ specs: [JobSpec]) async throws -> [EnqueueResult] {
        guard !specs.isEmpty else { return [] }
        var seen = Set<String>()
        for spec in specs where !seen.insert(spec.id).inserted {
            throw BatonError(.invalidInput, field: "job_id", "a job with id \"\(spec.id)\" already exists")
        }
        let encoded = specs.map { $0.storedJSON() }
        let results: [EnqueueResult]
        do {
            if specs.allSatisfy({ $0.idempotencyKey == nil }) {
                // One statement is one transaction: no BEGIN/COMMIT round trips.
                let now = clock.now().epochMilliseconds
                results = try await mapped {
                    try await self.leased("a PostgreSQL enqueue") { connection in
                        try await self.insert(specs, encoded: encoded, indices: Array(specs.indices), duplicates: [],
                                              now: now, on: connection)
                    }
                }
            } else {
                results = try await transaction { connection, now in
                    try await self.enqueueWithKeys(specs, encoded: encoded, now: now, on: connection)
                }
            }
        } catch is DuplicateJobID {
            let ids = specs.map(\.id)
            let taken = try await rows("SELECT id FROM \(unescaped: tables.jobs) WHERE id = ANY(\(ids)) LIMIT 1")
            let id = try taken.first?.get("id", as: String.self) ?? ids[0]
            throw BatonError(.invalidInput, field: "job_id", "a job with id \"\(id)\" already exists")
        }
        signal.notify()
        return results
    }

    /// Stores envelopes inside a transaction the caller holds (no NOTIFY of its own beyond the
    /// insert's).
    func enqueueInTransaction(_ specs: [JobSpec], now: Int64, on connection: PostgresConnection) async throws -> [EnqueueResult] {
        try await enqueueWithKeys(specs, encoded: specs.map { $0.storedJSON() }, now: now, on: connection)
    }

    /// Claims each new idempotency key for its first envelope (keys live in the window are
    /// kept by their earlier job), then inserts the envelopes that were not deduplicated.
    private func enqueueWithKeys(_ specs: [JobSpec], encoded: [String], now: Int64,
                                 on connection: PostgresConnection) async throws -> [EnqueueResult] {
        var owner: [String: Int] = [:]
        for (index, spec) in specs.enumerated() {
            if let key = spec.idempotencyKey, owner[key] == nil { owner[key] = index }
        }
        // Sorted, so concurrent batches take key locks in one order and cannot deadlock.
        let keys = owner.keys.sorted()
        let keyJobs = keys.map { specs[owner[$0]!].id }
        let keyExpiry = keys.map { now + Int64(specs[owner[$0]!].dedupeWindowSec) * 1000 }
        let won = try await (connection.rows("""
            INSERT INTO \(unescaped: tables.idempotency) AS k (key, job_id, expires_at)
            SELECT * FROM unnest(\(keys)::text[], \(keyJobs)::text[], \(keyExpiry)::bigint[])
            ON CONFLICT (key) DO UPDATE SET job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at
                WHERE k.expires_at <= \(now)
                   -- A key whose job became a dead letter is free again: resubmitting is how a
                   -- producer retries it (and what the human gate counts).
                   OR EXISTS (SELECT 1 FROM \(unescaped: tables.jobs) j
                              WHERE j.id = k.job_id AND j.state IN ('dead', 'expired', 'cancelled'))
            RETURNING key
            """, logger: logger)).map { try $0.get("key", as: String.self) }
        let lost = Set(keys).subtracting(won)
        var earlier: [String: String] = [:]
        if !lost.isEmpty {
            for row in try await (connection.rows("""
                SELECT key, job_id FROM \(unescaped: tables.idempotency) WHERE key = ANY(\(Array(lost)))
                """, logger: logger)) {
                earlier[try row.get("key", as: String.self)] = try row.get("job_id", as: String.self)
            }
        }
        var inserted: [Int] = []
        var duplicates: [(index: Int, jobID: String)] = []
        for (index, spec) in specs.enumerated() {
            guard let key = spec.idempotencyKey else { inserted.append(index); continue }
            if let jobID = earlier[key] {
                duplicates.append((index, jobID))
            } else if let first = owner[key], first != index {
                duplicates.append((index, specs[first].id))
            } else {
                inserted.append(index)
            }
        }
        var results = try await insert(specs, encoded: encoded, indices: inserted, duplicates: duplicates, now: now,
                                       on: connection)
        // Jobs whose key's human gate holds wait for a person instead of running.
        let insertedIDs = inserted.map { specs[$0].id }
        guard !insertedIDs.isEmpty else { return results }
        let gated = try await (connection.rows("""
            WITH held AS (
                UPDATE \(unescaped: tables.jobs) SET state = 'gated'
                WHERE id = ANY(\(insertedIDs)) AND idempotency_key IN (
                    SELECT key FROM \(unescaped: tables.gates) WHERE state = 'held' AND key = ANY(\(keys)))
                RETURNING id, idempotency_key
            ), logged AS (
                INSERT INTO \(unescaped: tables.events) (job_id, at, kind, detail)
                SELECT id, \(now), 'gated', json_build_object('idempotency_key', idempotency_key)::text FROM held
            )
            SELECT id FROM held
            """, logger: logger)).map { try $0.get("id", as: String.self) }
        if !gated.isEmpty {
            let ids = Set(gated)
            for index in results.indices where ids.contains(results[index].jobID) && !results[index].deduplicated {
                results[index].gated = true
            }
        }
        return results
    }

    /// Inserts `specs[indices]` as queued jobs, logs `enqueued` for them and `deduplicated`
    /// for `duplicates`, and notifies listening nodes, in one statement.
    private func insert(_ specs: [JobSpec], encoded: [String], indices: [Int], duplicates: [(index: Int, jobID: String)],
                        now: Int64, on connection: PostgresConnection) async throws -> [EnqueueResult] {
        var ids: [String] = [], lanes: [String] = [], sessions: [String] = [], regions: [String] = []
        var priorities: [Int64] = [], keys: [String] = [], json: [String] = [], names: [String] = []
        var counts: [Int64] = [], leaseTTLs: [Int64] = [], ttls: [Int64] = [], deadlines: [Int64] = []
        var fallbacks: [Int64] = [], tags: [String] = []
        for index in indices {
            let spec = specs[index]
            let placement = spec.placement(ofStage: 0)
            ids.append(spec.id)
            lanes.append(spec.lane)
            sessions.append(Self.nullable(spec.sessionKey))
            regions.append(Self.nullable(placement.region))
            tags.append(Self.nullable(placement.tagsColumn))
            // -1 stands for NULL (no fallback): arrays of optionals do not bind.
            fallbacks.append(spec.regionFallbackAfterSec.map { Int64($0) * 1000 } ?? -1)
            priorities.append(Int64(spec.priority))
            keys.append(Self.nullable(spec.idempotencyKey))
            json.append(encoded[index])
            names.append(spec.stages.map(\.name).joined(separator: "\u{1F}"))
            counts.append(Int64(spec.stages.count))
            leaseTTLs.append(Int64(spec.leaseTTLSec) * 1000)
            ttls.append(Int64(spec.ttlSec) * 1000)
            deadlines.append(Lifecycle.claimDeadline(enqueuedAt: Date(epochMilliseconds: now), queueTimeoutSec: spec.queueTimeoutSec,
                                                     ttlSec: spec.ttlSec, everClaimed: false).epochMilliseconds)
        }
        var eventJobs: [String] = [], eventKinds: [String] = [], eventDetails: [String] = []
        var results: [EnqueueResult?] = Array(repeating: nil, count: specs.count)
        for index in indices {
            let spec = specs[index]
            var detail = ["lane": spec.lane, "stages": String(spec.stages.count)]
            if let key = spec.idempotencyKey { detail["idempotency_key"] = key }
            eventJobs.append(spec.id)
            eventKinds.append(JobEvent.Kind.enqueued.rawValue)
            eventDetails.append(JobEvent(jobID: spec.id, at: .distantPast, kind: .enqueued, detail: detail).detailJSON)
            results[index] = EnqueueResult(jobID: spec.id, deduplicated: false)
        }
        for duplicate in duplicates {
            let spec = specs[duplicate.index]
            eventJobs.append(duplicate.jobID)
            eventKinds.append(JobEvent.Kind.deduplicated.rawValue)
            eventDetails.append(JobEvent(jobID: duplicate.jobID, at: .distantPast, kind: .deduplicated,
                                         detail: ["idempotency_key": spec.idempotencyKey ?? "", "submitted_job_id": spec.id]).detailJSON)
            results[duplicate.index] = EnqueueResult(jobID: duplicate.jobID, deduplicated: true)
        }
        let statement = InsertJobsStatement(
            now: now, ids: ids, lanes: lanes, sessions: sessions, regions: regions, priorities: priorities, keys: keys,
            specs: json, names: names, stageCounts: counts, leaseTTLs: leaseTTLs, ttls: ttls, claimDeadlines: deadlines,
            regionFallbacks: fallbacks, eventJobs: eventJobs, eventKinds: eventKinds, eventDetails: eventDetails,
            channel: tables.channel, nodeTags: tags)
        do {
            _ = try await connection.run(statement, logger: logger)
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            throw DuplicateJobID()
        }
        return results.map { $0! }
    }

    /// Nullable text travels in arrays as "" (NULL) or "v" + value: arrays of optionals do
    /// not bind.
    static func nullable(_ value: String?) -> String {
        value.map { "v" + $0 } ?? ""
    }

    // MARK: Claim

    public func claim(_ request: ClaimRequest) async throws -> [Lease] {
        guard request.limit > 0 else { return [] }
        let now = clock.now().epochMilliseconds
        let statement = ClaimStatement(now: now, region: request.region ?? "", limit: Int64(request.limit),
                                       nodeID: request.nodeID, tags: request.tags, retryHoldsPlace: options.retryHoldsPlace)
        let rows = try await run(statement, what: "a PostgreSQL claim")
        var leases: [(order: (Int64, Int64, Int64), lease: Lease)] = []
        leases.reserveCapacity(rows.count)
        for row in rows {
            let spec = try JobSpec.decode(Data(try row.get("spec", as: String.self).utf8))
            let lease = Lease(jobID: try row.get("id"), nodeID: request.nodeID, fence: try row.get("fence"),
                              attempt: Int(try row.get("attempts", as: Int32.self)),
                              stageIndex: Int(try row.get("stage_index", as: Int32.self)),
                              expiresAt: Date(epochMilliseconds: try row.get("lease_expires_at")), spec: spec,
                              outputs: JobOutputs.stored(try row.get("outputs", as: String?.self)), node: request.placement,
                              waitMs: max(0, now - (try row.get("run_at", as: Int64.self))),
                              handoffMs: (try row.get("handoff_at", as: Int64?.self)).map { max(0, now - $0) })
            let order = (-Int64(try row.get("priority", as: Int32.self)), try row.get("run_at", as: Int64.self),
                         try row.get("seq", as: Int64.self))
            leases.append((order, lease))
        }
        return leases.sorted { $0.order < $1.order }.map(\.lease)
    }
}

/// Claims up to `limit` jobs for a node: `claim_batch` locks them in claim order and moves them
/// to running under a new fence; the statement opens their attempts and logs the claim with
/// its handover detail. Prepared once per connection: the claim is the statement an idle
/// node's pickup latency waits on, and parsing and planning it was a third of its server time.
/// Table names resolve through the pool's `search_path` (the store's schema).
struct ClaimStatement: PostgresPreparedStatement {
    static let name = "baton_claim_v5"
    static let sql = """
        WITH claimed AS (
            SELECT r_seq AS seq, r_id AS id, r_spec AS spec, r_priority AS priority, r_attempts AS attempts,
                   r_fence AS fence, r_stage_index AS stage_index, r_run_at AS run_at,
                   r_lease_expires_at AS lease_expires_at, r_stage_name AS stage_name,
                   r_region_affinity AS region_affinity, r_previous_node AS previous_node,
                   r_previous_node_at AS previous_node_at, r_outputs AS outputs, r_handoff_at AS handoff_at, r_lane AS lane
            FROM claim_batch_v3($1, $2, $3, $4, $5, $6)
        ), new_attempts AS (
            INSERT INTO attempts (job_id, fence, stage_index, attempt, stage_name, node_id, started_at, outcome, handoff_ms,
                                  lane, wait_ms)
            SELECT id, fence, stage_index, attempts, stage_name, $4, $1, 'running', $1 - handoff_at, lane,
                   greatest(0, $1 - run_at)
            FROM claimed
        ), new_events AS (
            INSERT INTO events (job_id, at, kind, node_id, stage, attempt, fence, detail)
            SELECT id, $1, 'claimed', $4, stage_name, attempts, fence,
                   -- The same detail as ClaimHandover builds for the SQLite engine.
                   json_strip_nulls(json_build_object(
                       'wait_ms', ($1 - run_at)::text, 'to_node', $4,
                       'from_node', previous_node, 'handover_ms', ($1 - previous_node_at)::text,
                       'handoff_ms', ($1 - handoff_at)::text,
                       'region_fallback', CASE WHEN region_affinity <> $2 THEN 'true' END,
                       'region_affinity', CASE WHEN region_affinity <> $2 THEN region_affinity END,
                       'node_region', CASE WHEN region_affinity <> $2 THEN $2 END))::text
            FROM claimed
        )
        SELECT seq, id, spec, priority, attempts, fence, stage_index, run_at, lease_expires_at, outputs, handoff_at FROM claimed
        """
    static let bindingDataTypes: [PostgresDataType] = [.int8, .text, .int8, .text, .textArray, .bool]

    let now: Int64
    let region: String
    let limit: Int64
    let nodeID: String
    let tags: [String]
    let retryHoldsPlace: Bool

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 6)
        bindings.append(now)
        bindings.append(region)
        bindings.append(limit)
        bindings.append(nodeID)
        bindings.append(tags)
        bindings.append(retryHoldsPlace)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> PostgresRandomAccessRow { row.makeRandomAccess() }
}

/// Inserts a batch of queued jobs with their `enqueued` events (and `deduplicated` events for
/// the envelopes that matched a live idempotency key), and notifies listening nodes, in one
/// statement prepared once per connection. Nullable text travels as "" or "v" + value, and a
/// missing region fallback as -1: arrays of optionals do not bind.
struct InsertJobsStatement: PostgresPreparedStatement {
    static let name = "baton_insert_jobs_v3"
    static let sql = """
        WITH input AS (
            SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[],
                                 $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],
                                 $19::text[])
                WITH ORDINALITY AS t(id, lane, session_key, region_affinity, priority, idempotency_key, spec, names,
                                     stage_count, lease_ttl_ms, ttl_ms, claim_deadline, region_fallback_ms, node_tags, ord)
        ), new_jobs AS (
            INSERT INTO jobs (id, state, lane, session_key, region_affinity, priority, base_priority, idempotency_key,
                spec, stage_names, stage_count, lease_ttl_ms, ttl_ms, enqueued_at, deadline_base, claim_deadline,
                run_at, updated_at, region_fallback_ms, node_tags)
            SELECT id, 'queued', lane,
                   CASE WHEN session_key = '' THEN NULL ELSE substr(session_key, 2) END,
                   CASE WHEN region_affinity = '' THEN NULL ELSE substr(region_affinity, 2) END,
                   priority, priority, CASE WHEN idempotency_key = '' THEN NULL ELSE substr(idempotency_key, 2) END,
                   spec, string_to_array(names, chr(31)), stage_count, lease_ttl_ms, ttl_ms,
                   $1, $1, claim_deadline, $1, $1, nullif(region_fallback_ms, -1),
                   CASE WHEN node_tags = '' THEN NULL ELSE substr(node_tags, 2) END
            FROM input ORDER BY ord
        ), new_events AS (
            INSERT INTO events (job_id, at, kind, detail)
            SELECT job_id, $1, kind, detail
            FROM unnest($15::text[], $16::text[], $17::text[]) AS e(job_id, kind, detail)
        )
        SELECT pg_notify($18, '')
        """
    static let bindingDataTypes: [PostgresDataType] = [
        .int8, .textArray, .textArray, .textArray, .textArray, .int8Array, .textArray, .textArray, .textArray,
        .int8Array, .int8Array, .int8Array, .int8Array, .int8Array, .textArray, .textArray, .textArray, .text, .textArray,
    ]

    let now: Int64
    let ids: [String], lanes: [String], sessions: [String], regions: [String], priorities: [Int64], keys: [String]
    let specs: [String], names: [String], stageCounts: [Int64], leaseTTLs: [Int64], ttls: [Int64]
    let claimDeadlines: [Int64], regionFallbacks: [Int64]
    let eventJobs: [String], eventKinds: [String], eventDetails: [String]
    let channel: String
    let nodeTags: [String]

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 19)
        b.append(now)
        b.append(ids); b.append(lanes); b.append(sessions); b.append(regions); b.append(priorities); b.append(keys)
        b.append(specs); b.append(names); b.append(stageCounts); b.append(leaseTTLs); b.append(ttls)
        b.append(claimDeadlines); b.append(regionFallbacks)
        b.append(eventJobs); b.append(eventKinds); b.append(eventDetails)
        b.append(channel)
        b.append(nodeTags)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> PostgresRandomAccessRow { row.makeRandomAccess() }
}

/// An envelope's job id is taken (reported with the id after the transaction is rolled back).
struct DuplicateJobID: Error {}
