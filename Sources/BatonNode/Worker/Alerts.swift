import AsyncHTTPClient
import BatonCore
import BatonStore
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// Where a node reports what needs a person: a log line at error level always, and a POST of
/// a small JSON document to `alerts.webhook_url` when one is configured. A webhook that fails
/// is logged, never retried into a storm, and never holds up the job that raised the alert.
public struct Alerts: Sendable {
    /// Sends `body` (JSON) to `url`; throws when the far side did not accept it.
    public typealias Poster = @Sendable (_ url: String, _ body: Data) async throws -> Void

    public var webhookURL: String?
    public var post: Poster?

    public init(webhookURL: String? = nil, post: Poster? = nil) {
        self.webhookURL = webhookURL
        self.post = post
    }

    public static let logOnly = Alerts()

    /// A key's dead letters made its human gate hold new jobs.
    public func gateHeld(_ gate: GateRecord, job: String, nodeID: String, logger: Logger) {
        logger.error("human gate holds new jobs: their idempotency key keeps dying; release with `baton gate release`",
                     metadata: ["gate.key": .string(gate.key), "job.id": .string(job),
                                "dead_jobs": .string(gate.deadJobs.joined(separator: ",")), "reason": .string(gate.reason)])
        send(.object([
            "kind": .string("gate_held"), "key": .string(gate.key), "job_id": .string(job),
            "dead_jobs": .array(gate.deadJobs.map(JSONValue.string)), "reason": .string(gate.reason),
            "node_id": .string(nodeID), "at": .string(ISO8601DateFormatter().string(from: gate.heldSince)),
        ]), logger: logger)
    }

    /// A schedule paused itself after repeated failures: it fires nothing until resumed.
    public func schedulePaused(_ schedule: ScheduleRecord, nodeID: String, logger: Logger) {
        logger.error("schedule paused after repeated failures; resume with `baton cron resume`",
                     metadata: ["schedule": .string(schedule.id), "reason": .string(schedule.reason ?? "")])
        send(.object([
            "kind": .string("schedule_paused"), "schedule_id": .string(schedule.id), "reason": .string(schedule.reason ?? ""),
            "node_id": .string(nodeID), "at": .string(ISO8601DateFormatter().string(from: schedule.pausedAt ?? Date())),
        ]), logger: logger)
    }

    /// A provider refused its credentials (401/403) or has no quota left: every node skips its
    /// models until the hold ends or `baton models clear` lifts it.
    public func providerHeld(_ hold: ModelCooldown, job: String, nodeID: String, logger: Logger) {
        logger.error("model provider held: its credentials were refused or its quota is used up; fix the key, then `baton models clear \(hold.provider)`",
                     metadata: ["provider": .string(hold.provider), "reason": .string(hold.reason), "job.id": .string(job),
                                "until": .string(JSONTime.string(hold.until))])
        send(.object([
            "kind": .string("provider_held"), "provider": .string(hold.provider), "reason": .string(hold.reason),
            "job_id": .string(job), "node_id": .string(nodeID), "until": .string(JSONTime.string(hold.until)),
            "at": .string(JSONTime.string(hold.lastFailureAt)),
        ]), logger: logger)
    }

    private func send(_ document: JSONValue, logger: Logger) {
        guard let webhookURL, let post else { return }
        let body = document.encoded()
        Task {
            do {
                try await post(webhookURL, body)
            } catch {
                logger.warning("alert webhook failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

extension Alerts {
    /// Alerts POSTed as JSON to `url` (through the HTTP executor's client, which does not
    /// follow redirects), each within `timeoutSec`; a status other than 2xx counts as failed.
    public static func webhook(_ url: String?, timeoutSec: Int64 = 5) -> Alerts {
        guard let url else { return .logOnly }
        return Alerts(webhookURL: url) { target, body in
            var request = HTTPClientRequest(url: target)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.headers.add(name: "user-agent", value: "baton/\(BatonVersion.current)")
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await HTTPExecutor.sharedClient.execute(request, deadline: .now() + .seconds(timeoutSec))
            guard (200..<300).contains(Int(response.status.code)) else {
                throw BatonError(.storeUnavailable, field: "alerts.webhook_url",
                                 "the webhook answered \(response.status.code) \(response.status.reasonPhrase)")
            }
        }
    }
}
