import BatonCore
import BatonStore
import Foundation
import PostgresNIO

extension PostgresJobStore {
    /// Counts a dead letter against its idempotency key; when the key has died often enough
    /// within the window (since its gate was last released), the gate holds new jobs. Returns
    /// the gate when this dead letter made it hold. Runs inside the dead-lettering transaction;
    /// the gate row's lock serialises two dead letters of one key on different nodes.
    func recordDeadLetter(_ connection: PostgresConnection, jobID: String, key: String?, now: Int64) async throws -> GateRecord? {
        guard let key else { return nil }
        let policy = options.gates
        try await connection.rows("""
            INSERT INTO \(unescaped: tables.deadLetterKeys) (key, job_id, at) VALUES (\(key), \(jobID), \(now))
            """, logger: logger)
        try await connection.rows("SELECT pg_advisory_xact_lock(hashtext(\("baton.gate." + key)))", logger: logger)
        let gate = try await connection.rows("""
            SELECT state, released_at FROM \(unescaped: tables.gates) WHERE key = \(key) FOR UPDATE
            """, logger: logger).first
        if let gate, try gate.get("state", as: String.self) == GateRecord.State.held.rawValue { return nil }
        let releasedAt = try gate?.get("released_at", as: Int64?.self) ?? Int64.min
        let since = max(now - Int64(policy.windowSec) * 1000, releasedAt)
        let jobs = try await connection.rows("""
            SELECT job_id FROM \(unescaped: tables.deadLetterKeys) WHERE key = \(key) AND at > \(since) ORDER BY at, seq
            """, logger: logger).map { try $0.get("job_id", as: String.self) }
        guard jobs.count >= policy.deadLetters else { return nil }
        let reason = policy.reason(key: key, jobs: jobs)
        let deadJobs = jobs.joined(separator: ",")
        try await connection.rows("""
            INSERT INTO \(unescaped: tables.gates) (key, state, held_since, reason, dead_jobs, released_at)
            VALUES (\(key), 'held', \(now), \(reason), \(deadJobs), NULL)
            ON CONFLICT (key) DO UPDATE SET state = 'held', held_since = EXCLUDED.held_since, reason = EXCLUDED.reason,
                dead_jobs = EXCLUDED.dead_jobs, released_at = NULL
            """, logger: logger)
        try await appendEvent(connection, JobEvent(jobID: jobID, at: Date(epochMilliseconds: now), kind: .gateHeld,
                                                   detail: ["idempotency_key": key, "dead_jobs": deadJobs, "reason": reason]))
        return GateRecord(key: key, state: .held, heldSince: Date(epochMilliseconds: now), reason: reason, deadJobs: jobs)
    }

    public func gates() async throws -> [GateRecord] {
        try await rows("""
            SELECT g.*, (SELECT count(*) FROM \(unescaped: tables.jobs) j
                         WHERE j.idempotency_key = g.key AND j.state = 'gated') AS held_jobs
            FROM \(unescaped: tables.gates) g ORDER BY g.state = 'held' DESC, g.held_since DESC
            """).map(Self.gate(from:))
    }

    public func releaseGate(key: String) async throws -> GateRelease {
        let release = try await transaction { connection, now -> GateRelease in
            guard let row = try await connection.rows("""
                UPDATE \(unescaped: self.tables.gates) SET state = 'released', released_at = \(now)
                WHERE key = \(key) AND state = 'held'
                RETURNING *, 0::bigint AS held_jobs
                """, logger: self.logger).first else {
                throw BatonError(.notFound, field: "key", "no gate is holding jobs with idempotency key \"\(key)\"")
            }
            // Their deadlines count from the release: a person held them, not the queue.
            var ids: [String] = [], deadlines: [Int64] = []
            for row in try await connection.rows("""
                SELECT id, spec FROM \(unescaped: self.tables.jobs) WHERE idempotency_key = \(key) AND state = 'gated'
                ORDER BY seq FOR UPDATE
                """, logger: self.logger) {
                let spec = try JobSpec.decode(Data(try row.get("spec", as: String.self).utf8))
                ids.append(try row.get("id"))
                deadlines.append(Lifecycle.claimDeadline(enqueuedAt: Date(epochMilliseconds: now), queueTimeoutSec: spec.queueTimeoutSec,
                                                         ttlSec: spec.ttlSec, everClaimed: false).epochMilliseconds)
            }
            try await connection.rows("""
                WITH input AS (SELECT * FROM unnest(\(ids)::text[], \(deadlines)::bigint[]) AS t(id, claim_deadline)),
                held AS (
                    UPDATE \(unescaped: self.tables.jobs) j SET state = 'queued', run_at = \(now), deadline_base = \(now),
                        claim_deadline = i.claim_deadline, updated_at = \(now)
                    FROM input i WHERE j.id = i.id
                    RETURNING j.id
                )
                INSERT INTO \(unescaped: self.tables.events) (job_id, at, kind, detail)
                SELECT id, \(now), 'gate_released', json_build_object('idempotency_key', \(key)::text)::text FROM held
                """, logger: self.logger)
            let queued = ids
            if !queued.isEmpty {
                try await connection.rows("SELECT pg_notify(\(self.tables.channel), '')", logger: self.logger)
            }
            return GateRelease(gate: try Self.gate(from: row), queued: queued)
        }
        if !release.queued.isEmpty { signal.notify() }
        return release
    }

    static func gate(from row: PostgresRandomAccessRow) throws -> GateRecord {
        GateRecord(key: try row.get("key"), state: GateRecord.State(rawValue: try row.get("state")) ?? .held,
                   heldSince: Date(epochMilliseconds: try row.get("held_since")), reason: try row.get("reason"),
                   deadJobs: (try row.get("dead_jobs", as: String.self)).split(separator: ",").map(String.init),
                   heldJobs: Int(try row.get("held_jobs", as: Int64.self)),
                   releasedAt: (try row.get("released_at", as: Int64?.self)).map(Date.init(epochMilliseconds:)))
    }
}
