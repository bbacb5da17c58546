import BatonCore
import Foundation

/// What `enqueue` did with one envelope.
public struct EnqueueResult: Sendable, Hashable {
    public var jobID: String
    /// True when an earlier job with the same idempotency key inside its dedupe window was
    /// returned instead of creating a new one.
    public var deduplicated: Bool
    /// True when the job was stored held behind its key's human gate (state `gated`).
    public var gated: Bool

    public init(jobID: String, deduplicated: Bool, gated: Bool = false) {
        self.jobID = jobID
        self.deduplicated = deduplicated
        self.gated = gated
    }
}

/// A node asking for work.
public struct ClaimRequest: Sendable, Hashable {
    public var nodeID: String
    public var region: String?
    public var tags: [String]
    /// How many jobs the node can start now (its free capacity).
    public var limit: Int

    public init(nodeID: String, region: String? = nil, tags: [String] = [], limit: Int) {
        self.nodeID = nodeID
        self.region = region
        self.tags = tags
        self.limit = limit
    }
}

/// The right of one node to run one job's current stage until `expiresAt`.
/// Every write made under a lease carries its fencing token; the store refuses a write whose
/// token is not the job's current one.
public struct Lease: Sendable, Hashable {
    public var jobID: String
    public var nodeID: String
    /// Monotonic per job: incremented by every claim.
    public var fence: Int64
    /// The counted attempt this lease runs (1-based).
    public var attempt: Int
    public var stageIndex: Int
    public var expiresAt: Date
    public var spec: JobSpec
    /// What the stages before this one handed on.
    public var outputs: JobOutputs
    /// Where the holding node runs (its region and tags): a next stage it may not run is
    /// handed to another node instead of continuing here.
    public var node: NodePlacement
    /// How long the job waited to be claimed (ready → claimed), for the claim that made this
    /// lease; nil for a stage that followed on the same node.
    public var waitMs: Int64?
    /// For a stage handed over by another node: how long from the handoff to this claim.
    public var handoffMs: Int64?

    public init(jobID: String, nodeID: String, fence: Int64, attempt: Int, stageIndex: Int, expiresAt: Date, spec: JobSpec,
                outputs: JobOutputs = .empty, node: NodePlacement = NodePlacement(), waitMs: Int64? = nil,
                handoffMs: Int64? = nil) {
        self.waitMs = waitMs
        self.handoffMs = handoffMs
        self.jobID = jobID
        self.nodeID = nodeID
        self.fence = fence
        self.attempt = attempt
        self.stageIndex = stageIndex
        self.expiresAt = expiresAt
        self.spec = spec
        self.outputs = outputs
        self.node = node
    }

    public var stage: StageSpec { spec.stages[stageIndex] }

    /// Whether the stage after this one runs on here rather than being handed to another
    /// node: it asks for what this stage asked for (the node got this stage, by placement or
    /// by region fallback), or this node has what it asks for.
    public var nextStageContinuesHere: Bool {
        let next = stageIndex + 1
        guard next < spec.stages.count else { return true }
        let placement = spec.placement(ofStage: next)
        return placement == spec.placement(ofStage: stageIndex) || node.mayRun(placement)
    }
}

/// A node's region and tags, as stage placement sees them.
public struct NodePlacement: Sendable, Hashable {
    public var region: String?
    public var tags: [String]

    public init(region: String? = nil, tags: [String] = []) {
        self.region = region
        self.tags = tags
    }

    public func mayRun(_ placement: Placement) -> Bool { placement.admits(region: region, tags: tags) }
}

extension ClaimRequest {
    public var placement: NodePlacement { NodePlacement(region: region, tags: tags) }
}

/// What an executor observed while running an attempt, kept with the attempt record.
public struct AttemptReport: Sendable, Hashable {
    public var exitCode: Int32?
    /// Bounded excerpts of the stage's output (the tail, when it was longer).
    public var stdout: String?
    public var stderr: String?
    /// Where the full output lives on the node that ran it.
    public var logPath: String?
    /// The response status of an HTTP stage.
    public var httpStatus: Int?
    /// What the stage handed on (`$BATON_OUTPUT`), recorded when it succeeded.
    public var output: StageOutput?

