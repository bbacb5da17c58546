import BatonCore
import Foundation

/// One stage of a job as a record: what `baton show` lists and the dashboard draws. Derived
/// from the job and its attempts (one attempt row per stage run), so every engine gives the
/// same answer.
public struct StageRecord: Sendable, Hashable {
    public enum State: String, Sendable, Hashable {
        /// Not reached yet.
        case pending
        /// Waiting to run (queued, in backoff, or handed to another node).
        case waiting
        case running
        case succeeded
        /// The job ended at this stage (dead, expired or cancelled).
        case failed
    }

    public var index: Int
    public var name: String
    public var kind: String
    public var state: State
    /// Runs of this stage that were counted (released runs are not).
    public var attempts: Int
    /// The node of the latest run.
    public var node: String?
    public var startedAt: Date?
    public var finishedAt: Date?
    public var exitCode: Int32?
    public var httpStatus: Int?
    /// What the stage handed on, kept in the store with the job.
    public var output: StageOutput?
    /// The latest error of this stage (class and reason).
    public var lastErrorClass: ErrorClass?
    public var lastReason: String?
    /// Previous stage finished → this stage started, when it ran on another node.
    public var handoffMs: Int64?
    /// Where the latest run's full output lives on its node.
    public var logPath: String?
}

extension JobDetail {
    /// The job's stages with their state, runs, nodes, times, status and output.
    public var stages: [StageRecord] {
        let spec = job.spec
        return spec.stages.enumerated().map { index, stage in
            let runs = attempts.filter { $0.stageIndex == index }
            let counted = runs.filter { $0.outcome != .released }
            let latest = runs.last
            let success = runs.last { $0.outcome == .succeeded }
            let failure = runs.last { $0.outcome == .failed || $0.outcome == .leaseExpired || $0.outcome == .cancelled }
            let state: StageRecord.State
            if success != nil && (index < job.stageIndex || job.state == .succeeded) {
                state = .succeeded
            } else if index == job.stageIndex {
                switch job.state {
                case .running: state = .running
                case .queued, .retryWait, .gated: state = runs.isEmpty ? .pending : .waiting
                case .dead, .expired, .cancelled: state = .failed
                case .succeeded: state = .succeeded
                }
            } else {
                state = .pending
            }
            return StageRecord(
                index: index, name: stage.name, kind: stage.run.kind, state: state, attempts: counted.count,
                node: latest?.nodeID, startedAt: runs.first?.startedAt, finishedAt: success?.finishedAt,
                exitCode: (success ?? latest)?.report.exitCode, httpStatus: (success ?? latest)?.report.httpStatus,
                output: success?.report.output ?? job.outputs.stages.first { $0.stage == stage.name },
                lastErrorClass: failure?.errorClass, lastReason: failure?.reason,
                handoffMs: runs.compactMap(\.handoffMs).last, logPath: latest?.report.logPath)
        }
    }
}

/// A human gate on an idempotency key: once jobs with the key were dead-lettered twice within
/// the gate window, new jobs with that key are held (`gated`) until someone releases the gate.
public struct GateRecord: Sendable, Hashable {
    public enum State: String, Sendable, Hashable { case held, released }

    public var key: String
    public var state: State
    public var heldSince: Date
    /// Why it holds, for people: which jobs died and why.
    public var reason: String
    /// The dead letters that made it hold.
    public var deadJobs: [String]
    /// Jobs waiting behind it now.
    public var heldJobs: Int
    public var releasedAt: Date?

    public init(key: String, state: State, heldSince: Date, reason: String, deadJobs: [String], heldJobs: Int = 0,
                releasedAt: Date? = nil) {
        self.key = key
        self.state = state
        self.heldSince = heldSince
        self.reason = reason
        self.deadJobs = deadJobs
        self.heldJobs = heldJobs
        self.releasedAt = releasedAt
    }
}

/// What releasing a gate did.
public struct GateRelease: Sendable, Hashable {
    public var gate: GateRecord
    /// The held jobs queued again, oldest first.
    public var queued: [String]

    public init(gate: GateRecord, queued: [String]) {
        self.gate = gate
        self.queued = queued
    }
}

/// A dead letter as an on-call engineer reads it: what was asked, how far it got, what was
/// tried, every error, and where the logs are.
public struct DeadLetterReport: Sendable, Hashable {
    public struct Error: Sendable, Hashable {
        public var stage: String
        public var attempt: Int
        public var node: String
        public var at: Date
        public var errorClass: ErrorClass?
        public var reason: String
        public var message: String?
        public var exitCode: Int32?
        public var httpStatus: Int?
        public var logPath: String?
    }

    public var job: JobRecord
    public var lastSuccessfulStage: String?
    /// The stage it stopped at.
    public var failedStage: String?
    public var attemptsUsed: Int
    public var attemptBudget: Int
    public var retryCount: Int
    public var cumulativeBackoffSec: Double
    public var errors: [Error]
    /// Full output of each run, as `node:path`.
    public var logs: [String]

