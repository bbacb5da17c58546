import BatonCore
import BatonStore
import Foundation
import GRDB

extension SQLiteJobStore {
    /// Counts a dead letter against its idempotency key; when the key has died often enough
    /// within the window (since its gate was last released), the gate holds new jobs. Returns
    /// the gate when this dead letter made it hold.
    static func recordDeadLetter(_ db: Database, jobID: String, key: String?, now: Int64,
                                 policy: GatePolicy) throws -> GateRecord? {
        guard let key else { return nil }
        try db.cachedStatement(sql: "INSERT INTO dead_letter_keys (key, job_id, at) VALUES (?, ?, ?)")
            .execute(arguments: [key, jobID, now])
        let gate = try Row.fetchOne(db.cachedStatement(sql: "SELECT state, released_at FROM gates WHERE key = ?"),
                                    arguments: [key])
        if let gate, (gate["state"] as String) == GateRecord.State.held.rawValue { return nil }
        let since = max(now - Int64(policy.windowSec) * 1000, (gate?["released_at"] as Int64?) ?? Int64.min)
        let jobs = try String.fetchAll(db.cachedStatement(sql: """
            SELECT job_id FROM dead_letter_keys WHERE key = ? AND at > ? ORDER BY at, rowid
            """), arguments: [key, since])
        guard jobs.count >= policy.deadLetters else { return nil }
        let reason = policy.reason(key: key, jobs: jobs)
        try db.cachedStatement(sql: """
            INSERT INTO gates (key, state, held_since, reason, dead_jobs, released_at) VALUES (?, 'held', ?, ?, ?, NULL)
            ON CONFLICT (key) DO UPDATE SET state = 'held', held_since = excluded.held_since, reason = excluded.reason,
                                            dead_jobs = excluded.dead_jobs, released_at = NULL
            """).execute(arguments: [key, now, reason, jobs.joined(separator: ",")])
        try appendEvent(db, JobEvent(jobID: jobID, at: Date(epochMilliseconds: now), kind: .gateHeld,
                                     detail: ["idempotency_key": key, "dead_jobs": jobs.joined(separator: ","), "reason": reason]))
        return GateRecord(key: key, state: .held, heldSince: Date(epochMilliseconds: now), reason: reason, deadJobs: jobs)
    }

    public func gates() async throws -> [GateRecord] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT g.*, (SELECT COUNT(*) FROM jobs j WHERE j.idempotency_key = g.key AND j.state = 'gated') AS held_jobs
                FROM gates g ORDER BY g.state = 'held' DESC, g.held_since DESC
                """).map(Self.gate(from:))
        }
    }

    public func releaseGate(key: String) async throws -> GateRelease {
        let release = try await write { db, now in
            guard let row = try Row.fetchOne(db, sql: "SELECT *, 0 AS held_jobs FROM gates WHERE key = ? AND state = 'held'",
                                             arguments: [key]) else {
                throw BatonError(.notFound, field: "key", "no gate is holding jobs with idempotency key \"\(key)\"")
            }
            try db.execute(sql: "UPDATE gates SET state = 'released', released_at = ? WHERE key = ?", arguments: [now, key])
            let held = try String.fetchAll(db, sql: """
                SELECT id FROM jobs INDEXED BY jobs_gated WHERE idempotency_key = ? AND state = 'gated' ORDER BY seq
                """, arguments: [key])
            for id in held {
                // Its deadlines count from the release: a person held it, not the queue.
                let spec = try JobSpec.decode(Data(try String.fetchOne(db, sql: "SELECT spec FROM jobs WHERE id = ?", arguments: [id])!.utf8))
                let deadline = Lifecycle.claimDeadline(enqueuedAt: Date(epochMilliseconds: now), queueTimeoutSec: spec.queueTimeoutSec,
                                                       ttlSec: spec.ttlSec, everClaimed: false).epochMilliseconds
                try db.execute(sql: """
                    UPDATE jobs SET state = 'queued', run_at = ?, deadline_base = ?, claim_deadline = ?, updated_at = ? WHERE id = ?
                    """, arguments: [now, now, deadline, now, id])
                try Self.appendEvent(db, JobEvent(jobID: id, at: Date(epochMilliseconds: now), kind: .gateReleased,
                                             detail: ["idempotency_key": key]))
            }
            var gate = try Self.gate(from: row)
            gate.state = .released
            gate.releasedAt = Date(epochMilliseconds: now)
            return GateRelease(gate: gate, queued: held)
        }
        if !release.queued.isEmpty { signal.notify() }
        return release
    }

    static func gate(from row: Row) throws -> GateRecord {
        GateRecord(key: row["key"], state: GateRecord.State(rawValue: row["state"]) ?? .held,
                   heldSince: Date(epochMilliseconds: row["held_since"]), reason: row["reason"],
                   deadJobs: (row["dead_jobs"] as String).split(separator: ",").map(String.init), heldJobs: row["held_jobs"],
                   releasedAt: (row["released_at"] as Int64?).map(Date.init(epochMilliseconds:)))
    }
}
