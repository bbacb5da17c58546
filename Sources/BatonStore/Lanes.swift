import BatonCore
import Foundation

/// A lane as the store sees it now: its cap and how busy it is across the cluster.
public struct LaneStats: Sendable, Hashable {
    public var name: String
    /// Running jobs allowed at once across the cluster; nil: no cap.
    public var cap: Int?
    /// Jobs waiting to run (queued or in backoff).
    public var waiting: Int
    /// Of those, the ones whose time has come (run_at passed).
    public var ready: Int
    public var running: Int
    /// How long the oldest ready job has waited.
    public var oldestReadySec: Double?
    /// Queue wait (ready → started) of the lane's recent starts.
    public var wait: WaitDistribution

    public init(name: String, cap: Int?, waiting: Int, ready: Int, running: Int, oldestReadySec: Double?,
                wait: WaitDistribution) {
        self.name = name
        self.cap = cap
        self.waiting = waiting
        self.ready = ready
        self.running = running
        self.oldestReadySec = oldestReadySec
        self.wait = wait
    }
}

/// Percentiles of queue waits in milliseconds over a set of recent starts.
public struct WaitDistribution: Sendable, Hashable {
    public var count: Int
    public var p50Ms: Int64?
    public var p90Ms: Int64?
    public var p99Ms: Int64?
    public var maxMs: Int64?

    public init(samples: [Int64]) {
        let sorted = samples.sorted()
        count = sorted.count
        // Nearest rank: the smallest sample with at least q of the samples at or below it.
        func at(_ q: Double) -> Int64? {
            guard !sorted.isEmpty else { return nil }
            let rank = max(1, Int((Double(sorted.count) * q).rounded(.up)))
            return sorted[min(sorted.count, rank) - 1]
        }
        p50Ms = at(0.5)
        p90Ms = at(0.9)
        p99Ms = at(0.99)
        maxMs = sorted.last
    }

    public static let empty = WaitDistribution(samples: [])
}

/// How many recent starts per lane the wait distribution covers.
public enum LaneStatsWindow {
    public static let samples = 1000
}
