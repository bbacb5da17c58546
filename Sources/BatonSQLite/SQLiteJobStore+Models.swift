import BatonCore
import BatonStore
import Foundation
import GRDB

extension SQLiteJobStore {
    public func modelCooldowns() async throws -> [ModelCooldown] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM model_cooldowns ORDER BY provider, model").map(Self.cooldown(from:))
        }
    }

    public func recordModelFailure(_ failure: ModelFailure, policy: CooldownPolicy) async throws -> ModelCooldown {
        let jitter = self.jitter
        return try await write { db, now in
            let current = try Row.fetchOne(db, sql: "SELECT * FROM model_cooldowns WHERE provider = ? AND model = ?",
                                           arguments: [failure.ref.provider, failure.model]).map(Self.cooldown(from:))
            let next = policy.next(after: failure, current: current, now: Date(epochMilliseconds: now), jitterUnit: jitter())
            try db.execute(sql: """
                INSERT OR REPLACE INTO model_cooldowns (provider, model, level, until_ms, reason, since_ms, last_failure_ms,
                                                        failures, node_id, key_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [next.provider, next.model, next.level, next.until.epochMilliseconds, next.reason,
                                 next.since.epochMilliseconds, next.lastFailureAt.epochMilliseconds, next.failures, next.nodeID, next.keyID])
            return next
        }
    }

    public func clearModelCooldowns(provider: String, model: String?, onlyEnded: Bool) async throws -> Int {
        try await write { db, now in
            try db.execute(sql: """
                DELETE FROM model_cooldowns WHERE provider = ? AND (? IS NULL OR model = ?) AND (? = 0 OR until_ms <= ?)
                """, arguments: [provider, model, model, onlyEnded, now])
            return db.changesCount
        }
    }

    public func llmSpend(jobID: String) async throws -> LLMSpend {
        try await read { db in try Self.spend(db, jobID: jobID) }
    }

    public func recordLLMCall(jobID: String, stage: String, tokens: Int) async throws -> LLMSpend {
        try await write { db, _ in
            try db.execute(sql: """
                INSERT INTO llm_spend (job_id, stage, calls, tokens_sent, first_tokens) VALUES (?, ?, 1, ?, ?)
                ON CONFLICT (job_id, stage) DO UPDATE SET calls = calls + 1, tokens_sent = tokens_sent + excluded.tokens_sent
                """, arguments: [jobID, stage, tokens, tokens])
            return try Self.spend(db, jobID: jobID)
        }
    }

    public func appendEvents(_ events: [JobEvent]) async throws {
        guard !events.isEmpty else { return }
        try await write { db, _ in
            for event in events where try Bool.fetchOne(db, sql: "SELECT 1 FROM jobs WHERE id = ?", arguments: [event.jobID]) == true {
                try Self.appendEvent(db, event)
            }
        }
    }

    static func spend(_ db: Database, jobID: String) throws -> LLMSpend {
        var spend = LLMSpend()
        for row in try Row.fetchAll(db, sql: "SELECT * FROM llm_spend WHERE job_id = ?", arguments: [jobID]) {
            spend.stages[row["stage"]] = LLMSpend.Stage(calls: row["calls"], tokensSent: row["tokens_sent"],
                                                        firstTokens: row["first_tokens"])
        }
        return spend
    }

    static func cooldown(from row: Row) -> ModelCooldown {
        ModelCooldown(provider: row["provider"], model: row["model"], level: row["level"],
                      until: Date(epochMilliseconds: row["until_ms"]), reason: row["reason"],
                      since: Date(epochMilliseconds: row["since_ms"]), lastFailureAt: Date(epochMilliseconds: row["last_failure_ms"]),
                      failures: row["failures"], nodeID: row["node_id"], keyID: row["key_id"])
    }
}
