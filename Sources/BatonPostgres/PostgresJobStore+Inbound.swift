import BatonCore
import BatonStore
import Foundation
import PostgresNIO

extension PostgresJobStore {
    public func receive(_ message: InboundMessage, policy: InboundPolicy) async throws -> InboundResult {
        let newID = JobID.make(at: clock.now())
        let schema = tables.schema
        let result = try await transaction { connection, now -> InboundResult in
            let key = message.dedupeKey
            // Deliveries of one session (on any node) take their turn: the dedupe check and the
            // batch decision see each other's writes.
            try await connection.rows("SELECT pg_advisory_xact_lock(hashtext(\("baton.inbound.\(schema)." + message.sessionKey)))",
                                      logger: self.logger)
            if let seen = try await connection.rows("""
                SELECT job_id FROM \(unescaped: schema).inbound_seen WHERE key = \(key) AND expires_at > \(now)
                """, logger: self.logger).first {
                return .duplicate(jobID: try seen.get("job_id", as: String.self))
            }
            let debounce = Int64(policy.debounceMs)
            var result: InboundResult?
            if debounce > 0, let open = try await connection.rows("""
                SELECT j.id, j.spec FROM \(unescaped: schema).inbound_batches b JOIN \(unescaped: self.tables.jobs) j ON j.id = b.job_id
                WHERE b.session_key = \(message.sessionKey) AND j.state = 'queued' AND j.run_at > \(now)
                FOR UPDATE OF j
                """, logger: self.logger).first {
                // The batch has not started: the message joins it and its start moves back.
                let id: String = try open.get("id")
                let spec = InboundPolicy.appending(message, to: try JobSpec.decode(Data(try open.get("spec", as: String.self).utf8)))
                try await connection.rows("""
                    UPDATE \(unescaped: self.tables.jobs) SET spec = \(spec.storedJSON()), run_at = \(now + debounce),
                        updated_at = \(now)
                    WHERE id = \(id)
                    """, logger: self.logger)
                try await self.appendEvent(connection, JobEvent(jobID: id, at: Date(epochMilliseconds: now), kind: .inboundAppended,
                                                                detail: ["message_id": message.messageID, "channel": message.channel]))
                result = .appended(jobID: id)
            }
            if result == nil {
                let spec = policy.job(for: message, id: newID)
                _ = try await self.enqueueInTransaction([spec], now: now, on: connection)
                if debounce > 0 {
                    try await connection.rows("""
                        UPDATE \(unescaped: self.tables.jobs) SET run_at = \(now + debounce) WHERE id = \(newID)
                        """, logger: self.logger)
                    try await connection.rows("""
                        INSERT INTO \(unescaped: schema).inbound_batches (session_key, job_id) VALUES (\(message.sessionKey), \(newID))
                        ON CONFLICT (session_key) DO UPDATE SET job_id = EXCLUDED.job_id
                        """, logger: self.logger)
                }
                result = .created(jobID: newID)
            }
            try await connection.rows("""
                INSERT INTO \(unescaped: schema).inbound_seen (key, job_id, expires_at)
                VALUES (\(key), \(result!.jobID), \(now + Int64(policy.dedupeTTLSec) * 1000))
                ON CONFLICT (key) DO UPDATE SET job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at
                """, logger: self.logger)
            return result!
        }
        signal.notify()
        return result
    }
}
