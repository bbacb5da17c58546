import BatonCore
import Foundation

/// One entry of a job's append-only event log: the audit trail that answers "which job,
/// which stage, which node wrote last".
public struct JobEvent: Sendable, Hashable {
    public struct Kind: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let enqueued = Kind(rawValue: "enqueued")
        /// A submission with the same idempotency key was answered with this job.
        public static let deduplicated = Kind(rawValue: "deduplicated")
        public static let claimed = Kind(rawValue: "claimed")
        public static let stageCompleted = Kind(rawValue: "stage_completed")
        public static let completed = Kind(rawValue: "completed")
        public static let failed = Kind(rawValue: "failed")
        public static let retried = Kind(rawValue: "retried")
        public static let deadLettered = Kind(rawValue: "dead_lettered")
        public static let released = Kind(rawValue: "released")
        /// The lease ran out without a heartbeat from its node.
        public static let heartbeatLost = Kind(rawValue: "heartbeat_lost")
        /// The job was taken back from a lost node and queued again.
        public static let rescued = Kind(rawValue: "rescued")
        public static let expired = Kind(rawValue: "expired")
        public static let cancelled = Kind(rawValue: "cancelled")
        public static let redriven = Kind(rawValue: "redriven")
        /// A finished stage's successor may not run on its node: the job was queued for one that may.
        public static let handedOff = Kind(rawValue: "handed_off")
        /// This dead letter made the human gate of its idempotency key hold new jobs.
        public static let gateHeld = Kind(rawValue: "gate_held")
        /// Submitted while its key's gate is held: waits for a human.
        public static let gated = Kind(rawValue: "gated")
        public static let gateReleased = Kind(rawValue: "gate_released")
        /// An inbound message joined this job's batch (debounce).
        public static let inboundAppended = Kind(rawValue: "inbound_appended")
        /// An `llm` stage did not call a model of its chain (cooling down, provider held).
        public static let modelSkipped = Kind(rawValue: "model_skipped")
        /// An `llm` stage's call to a model failed (the detail says why and what followed).
        public static let modelFailed = Kind(rawValue: "model_failed")
        /// An `llm` stage's call was answered (model, tokens, latency).
        public static let modelAnswered = Kind(rawValue: "model_answered")
        /// A write under a lease that was no longer current was refused.
        public static let staleWriteRefused = Kind(rawValue: "stale_write_refused")
    }

    public var seq: Int64
    public var jobID: String
    public var at: Date
    public var kind: Kind
    public var nodeID: String?
    public var stage: String?
    public var attempt: Int?
    public var fence: Int64?
    /// Structured detail: reason, delay, error class, from/to node...
    public var detail: [String: String]

    public init(seq: Int64 = 0, jobID: String, at: Date, kind: Kind, nodeID: String? = nil, stage: String? = nil,
                attempt: Int? = nil, fence: Int64? = nil, detail: [String: String] = [:]) {
        self.seq = seq
        self.jobID = jobID
        self.at = at
        self.kind = kind
        self.nodeID = nodeID
        self.stage = stage
        self.attempt = attempt
        self.fence = fence
        self.detail = detail
    }

    /// The detail as compact JSON with sorted keys (how stores keep it). Written directly:
    /// events are appended on every transition and a flat map of strings needs no encoder.
    public var detailJSON: String {
        var out = "{"
        for (index, key) in detail.keys.sorted().enumerated() {
            if index > 0 { out += "," }
            Self.appendQuoted(key, to: &out)
            out += ":"
            Self.appendQuoted(detail[key] ?? "", to: &out)
        }
        return out + "}"
    }

    static func appendQuoted(_ text: String, to out: inout String) { JobEventText.appendQuoted(text, to: &out) }

    public static func detail(fromJSON text: String?) -> [String: String] {
        guard let text, case .object(let fields)? = try? JSONValue.parse(Data(text.utf8), what: "detail") else { return [:] }
        return fields.compactMapValues { if case .string(let s) = $0 { s } else { nil } }
    }
}

extension Lease {
    /// An event about this lease's current stage and attempt, written by its node.
    public func event(_ kind: JobEvent.Kind, at: Date, detail: [String: String] = [:]) -> JobEvent {
        JobEvent(jobID: jobID, at: at, kind: kind, nodeID: nodeID, stage: stage.name, attempt: attempt, fence: fence,
                 detail: detail)
    }
}
