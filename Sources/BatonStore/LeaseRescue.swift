import BatonCore
import Foundation

/// Why a running job is taken back from the node that holds it.
public enum LeaseLoss: Sendable, Hashable {
    /// No heartbeat reached the store before the lease ran out.
    case leaseExpired
    /// The node stopped heartbeating for its whole threshold: declared dead before its
    /// leases ran out.
    case nodeDead
    /// A new process registered with the node's id: the process that held the lease is gone.
    case nodeRestarted

    public var reason: String {
        switch self {
        case .leaseExpired: "lease_expired"
        case .nodeDead: "node_dead"
        case .nodeRestarted: "node_restarted"
        }
    }

    func message(node: String) -> String {
        switch self {
        case .leaseExpired: "no heartbeat from node \(node) before the lease ran out"
        case .nodeDead: "node \(node) missed its heartbeats and was declared dead"
        case .nodeRestarted: "node \(node) restarted; the process that held the lease is gone"
        }
    }
}

/// What the store writes when it takes a running job back: decided here once for both
/// engines, persisted by each.
public struct LeaseRescue: Sendable {
    public enum Outcome: Sendable, Hashable {
        /// Queued again at once (the attempt counts; the next claim resumes the same stage).
        case requeue
        /// Out of attempts or past its ttl: the job ends in `state` with `reason`.
        case finish(state: JobState, reason: String)
    }

    /// The failure recorded on the attempt and on the job.
    public let failure: Failure
    public let outcome: Outcome
    /// Appended in this order: `heartbeat_lost`, then `rescued`, `dead_lettered` or `expired`.
    public let events: [JobEvent]

    /// - Parameters:
    ///   - lastHeardAt: when the holder last wrote about the job (claim, heartbeat, stage
    ///     completion); the events carry the silence since then as `silent_ms`.
    public init(jobID: String, spec: JobSpec, attempts: Int, fence: Int64, stageIndex: Int, node: String?,
                deadlineBase: Date, lastHeardAt: Date?, loss: LeaseLoss, now: Date) {
        let holder = node ?? "?"
        failure = Failure.transient(loss.reason, loss.message(node: holder))
        let deadline = deadlineBase.addingTimeInterval(Double(spec.ttlSec))
        switch Lifecycle.afterLeaseExpired(attempt: attempts, policy: spec.retry, now: now, deadline: deadline,
                                           reason: loss.reason) {
        case .deadLetter(let reason): outcome = .finish(state: .dead, reason: reason)
        case .expire(let reason): outcome = .finish(state: .expired, reason: reason)
        case .retry, .cancel: outcome = .requeue
        }
        var detail = ["reason": loss.reason, "from_node": holder]
        if let lastHeardAt { detail["silent_ms"] = String(now.epochMilliseconds - lastHeardAt.epochMilliseconds) }
        let stage = spec.stages[min(stageIndex, spec.stages.count - 1)].name
        func event(_ kind: JobEvent.Kind, nodeID: String?, _ detail: [String: String]) -> JobEvent {
            JobEvent(jobID: jobID, at: now, kind: kind, nodeID: nodeID, stage: stage, attempt: attempts, fence: fence,
                     detail: detail)
        }
        var events = [event(.heartbeatLost, nodeID: node, detail)]
        switch outcome {
        case .requeue:
            events.append(event(.rescued, nodeID: nil, detail))
        case .finish(let state, let reason):
            var finished = detail
            finished["reason"] = reason
            events.append(event(state == .dead ? .deadLettered : .expired, nodeID: nil, finished))
        }
        self.events = events
    }
}

/// The detail of a `claimed` event: how long the job waited, which node takes it and, when
/// another node (or an earlier process of the same node) held it before, from whom and how
/// long after that holder was last heard from. Region fallbacks are named.
public struct ClaimHandover: Sendable {
    public let detail: [String: String]

    /// - Parameters:
    ///   - regionAffinity: the region the claimed stage asks for.
    ///   - handoffAt: when the previous stage finished on a node that could not run this one.
    public init(regionAffinity: String?, request: ClaimRequest, runAt: Int64, lastNode: String?, lastNodeAt: Int64?,
                handoffAt: Int64? = nil, now: Int64) {
        var detail = ["wait_ms": String(now - runAt), "to_node": request.nodeID]
        if let lastNode {
            detail["from_node"] = lastNode
            if let lastNodeAt { detail["handover_ms"] = String(now - lastNodeAt) }
        }
        if let handoffAt { detail["handoff_ms"] = String(now - handoffAt) }
        if let affinity = regionAffinity, affinity != request.region {
            detail["region_fallback"] = "true"
            detail["region_affinity"] = affinity
            detail["node_region"] = request.region ?? ""
        }
        self.detail = detail
    }
}