    public init(exitCode: Int32? = nil, stdout: String? = nil, stderr: String? = nil, logPath: String? = nil,
                httpStatus: Int? = nil, output: StageOutput? = nil) {
        self.exitCode = exitCode
        self.stdout = stdout
        self.stderr = stderr
        self.logPath = logPath
        self.httpStatus = httpStatus
        self.output = output
    }

    public static let empty = AttemptReport()
}

/// A finished stage reported under a lease.
public struct Completion: Sendable, Hashable {
    public var lease: Lease
    public var report: AttemptReport

    public init(lease: Lease, report: AttemptReport = .empty) {
        self.lease = lease
        self.report = report
    }
}

/// What the store did with a completion.
public enum CompletionResult: Sendable, Hashable {
    /// The job's last stage finished: the job succeeded.
    case succeeded
    /// More stages follow; the node keeps the lease (renewed) and runs the next one.
    case nextStage(Lease)
    /// More stages follow that this node may not run (region or tags): the job was queued for
    /// a node that may; this node's lease ended.
    case handedOff(stage: String)
    /// The lease was no longer current; nothing was written but the refusal itself.
    case refused(BatonError)
}

/// What the store did with a failed attempt.
public enum FailureResult: Sendable, Hashable {
    case retrying(at: Date, delaySec: Double)
    /// `gate` is set when this dead letter made its idempotency key's human gate hold.
    case deadLettered(reason: String, gate: GateRecord? = nil)
    case expired(reason: String)
    case cancelled
}

/// What a heartbeat found.
public enum HeartbeatResult: Sendable, Hashable {
    case extended(until: Date)
    /// The lease is gone: expired and rescued, cancelled, or taken by another node. The node
    /// must stop the work; any later write with this lease will be refused.
    case lost(reason: String)
}

/// What one pass of the rescuer did.
public struct RescueReport: Sendable, Hashable {
    /// Running jobs whose lease expired, queued again.
    public var requeued: [String] = []
    /// Running jobs whose lease expired on their last attempt, dead-lettered.
    public var deadLettered: [String] = []
    /// Waiting jobs whose ttl or queue timeout passed.
    public var expired: [String] = []
    /// Nodes declared dead in this pass (their jobs are among the lists above).
    public var deadNodes: [String] = []
    /// Human gates that this pass's dead letters made hold.
    public var gatesHeld: [GateRecord] = []

    public init(requeued: [String] = [], deadLettered: [String] = [], expired: [String] = [], deadNodes: [String] = [],
                gatesHeld: [GateRecord] = []) {
        self.requeued = requeued
        self.deadLettered = deadLettered
        self.expired = expired
        self.deadNodes = deadNodes
        self.gatesHeld = gatesHeld
    }

    public var isEmpty: Bool { requeued.isEmpty && deadLettered.isEmpty && expired.isEmpty && deadNodes.isEmpty }
}

/// A job as stored.
public struct JobRecord: Sendable, Hashable {
    public var spec: JobSpec
    public var state: JobState
    /// Counted attempts so far (released attempts are not counted).
    public var attempts: Int
    public var fence: Int64
    public var stageIndex: Int
    public var enqueuedAt: Date
    public var updatedAt: Date
    /// When the job may next be claimed (queued: enqueue time; retry_wait: end of backoff).
    public var runAt: Date
    public var leaseNode: String?
    public var leaseExpiresAt: Date?
    /// The node that held the job last (running now or before), and when it was last heard
    /// from about it: claim, heartbeat, stage completion, failure or release.
    public var lastNode: String?
    public var lastNodeAt: Date?
    public var retryCount: Int
    public var cumulativeBackoffSec: Double
    /// The reason of the last failure, expiry or cancellation.
    public var lastErrorClass: ErrorClass?
    public var lastReason: String?
    public var lastMessage: String?
    public var finishedAt: Date?
    /// What the finished stages handed on.
    public var outputs: JobOutputs = .empty

