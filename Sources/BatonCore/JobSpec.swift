/// What runs in a stage.
public enum StageRun: Sendable, Hashable {
    /// A command line run by `/bin/sh -c` in its own process group.
    case shell(String)
    /// Succeeds at once (tests, benchmarks, placeholders).
    case noop
    /// Sleeps for the given seconds, then succeeds (tests, benchmarks).
    case sleep(Double)
    /// One HTTP request (webhooks, upload endpoints, notification services).
    case http(HTTPStageRequest)
    /// One model call through the nodes' providers, with fallbacks and cooldowns.
    case llm(LLMStageRequest)

    public var kind: String {
        switch self {
        case .shell: "shell"
        case .noop: "noop"
        case .sleep: "sleep"
        case .http: "http"
        case .llm: "llm"
        }
    }
}

/// Which timeout a stage's time limit is: each is its own reason in the event log, so an
/// upload that stalls is never mistaken for a build that hangs.
public enum TimeoutClass: String, Sendable, Hashable, CaseIterable, Codable {
    /// The stage ran longer than its `timeout_sec` (reason `exec_timeout`).
    case exec
    /// An upload stage ran longer than its `timeout_sec` (reason `upload_timeout`).
    case upload

    /// The failure reason recorded when a stage of this class runs out of time.
    public var reason: String { "\(rawValue)_timeout" }
}

/// One step of a job.
public struct StageSpec: Sendable, Hashable {
    public var name: String
    public var run: StageRun
    /// Execution timeout of this stage; `nil` uses the job's `exec_timeout_sec`.
    public var timeoutSec: Int?
    /// Exit codes that count as transient failures in addition to 75 (EX_TEMPFAIL).
    public var transientExitCodes: [Int32]
    /// Extra environment variables for shell stages.
    public var env: [String: String]
    /// Working directory for shell stages.
    public var workdir: String?
    /// Which timeout `timeoutSec` is (`exec` unless the stage is marked `upload`).
    public var timeoutClass: TimeoutClass
    /// Only nodes of this region may run this stage (defaults to the job's `region_affinity`).
    public var regionAffinity: String?
    /// Only nodes carrying every one of these tags may run this stage.
    public var nodeTags: [String]

    public init(name: String, run: StageRun, timeoutSec: Int? = nil, transientExitCodes: [Int32] = [],
                env: [String: String] = [:], workdir: String? = nil, timeoutClass: TimeoutClass = .exec,
                regionAffinity: String? = nil, nodeTags: [String] = []) {
        self.name = name
        self.run = run
        self.timeoutSec = timeoutSec
        self.transientExitCodes = transientExitCodes
        self.env = env
        self.workdir = workdir
        self.timeoutClass = timeoutClass
        self.regionAffinity = regionAffinity
        self.nodeTags = nodeTags
    }
}

/// Which nodes may run a stage: a region and a set of tags the node must all carry.
public struct Placement: Sendable, Hashable {
    public var region: String?
    public var tags: [String]

    public init(region: String? = nil, tags: [String] = []) {
        self.region = region
        self.tags = tags.sorted()
    }

    /// Whether a node of `region` carrying `nodeTags` may run the stage.
    public func admits(region nodeRegion: String?, tags nodeTags: [String]) -> Bool {
        if let region, region != nodeRegion { return false }
        return tags.allSatisfy(nodeTags.contains)
    }

    /// The tags as stores keep them: sorted, comma-separated, nil when there are none.
    public var tagsColumn: String? { tags.isEmpty ? nil : tags.joined(separator: ",") }
}

/// A validated job envelope with every default filled in. This is what stores persist and
/// what nodes execute.
public struct JobSpec: Sendable, Hashable {
    public static let schemaVersion = 1

    public var id: String
    public var idempotencyKey: String?
    public var dedupeWindowSec: Int
    public var lane: String
    public var sessionKey: String?
    public var regionAffinity: String?
    /// With `regionAffinity`: once the job has waited this long to be claimed, a node of any
    /// region may take it (recorded in the claim event). `nil`: only that region, ever.
    public var regionFallbackAfterSec: Int?
    public var priority: Int
    public var stages: [StageSpec]
    public var queueTimeoutSec: Int?
    public var execTimeoutSec: Int
    public var leaseTTLSec: Int
    public var ttlSec: Int
    public var retry: RetryPolicy
    public var artifactURI: String?
    public var payload: JSONValue

    public init(id: String, idempotencyKey: String? = nil, dedupeWindowSec: Int = JobDefaults.standard.dedupeWindowSec,
                lane: String = JobDefaults.standard.lane, sessionKey: String? = nil, regionAffinity: String? = nil,
                regionFallbackAfterSec: Int? = nil, priority: Int = 0, stages: [StageSpec], queueTimeoutSec: Int? = nil,
                execTimeoutSec: Int = JobDefaults.standard.execTimeoutSec,
                leaseTTLSec: Int = JobDefaults.standard.leaseTTLSec, ttlSec: Int = JobDefaults.standard.ttlSec,
                retry: RetryPolicy = .standard, artifactURI: String? = nil, payload: JSONValue = .object([:])) {
        self.id = id
        self.idempotencyKey = idempotencyKey
        self.dedupeWindowSec = dedupeWindowSec
        self.lane = lane
        self.sessionKey = sessionKey
        self.regionAffinity = regionAffinity
        self.regionFallbackAfterSec = regionFallbackAfterSec
        self.priority = priority
        self.stages = stages
        self.queueTimeoutSec = queueTimeoutSec
        self.execTimeoutSec = execTimeoutSec
        self.leaseTTLSec = leaseTTLSec
        self.ttlSec = ttlSec
        self.retry = retry
        self.artifactURI = artifactURI
        self.payload = payload
    }

    /// The execution timeout of stage `index`.
    public func timeout(ofStage index: Int) -> Int {
        stages[index].timeoutSec ?? execTimeoutSec
    }

    /// Which nodes may run stage `index`: its own region and tags, the job's region otherwise.
    public func placement(ofStage index: Int) -> Placement {
        guard stages.indices.contains(index) else { return Placement(region: regionAffinity) }
        let stage = stages[index]
        return Placement(region: stage.regionAffinity ?? regionAffinity, tags: stage.nodeTags)
    }
}

/// Defaults applied to envelope fields that are absent. Configurable per deployment
/// (`defaults:` in baton.yaml); the built-in values are documented in the README.
public struct JobDefaults: Sendable, Hashable {
    public var lane = "main"
    public var dedupeWindowSec = 3600
    public var queueTimeoutSec: Int? = nil
    public var execTimeoutSec = 3600
    public var leaseTTLSec = 60
    public var ttlSec = 86_400
    public var retry = RetryPolicy.standard

    public init() {}

    public static let standard = JobDefaults()
}
