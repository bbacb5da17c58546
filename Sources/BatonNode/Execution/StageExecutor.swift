import BatonCore
import BatonStore
import Foundation
import Synchronization

/// Why a running stage was stopped before it finished.
public enum AbortReason: Sendable, Hashable {
    /// The lease is gone (expired and taken by another node, or refused): stop, write nothing.
    case leaseLost(String)
    /// An operator cancelled the job: stop, write nothing (the store already recorded it).
    case cancelled(String)
    /// The node is shutting down and the drain timeout passed: stop and release the lease.
    case shutdown
}

/// A one-time signal that a stage must stop. The first reason wins.
public final class AbortSignal: Sendable {
    private struct State {
        var reason: AbortReason?
        var waiters: [UInt64: CheckedContinuation<AbortReason?, Never>] = [:]
        var next: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    public var reason: AbortReason? { state.withLock { $0.reason } }

    public func trigger(_ reason: AbortReason) {
        let waiters = state.withLock { state -> [CheckedContinuation<AbortReason?, Never>] in
            guard state.reason == nil else { return [] }
            state.reason = reason
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: reason) }
    }

    /// Returns the reason once triggered, or nil if the waiting task is cancelled first.
    public func wait() async -> AbortReason? {
        let id = state.withLock { state -> UInt64 in
            state.next &+= 1
            return state.next
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<AbortReason?, Never>) in
                let immediate = state.withLock { state -> AbortReason?? in
                    if let reason = state.reason { return .some(reason) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = continuation
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: nil)
        }
    }
}

/// Everything an executor needs to run one stage of one attempt.
public struct StageContext: Sendable {
    public var lease: Lease
    public var abort: AbortSignal
    /// Where full output goes (one folder per job).
    public var logDirectory: String
    /// Bytes of stdout/stderr kept with the attempt record (the tail).
    public var captureBytes: Int
    /// Grace between SIGTERM and SIGKILL when a stage is stopped.
    public var killGraceSec: Double

    public init(lease: Lease, abort: AbortSignal, logDirectory: String, captureBytes: Int, killGraceSec: Double = 2) {
        self.lease = lease
        self.abort = abort
        self.logDirectory = logDirectory
        self.captureBytes = captureBytes
        self.killGraceSec = killGraceSec
    }

    public var timeoutSec: Int { lease.spec.timeout(ofStage: lease.stageIndex) }

    /// The failure of a stage that ran out of time: `exec_timeout`, or `upload_timeout` for
    /// stages marked `timeout_class: upload`. Transient: the next attempt may be faster.
    public func timeoutFailure(_ detail: String = "") -> Failure {
        let what = lease.stage.timeoutClass == .upload ? "upload stage" : "stage"
        return .transient(lease.stage.timeoutClass.reason, "\(what) exceeded its timeout of \(timeoutSec) s\(detail)")
    }

    /// Variables every stage sees.
    public var batonEnvironment: [String: String] {
        [
            "BATON_JOB_ID": lease.jobID,
            "BATON_ATTEMPT": String(lease.attempt),
            "BATON_STAGE": lease.stage.name,
            "BATON_STAGE_INDEX": String(lease.stageIndex),
            "BATON_NODE_ID": lease.nodeID,
            "BATON_FENCE": String(lease.fence),
        ]
    }
}

/// How a stage ended.
public enum StageResult: Sendable, Hashable {
    case succeeded(AttemptReport)
    case failed(Failure, AttemptReport)
    case aborted(AbortReason, AttemptReport)
}

/// Runs one kind of stage (`shell`, `noop`, `sleep`, `http`, later `llm`).
public protocol StageExecutor: Sendable {
    func execute(_ context: StageContext) async -> StageResult
}

/// Picks the executor for a stage.
public struct ExecutorRegistry: Sendable {
    public var shell: any StageExecutor
    public var noop: any StageExecutor
    public var sleep: any StageExecutor
    public var http: any StageExecutor
    /// Needs the store (shared cooldowns, token spend) and the providers: a node builds it
    /// from its configuration; without one, `llm` stages fail as transient on this node.
    public var llm: any StageExecutor

    public init(shell: any StageExecutor = ShellExecutor(), noop: any StageExecutor = NoopExecutor(),
                sleep: any StageExecutor = SleepExecutor(), http: any StageExecutor = HTTPExecutor(),
                llm: any StageExecutor = UnavailableExecutor(kind: "llm")) {
        self.shell = shell
        self.noop = noop
        self.sleep = sleep
        self.http = http
        self.llm = llm
    }

    public static let standard = ExecutorRegistry()

    public func executor(for run: StageRun) -> any StageExecutor {
        switch run {
        case .shell: shell
        case .noop: noop
        case .sleep: sleep
        case .http: http
        case .llm: llm
        }
    }
}

/// Stands in for an executor this node was not given: the stage fails as transient, so a
/// node that has it may run the next attempt.
public struct UnavailableExecutor: StageExecutor {
    public let kind: String
    public init(kind: String) { self.kind = kind }

    public func execute(_ context: StageContext) async -> StageResult {
        .failed(.transient("executor_unavailable", "this node cannot run \(kind) stages"), .empty)
    }
}

public struct NoopExecutor: StageExecutor {
    public init() {}
    public func execute(_ context: StageContext) async -> StageResult { .succeeded(.empty) }
}

/// Sleeps for the stage's seconds, honouring the stage timeout and aborts.
public struct SleepExecutor: StageExecutor {
    public init() {}

    public func execute(_ context: StageContext) async -> StageResult {
        guard case .sleep(let seconds) = context.lease.stage.run else {
            return .failed(.fatal("wrong_executor", "sleep executor given a \(context.lease.stage.run.kind) stage"), .empty)
        }
        let timeout = Double(context.timeoutSec)
        enum Outcome: Sendable { case done, timedOut, aborted(AbortReason) }
        let finishesAt = ContinuousClock.now + .milliseconds(Int64(min(seconds, timeout) * 1000))
        let outcome = await withTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                do { try await Task.sleep(for: .milliseconds(Int64(min(seconds, timeout) * 1000))) } catch { return nil }
                return seconds > timeout ? .timedOut : .done
            }
            group.addTask { await context.abort.wait().map(Outcome.aborted) }
            let first = await group.next() ?? nil
            group.cancelAll()
            // Work that already finished is reported as finished, even if an abort arrived at
            // the same moment (a node resumed after a stall): the store's fencing decides.
            if case .aborted? = first, ContinuousClock.now >= finishesAt {
                return seconds > timeout ? Outcome.timedOut : .done
            }
            return first ?? .done
        }
        switch outcome {
        case .done: return .succeeded(.empty)
        case .timedOut: return .failed(context.timeoutFailure(), .empty)
        case .aborted(let reason): return .aborted(reason, .empty)
        }
    }
}