    public init(spec: JobSpec, state: JobState, attempts: Int, fence: Int64, stageIndex: Int, enqueuedAt: Date,
                updatedAt: Date, runAt: Date, leaseNode: String? = nil, leaseExpiresAt: Date? = nil,
                lastNode: String? = nil, lastNodeAt: Date? = nil, retryCount: Int = 0, cumulativeBackoffSec: Double = 0, lastErrorClass: ErrorClass? = nil,
                lastReason: String? = nil, lastMessage: String? = nil, finishedAt: Date? = nil, outputs: JobOutputs = .empty) {
        self.outputs = outputs
        self.spec = spec
        self.state = state
        self.attempts = attempts
        self.fence = fence
        self.stageIndex = stageIndex
        self.enqueuedAt = enqueuedAt
        self.updatedAt = updatedAt
        self.runAt = runAt
        self.leaseNode = leaseNode
        self.leaseExpiresAt = leaseExpiresAt
        self.lastNode = lastNode
        self.lastNodeAt = lastNodeAt
        self.retryCount = retryCount
        self.cumulativeBackoffSec = cumulativeBackoffSec
        self.lastErrorClass = lastErrorClass
        self.lastReason = lastReason
        self.lastMessage = lastMessage
        self.finishedAt = finishedAt
    }

    public var id: String { spec.id }
    /// Stages finished so far (a chain resumes after the last of them).
    public var lastSuccessfulStage: String? { stageIndex > 0 ? spec.stages[stageIndex - 1].name : nil }
}

/// One claim of a job and how it ended.
public struct AttemptRecord: Sendable, Hashable {
    public enum Outcome: String, Sendable, Hashable, Codable {
        case running, succeeded, failed, released, leaseExpired = "lease_expired", cancelled
    }

    public var jobID: String
    public var fence: Int64
    public var attempt: Int
    public var stageIndex: Int
    public var stageName: String
    public var nodeID: String
    public var startedAt: Date
    public var finishedAt: Date?
    public var outcome: Outcome
    public var errorClass: ErrorClass?
    public var reason: String?
    public var message: String?
    public var report: AttemptReport
    /// For the first stage run after a handoff: previous stage finished → this one started.
    public var handoffMs: Int64?

    public init(jobID: String, fence: Int64, attempt: Int, stageIndex: Int, stageName: String, nodeID: String,
                startedAt: Date, finishedAt: Date? = nil, outcome: Outcome, errorClass: ErrorClass? = nil,
                reason: String? = nil, message: String? = nil, report: AttemptReport = .empty, handoffMs: Int64? = nil) {
        self.handoffMs = handoffMs
        self.jobID = jobID
        self.fence = fence
        self.attempt = attempt
        self.stageIndex = stageIndex
        self.stageName = stageName
        self.nodeID = nodeID
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.outcome = outcome
        self.errorClass = errorClass
        self.reason = reason
        self.message = message
        self.report = report
    }
}

/// A job, its attempts and its event log.
public struct JobDetail: Sendable, Hashable {
    public var job: JobRecord
    public var attempts: [AttemptRecord]
    public var events: [JobEvent]

    public init(job: JobRecord, attempts: [AttemptRecord], events: [JobEvent]) {
        self.job = job
        self.attempts = attempts
        self.events = events
    }
}

/// Which jobs `jobs(matching:)` returns, newest first.
public struct JobFilter: Sendable, Hashable {
    public var states: [JobState]
    public var lane: String?
    public var limit: Int

    public init(states: [JobState] = [], lane: String? = nil, limit: Int = 100) {
        self.states = states
        self.lane = lane
        self.limit = limit
    }
}

/// What a period of work looked like (see `JobStore.activity(since:)`).
public struct ActivityStats: Sendable, Hashable {
    public var attempts: Int
    /// Attempts that failed or whose lease expired.
    public var failedAttempts: Int
    public var deadLetters: Int

    public init(attempts: Int, failedAttempts: Int, deadLetters: Int) {
        self.attempts = attempts
        self.failedAttempts = failedAttempts
        self.deadLetters = deadLetters
    }
}
