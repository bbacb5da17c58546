import Foundation

/// A node's health as its heartbeats show it. Decided here; stores persist the inputs
/// (state, last heartbeat, interval, threshold) and the CLI and dashboard show the verdict.
public enum NodeHealth: String, Sendable, Hashable, CaseIterable {
    /// Heard from within one heartbeat interval (plus half an interval of grace).
    case healthy
    /// Missed a heartbeat, not yet the threshold.
    case late
    /// Silent for the threshold (or declared dead by the cluster): its leases are rescued.
    case dead
    /// Left the cluster on purpose.
    case stopped

    /// How long a node may stay silent before it is dead: `missed` heartbeat intervals.
    public static func deadAfter(intervalSec: Double, missed: Int) -> Double {
        intervalSec * Double(max(1, missed))
    }

    /// `state` is the registry's word for the node (`live`, `stopped`, `dead`).
    public static func evaluate(state: String, lastSeen: Date, intervalSec: Double, deadAfterSec: Double,
                                now: Date) -> NodeHealth {
        switch state {
        case "stopped": return .stopped
        case "dead": return .dead
        default:
            let silent = now.timeIntervalSince(lastSeen)
            if silent >= deadAfterSec { return .dead }
            return silent > intervalSec * 1.5 ? .late : .healthy
        }
    }

    /// Whether a new process may take over a node id whose registration is in this health.
    /// A healthy or late node may still be running: taking its id would give the cluster two
    /// processes answering to one name.
    public var mayBeTakenOver: Bool { self == .dead || self == .stopped }
}
