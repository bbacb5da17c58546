import BatonCore

/// How one worker node behaves. Built from `NodeSettings` and `LogSettings` in baton.yaml.
public struct WorkerOptions: Sendable {
    public var nodeID: String
    public var region: String?
    public var tags: [String]
    /// Jobs this node runs at once.
    public var capacity: Int
    /// How long an idle node waits before asking the store again (push wake-ups come sooner).
    public var pollIntervalSec: Double
    /// On SIGTERM/SIGINT: how long in-flight jobs may run on before their leases are released.
    public var drainTimeoutSec: Double
    /// How often this node looks for expired leases and overdue jobs.
    public var rescueIntervalSec: Double
    public var logDirectory: String
    public var captureBytes: Int
    /// Grace between SIGTERM and SIGKILL when a shell stage is stopped.
    public var killGraceSec: Double
    /// How often the node tells the registry it is alive.
    public var heartbeatIntervalSec: Double
    /// Missed heartbeats after which the cluster declares this node dead.
    public var deadAfterMissed: Int
    /// Digest of the shared configuration (`BatonConfig.configHash`), for drift detection.
    public var configHash: String
    /// Lane caps this node publishes to the cluster when it joins (and on reload); nil
    /// publishes nothing (caps stay as other nodes set them).
    public var laneCaps: [String: Int]?
    /// A job that waited longer than this before it started is logged (lane, session, wait).
    public var waitWarnMs: Int

    public init(nodeID: String, region: String? = nil, tags: [String] = [], capacity: Int = 4,
                pollIntervalSec: Double = 0.25, drainTimeoutSec: Double = 30, rescueIntervalSec: Double = 2,
                logDirectory: String = "./baton-logs", captureBytes: Int = 16_384, killGraceSec: Double = 2,
                heartbeatIntervalSec: Double = 10, deadAfterMissed: Int = 3, configHash: String = "",
                laneCaps: [String: Int]? = nil, waitWarnMs: Int = 2000) {
        self.laneCaps = laneCaps
        self.waitWarnMs = waitWarnMs
        self.nodeID = nodeID
        self.region = region
        self.tags = tags
        self.capacity = capacity
        self.pollIntervalSec = pollIntervalSec
        self.drainTimeoutSec = drainTimeoutSec
        self.rescueIntervalSec = rescueIntervalSec
        self.logDirectory = logDirectory
        self.captureBytes = captureBytes
        self.killGraceSec = killGraceSec
        self.heartbeatIntervalSec = heartbeatIntervalSec
        self.deadAfterMissed = deadAfterMissed
        self.configHash = configHash
    }
}
