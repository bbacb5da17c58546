/// The cluster's lanes, as the shared configuration sets them.
///
/// Built-in caps follow the agent gateways users come from: `main` 4, `cron` 2, `subagent` 8,
/// `nested` 4. `agents.defaults.maxConcurrent` sets `main`, `agents.defaults.subagents` and
/// `agents.defaults.cron` their lanes, each entry of `agents.list` its own lane
/// (`laneConcurrency`), and `lanes:` any lane by name (it wins over the others). A lane named
/// nowhere has no cap.
public struct LaneSettings: Sendable, Hashable {
    public static let builtIn: [String: Int] = ["main": 4, "cron": 2, "subagent": 8, "nested": 4]

    /// Running jobs allowed per lane across the cluster.
    public var caps: [String: Int]
    /// Whether a session's job in backoff keeps the session's later jobs waiting.
    public var retryHoldsPlace: Bool
    /// A job that waited longer than this before it started is logged with its lane, session,
    /// wait and position.
    public var waitWarnMs: Int
    /// Priority ageing: a job waiting this long gains one priority step, up to `maxBoost`.
    public var ageingEverySec: Int
    public var ageingMaxBoost: Int

    public init(caps: [String: Int] = LaneSettings.builtIn, retryHoldsPlace: Bool = true, waitWarnMs: Int = 2000,
                ageingEverySec: Int = 60, ageingMaxBoost: Int = 10) {
        self.caps = caps
        self.retryHoldsPlace = retryHoldsPlace
        self.waitWarnMs = waitWarnMs
        self.ageingEverySec = ageingEverySec
        self.ageingMaxBoost = ageingMaxBoost
    }

    public static let standard = LaneSettings()
}

/// One agent of `agents.list`: its lane and that lane's cap.
public struct AgentSettings: Sendable, Hashable {
    public var id: String
    public var lane: String
    public var laneConcurrency: Int?

    public init(id: String, lane: String, laneConcurrency: Int? = nil) {
        self.id = id
        self.lane = lane
        self.laneConcurrency = laneConcurrency
    }
}

/// Inbound chat messages (`messages.inbound`): duplicate deliveries are dropped for
/// `dedupeTTLSec`; quick successive messages of one session are batched into one run when
/// they arrive within `debounceMs` of each other (per channel overrides in `perChannel`).
public struct InboundSettings: Sendable, Hashable {
    public var debounceMs: Int
    public var perChannelDebounceMs: [String: Int]
    public var dedupeTTLSec: Int
    /// The lane of inbound runs when no agent names one.
    public var lane: String
    /// What an inbound run executes (an envelope `run`; the messages are in its payload).
    public var run: StageRun

    public init(debounceMs: Int = 0, perChannelDebounceMs: [String: Int] = [:], dedupeTTLSec: Int = 1200,
                lane: String = "main", run: StageRun = .noop) {
        self.debounceMs = debounceMs
        self.perChannelDebounceMs = perChannelDebounceMs
        self.dedupeTTLSec = dedupeTTLSec
        self.lane = lane
        self.run = run
    }

    public func debounceMs(channel: String) -> Int { perChannelDebounceMs[channel] ?? debounceMs }

    public static let standard = InboundSettings()
}
