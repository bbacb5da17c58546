import BatonCore
import BatonStore
import Foundation
import GRDB

extension SQLiteJobStore {
    public func receive(_ message: InboundMessage, policy: InboundPolicy) async throws -> InboundResult {
        let newID = JobID.make(at: clock.now())
        let result = try await write { db, now -> InboundResult in
            let key = message.dedupeKey
            if let seen = try String.fetchOne(db, sql: "SELECT job_id FROM inbound_seen WHERE key = ? AND expires_at > ?",
                                              arguments: [key, now]) {
                return .duplicate(jobID: seen)
            }
            let debounce = Int64(policy.debounceMs)
            var result: InboundResult?
            if debounce > 0, let open = try Row.fetchOne(db, sql: """
                SELECT j.id, j.spec FROM inbound_batches b JOIN jobs j ON j.id = b.job_id
                WHERE b.session_key = ? AND j.state = 'queued' AND j.run_at > ?
                """, arguments: [message.sessionKey, now]) {
                // The batch has not started: the message joins it and its start moves back.
                let id: String = open["id"]
                let spec = InboundPolicy.appending(message, to: try JobSpec.decode(Data((open["spec"] as String).utf8)))
                try db.execute(sql: "UPDATE jobs SET spec = ?, run_at = ?, updated_at = ? WHERE id = ?",
                               arguments: [spec.storedJSON(), now + debounce, now, id])
                try Self.appendEvent(db, JobEvent(jobID: id, at: Date(epochMilliseconds: now), kind: .inboundAppended,
                                                  detail: ["message_id": message.messageID, "channel": message.channel]))
                result = .appended(jobID: id)
            }
            if result == nil {
                let spec = policy.job(for: message, id: newID)
                _ = try Self.enqueue(db, spec, json: spec.storedJSON(), now: now)
                if debounce > 0 {
                    try db.execute(sql: "UPDATE jobs SET run_at = ? WHERE id = ?", arguments: [now + debounce, newID])
                    try db.execute(sql: "INSERT OR REPLACE INTO inbound_batches (session_key, job_id) VALUES (?, ?)",
                                   arguments: [message.sessionKey, newID])
                }
                result = .created(jobID: newID)
            }
            try db.execute(sql: "INSERT OR REPLACE INTO inbound_seen (key, job_id, expires_at) VALUES (?, ?, ?)",
                           arguments: [key, result!.jobID, now + Int64(policy.dedupeTTLSec) * 1000])
            return result!
        }
        signal.notify()
        return result
    }
}
