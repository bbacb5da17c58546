import BatonCore
import Foundation

/// What a node says about itself when it joins the cluster and at every heartbeat.
public struct NodeInfo: Sendable, Hashable {
    public var id: String
    /// Random per process: tells a restart of the same node id from a second live process.
    public var instance: String
    public var host: String
    public var pid: Int32
    public var region: String?
    public var tags: [String]
    public var capacity: Int
    public var version: String
    /// Digest of the settings every node of a cluster should share (`BatonConfig.configHash`).
    public var configHash: String
    public var heartbeatIntervalSec: Double
    /// Silence after which the cluster declares the node dead and rescues its leases.
    public var deadAfterSec: Double

    public init(id: String, instance: String = UUID().uuidString.lowercased(), host: String, pid: Int32,
                region: String? = nil, tags: [String] = [], capacity: Int, version: String, configHash: String,
                heartbeatIntervalSec: Double = 10, deadAfterSec: Double = 30) {
        self.id = id
        self.instance = instance
        self.host = host
        self.pid = pid
        self.region = region
        self.tags = tags
        self.capacity = capacity
        self.version = version
        self.configHash = configHash
        self.heartbeatIntervalSec = heartbeatIntervalSec
        self.deadAfterSec = deadAfterSec
    }
}

/// A node as the registry holds it.
public struct NodeRecord: Sendable, Hashable {
    public enum State: String, Sendable, Hashable {
        /// Registered and not known to have stopped.
        case live
        /// Left the cluster on purpose (graceful stop).
        case stopped
        /// Declared dead after missed heartbeats; its leases were rescued.
        case dead
    }

    public var info: NodeInfo
    public var state: State
    public var startedAt: Date
    public var lastSeen: Date
    /// Jobs running on the node at its last heartbeat.
    public var inFlight: Int

    public init(info: NodeInfo, state: State, startedAt: Date, lastSeen: Date, inFlight: Int) {
        self.info = info
        self.state = state
        self.startedAt = startedAt
        self.lastSeen = lastSeen
        self.inFlight = inFlight
    }

    public var id: String { info.id }

    public func health(at now: Date) -> NodeHealth {
        NodeHealth.evaluate(state: state.rawValue, lastSeen: lastSeen, intervalSec: info.heartbeatIntervalSec,
                            deadAfterSec: info.deadAfterSec, now: now)
    }
}

/// What `registerNode` did.
public enum NodeRegistration: Sendable, Hashable {
    /// The node is registered. `previous` is the registration it replaced (a restart of the
    /// same node id); `rescued` the jobs that earlier process still held, queued again.
    case registered(NodeRecord, previous: NodeRecord?, rescued: [String])
    /// Another process holds the node id and is not known to be gone; nothing was written.
    case conflict(existing: NodeRecord)
}

/// What a node's own heartbeat learned.
public enum NodeHeartbeatResult: Sendable, Hashable {
    case ok
    /// The cluster had declared this node dead (it was silent too long) and rescued its
    /// leases; the registration is live again.
    case revived
    /// Another process registered this node id since: this process must stop.
    case replaced(by: NodeRecord)
}

/// How stores keep a node's tags: one JSON array of strings.
public enum NodeTags {
    public static func encode(_ tags: [String]) -> String {
        String(decoding: JSONValue.array(tags.map { .string($0) }).encoded(), as: UTF8.self)
    }

    public static func decode(_ text: String?) -> [String] {
        guard let text, case .array(let items)? = try? JSONValue.parse(Data(text.utf8), what: "tags") else { return [] }
        return items.compactMap { if case .string(let s) = $0 { s } else { nil } }
    }
}