    public init(_ detail: JobDetail) {
        job = detail.job
        lastSuccessfulStage = detail.job.lastSuccessfulStage
        failedStage = detail.job.spec.stages.indices.contains(detail.job.stageIndex)
            ? detail.job.spec.stages[detail.job.stageIndex].name : nil
        attemptsUsed = detail.job.attempts
        attemptBudget = detail.job.spec.retry.maxAttempts
        retryCount = detail.job.retryCount
        cumulativeBackoffSec = detail.job.cumulativeBackoffSec
        errors = detail.attempts.filter { $0.reason != nil && $0.outcome != .succeeded && $0.outcome != .released }.map {
            Error(stage: $0.stageName, attempt: $0.attempt, node: $0.nodeID, at: $0.finishedAt ?? $0.startedAt,
                  errorClass: $0.errorClass, reason: $0.reason ?? "", message: $0.message, exitCode: $0.report.exitCode,
                  httpStatus: $0.report.httpStatus, logPath: $0.report.logPath)
        }
        logs = detail.attempts.compactMap { attempt in attempt.report.logPath.map { "\(attempt.nodeID):\($0)" } }
        // A job that expired waiting was never run: its reason is on the job.
        if errors.isEmpty, let reason = detail.job.lastReason {
            errors.append(Error(stage: failedStage ?? "", attempt: detail.job.attempts, node: detail.job.lastNode ?? "",
                                at: detail.job.finishedAt ?? detail.job.updatedAt, errorClass: detail.job.lastErrorClass,
                                reason: reason, message: detail.job.lastMessage))
        }
    }
}

extension Placement {
    /// The `handed_off` event's detail: where the next stage may run.
    public var handoffDetail: [String: String] {
        var detail: [String: String] = [:]
        if let region { detail["region_affinity"] = region }
        if !tags.isEmpty { detail["node_tags"] = tags.joined(separator: ",") }
        return detail
    }
}

/// Where a redrive resumes a dead letter: at the stage that failed, keeping what the stages
/// before it handed on, or (`--from-start`) at the first stage with no outputs.
public struct RedrivePlan: Sendable {
    public let stageIndex: Int
    public let placement: Placement
    public let outputs: JobOutputs
    public let detail: [String: String]

    public init(_ job: JobRecord, fromStart: Bool) {
        let index = fromStart ? 0 : min(job.stageIndex, job.spec.stages.count - 1)
        stageIndex = index
        placement = job.spec.placement(ofStage: index)
        outputs = fromStart ? .empty : job.outputs.keeping(stages: Set(job.spec.stages[..<index].map(\.name)))
        detail = ["from_state": job.state.rawValue, "last_reason": job.lastReason ?? "",
                  "from_start": fromStart ? "true" : "false", "resume_stage": job.spec.stages[index].name]
    }
}

/// The handover log of one job as a timeline: every claim (with the node it came from and
/// the gap since that node was last heard from), every loss and rescue, every release.
public enum Handover {
    /// One line a handover event, each starting with its offset from the job's enqueue
    /// (`+4.1s`, padded to 10 characters). Empty when the job never changed hands.
    public static func timeline(_ detail: JobDetail) -> [String] {
        let start = detail.job.enqueuedAt
        var lines: [String] = []
        func ms(_ value: String?) -> String { value.flatMap(Double.init).map { DurationText.format($0 / 1000) } ?? "?" }
        for event in detail.events {
            let at = "+" + DurationText.format(event.at.timeIntervalSince(start))
            let stage = event.stage.map { " stage \($0)" } ?? ""
            let attempt = event.attempt.map { " attempt \($0)" } ?? ""
            let d = event.detail
            let text: String
            switch event.kind {
            case .claimed:
                var t = "claimed by \(event.nodeID ?? "?")\(stage)\(attempt)"
                if let from = d["from_node"] {
                    t += from == event.nodeID ? ", again after \(ms(d["handover_ms"]))" : ", handed over from \(from) after \(ms(d["handover_ms"]))"
                } else {
                    t += " after waiting \(ms(d["wait_ms"]))"
                }
                if d["region_fallback"] == "true" {
                    t += " (region fallback: wanted \(d["region_affinity"] ?? "?"), node in \(d["node_region"].flatMap { $0.isEmpty ? nil : $0 } ?? "no region"))"
                }
                text = t
            case .heartbeatLost:
                text = "lost by \(event.nodeID ?? d["from_node"] ?? "?")\(stage): \(d["reason"] ?? "lease_expired"), silent \(ms(d["silent_ms"]))"
            case .rescued:
                text = "rescued from \(d["from_node"] ?? "?"), queued again"
            case .released:
                text = "released by \(event.nodeID ?? "?")\(stage) (\(d["reason"] ?? "-")), queued again"
            case .completed:
                text = "completed on \(event.nodeID ?? "?")"
            case .deadLettered where d["from_node"] != nil:
                text = "dead-lettered after losing \(d["from_node"] ?? "?") (\(d["reason"] ?? "-"))"
            default:
                continue
            }
            lines.append(at.padding(toLength: 10, withPad: " ", startingAt: 0) + text)
        }
        // Only worth showing when the job changed hands or was lost at least once.
        let claims = detail.events.filter { $0.kind == .claimed }.count
        return claims > 1 || lines.contains(where: { $0.contains("lost by") }) ? lines : []
    }
}

/// Durations as people read them: `12ms`, `4.1s`, `3m20s`, `2h5m`.
public enum DurationText {
    public static func format(_ seconds: Double) -> String {
        let s = max(0, seconds)
        if s < 1 { return "\(Int((s * 1000).rounded()))ms" }
        if s < 60 { return String(format: "%.1fs", s) }
        if s < 3600 { return "\(Int(s) / 60)m\(Int(s) % 60)s" }
        return "\(Int(s) / 3600)h\((Int(s) % 3600) / 60)m"
    }
}
