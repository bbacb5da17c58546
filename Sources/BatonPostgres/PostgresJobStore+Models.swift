import BatonCore
import BatonStore
import Foundation
import PostgresNIO

extension PostgresJobStore {
    private var cooldownsTable: String { "\(tables.schema).model_cooldowns" }
    private var spendTable: String { "\(tables.schema).llm_spend" }

    public func modelCooldowns() async throws -> [ModelCooldown] {
        try await rows("SELECT * FROM \(unescaped: cooldownsTable) ORDER BY provider, model").map(Self.cooldown(from:))
    }

    public func recordModelFailure(_ failure: ModelFailure, policy: CooldownPolicy) async throws -> ModelCooldown {
        let jitter = self.jitter
        return try await transaction { connection, now in
            // Nodes failing on one model at once queue up on its row: each sees the one before.
            let key = "\(failure.ref.provider)/\(failure.model)"
            try await connection.rows("SELECT pg_advisory_xact_lock(hashtextextended(\(key), 7))", logger: self.logger)
            let current = try await connection.rows("""
                SELECT * FROM \(unescaped: self.cooldownsTable) WHERE provider = \(failure.ref.provider) AND model = \(failure.model)
                """, logger: self.logger).first.map(Self.cooldown(from:))
            let next = policy.next(after: failure, current: current, now: Date(epochMilliseconds: now), jitterUnit: jitter())
            try await connection.rows("""
                INSERT INTO \(unescaped: self.cooldownsTable) (provider, model, level, until_ms, reason, since_ms, last_failure_ms,
                                                              failures, node_id, key_id)
                VALUES (\(next.provider), \(next.model), \(Int64(next.level)), \(next.until.epochMilliseconds), \(next.reason),
                        \(next.since.epochMilliseconds), \(next.lastFailureAt.epochMilliseconds), \(Int64(next.failures)), \(next.nodeID),
                        \(next.keyID))
                ON CONFLICT (provider, model) DO UPDATE SET level = excluded.level, until_ms = excluded.until_ms,
                    reason = excluded.reason, since_ms = excluded.since_ms, last_failure_ms = excluded.last_failure_ms,
                    failures = excluded.failures, node_id = excluded.node_id, key_id = excluded.key_id
                """, logger: self.logger)
            return next
        }
    }

    public func clearModelCooldowns(provider: String, model: String?, onlyEnded: Bool) async throws -> Int {
        let now = clock.now().epochMilliseconds
        return try await rows("""
            DELETE FROM \(unescaped: cooldownsTable)
            WHERE provider = \(provider) AND (\(model)::text IS NULL OR model = \(model)) AND (NOT \(onlyEnded) OR until_ms <= \(now))
            RETURNING 1
            """).count
    }

    public func llmSpend(jobID: String) async throws -> LLMSpend {
        try Self.spend(try await rows("SELECT * FROM \(unescaped: spendTable) WHERE job_id = \(jobID)"))
    }

    public func recordLLMCall(jobID: String, stage: String, tokens: Int) async throws -> LLMSpend {
        try await transaction { connection, _ in
            try await connection.rows("""
                INSERT INTO \(unescaped: self.spendTable) (job_id, stage, calls, tokens_sent, first_tokens)
                VALUES (\(jobID), \(stage), 1, \(Int64(tokens)), \(Int64(tokens)))
                ON CONFLICT (job_id, stage) DO UPDATE SET calls = \(unescaped: self.spendTable).calls + 1,
                    tokens_sent = \(unescaped: self.spendTable).tokens_sent + excluded.tokens_sent
                """, logger: self.logger)
            return try Self.spend(try await connection.rows("SELECT * FROM \(unescaped: self.spendTable) WHERE job_id = \(jobID)",
                                                            logger: self.logger))
        }
    }

    public func appendEvents(_ events: [JobEvent]) async throws {
        guard !events.isEmpty else { return }
        try await transaction { connection, _ in
            for event in events {
                let attempt = event.attempt.map(Int64.init)
                try await connection.rows("""
                    INSERT INTO \(unescaped: self.tables.events) (job_id, at, kind, node_id, stage, attempt, fence, detail)
                    SELECT \(event.jobID), \(event.at.epochMilliseconds), \(event.kind.rawValue), \(event.nodeID), \(event.stage),
                           \(attempt), \(event.fence), \(event.detail.isEmpty ? nil : event.detailJSON)
                    WHERE EXISTS (SELECT 1 FROM \(unescaped: self.tables.jobs) WHERE id = \(event.jobID))
                    """, logger: self.logger)
            }
        }
    }

    static func spend(_ rows: [PostgresRandomAccessRow]) throws -> LLMSpend {
        var spend = LLMSpend()
        for row in rows {
            spend.stages[try row.get("stage")] = LLMSpend.Stage(
                calls: Int(try row.get("calls", as: Int64.self)), tokensSent: Int(try row.get("tokens_sent", as: Int64.self)),
                firstTokens: Int(try row.get("first_tokens", as: Int64.self)))
        }
        return spend
    }

    static func cooldown(from row: PostgresRandomAccessRow) throws -> ModelCooldown {
        ModelCooldown(provider: try row.get("provider"), model: try row.get("model"), level: Int(try row.get("level", as: Int64.self)),
                      until: Date(epochMilliseconds: try row.get("until_ms")), reason: try row.get("reason"),
                      since: Date(epochMilliseconds: try row.get("since_ms")),
                      lastFailureAt: Date(epochMilliseconds: try row.get("last_failure_ms")),
                      failures: Int(try row.get("failures", as: Int64.self)), nodeID: try row.get("node_id", as: String?.self),
                      keyID: try row.get("key_id", as: String?.self))
    }
}
