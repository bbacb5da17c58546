import BatonCore
import BatonStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// A worker node: claims jobs up to its capacity, runs their stages, renews their leases and
/// takes back the work of lost nodes. Runs as a `Service`; on graceful shutdown it stops
/// claiming, lets in-flight jobs finish within the drain timeout, then stops the rest and
/// releases their leases (never marking them failed).
public final class WorkerNode: Service, Sendable {
    public let options: WorkerOptions
    /// What this process registers as: the node id plus a per-process instance.
    public let identity: NodeInfo
    let store: any JobStore
    let completions: CompletionBatcher
    let executors: ExecutorRegistry
    let alerts: Alerts
    let logger: Logger
    let state = Mutex(State())
    /// Wakes the claim loop when a slot frees or shutdown begins.
    let wake = WorkSignal()
    /// Wakes the drain when the last job finishes.
    let idle = WorkSignal()
    /// Wakes the registry and rescue loops at shutdown (not on every finished job, which would
    /// turn the rescue pass into a query per completion).
    let registryWake = WorkSignal()
    /// Paces "lane wait exceeded" lines.
    let waitReports = Throttle(intervalMs: 1000)

    struct Active: Sendable {
        var lease: Lease
        let abort: AbortSignal
        var nextHeartbeat: ContinuousClock.Instant
        /// The lease's expiry as last confirmed by the store, on this process's clock.
        var confirmedUntil: ContinuousClock.Instant
    }

    struct State: Sendable {
        var active: [String: Active] = [:]
        var draining = false
        var stopped = false
        var completed = 0
        /// Set when another process took over this node id: this one must stop.
        var replacedBy: NodeRecord?
    }

    public init(store: any JobStore, options: WorkerOptions, executors: ExecutorRegistry = .standard,
                alerts: Alerts = .logOnly, logger: Logger = Logger(label: "baton.worker")) {
        self.alerts = alerts
        self.store = store
        self.completions = CompletionBatcher(store: store)
        self.options = options
        self.identity = NodeInfo(id: options.nodeID, host: LocalHost.name, pid: LocalHost.pid, region: options.region,
                                 tags: options.tags, capacity: options.capacity, version: BatonVersion.current,
                                 configHash: options.configHash, heartbeatIntervalSec: options.heartbeatIntervalSec,
                                 deadAfterSec: NodeHealth.deadAfter(intervalSec: options.heartbeatIntervalSec,
                                                                    missed: options.deadAfterMissed))
        self.executors = executors
        var logger = logger
        logger[metadataKey: "node.id"] = .string(options.nodeID)
        self.logger = logger
    }

    /// Jobs this node has seen through to success since it started.
    public var succeededCount: Int { state.withLock { $0.completed } }

    /// Jobs running on this node now.
    public var inFlight: Int { state.withLock { $0.active.count } }

    /// Begins a graceful stop (what SIGTERM does through the service group).
    public func beginDrain() {
        state.withLock { $0.draining = true }
        wake.notify()
        registryWake.notify()
    }

    /// Joins the cluster, then runs until a graceful shutdown. Throws `conflict` when another
    /// live process holds this node id (at start, or when it took the id over later).
    public func run() async throws {
        try await join()
        if let caps = options.laneCaps {
            do {
                try await publish(laneCaps: caps)
            } catch {
                logger.error("could not publish the lane caps; the cluster keeps the caps it had", metadata: ["error": "\(error)"])
            }
        }
        logger.info("worker started", metadata: ["capacity": .stringConvertible(options.capacity),
                                                 "region": .string(options.region ?? "-"),
                                                 "instance": .string(identity.instance)])
        await withDiscardingTaskGroup { group in
            group.addTask { await self.heartbeatLoop() }
            group.addTask { await self.rescueLoop() }
            group.addTask { await self.registryLoop() }
            await withGracefulShutdownHandler {
                await self.claimLoop(group: &group)
            } onGracefulShutdown: {
                self.beginDrain()
            }
            await self.drain()
            self.state.withLock { $0.stopped = true }
            self.wake.notify()
            self.registryWake.notify()
        }
        if let holder = state.withLock({ $0.replacedBy }) {
            throw Self.conflict(identity.id, held: holder, now: Date(), after: true)
        }
        do {
            try await store.deregisterNode(id: identity.id, instance: identity.instance)
        } catch {
            logger.warning("could not mark the node stopped in the registry; it will be declared dead instead",
                           metadata: ["error": "\(error)"])
        }
        logger.info("worker stopped")
    }

    // MARK: Lanes

    /// Publishes lane caps to the cluster (at start, and on a configuration reload): the new
    /// caps apply to the next claim of every node; running jobs are not touched.
    public func publish(laneCaps caps: [String: Int]) async throws {
        try await store.setLaneCaps(caps)
        logger.info("lane caps published", metadata: [
            "caps": .string(caps.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")),
        ])
    }

    /// Logs a job that waited longer than `wait_warn_ms` to start: its lane, session, wait and
    /// position (how many of the lane's jobs started while it waited, itself included). At
    /// most one such line a second per node: a backlog must not turn into a log flood.
    private func reportWait(_ lease: Lease) async {
        guard let wait = lease.waitMs, options.waitWarnMs > 0, wait > Int64(options.waitWarnMs),
              waitReports.due(now: Date().epochMilliseconds) else { return }
        let readySince = Date().addingTimeInterval(-Double(wait) / 1000)
        var metadata: Logger.Metadata = [
            "job.id": .string(lease.jobID), "lane": .string(lease.spec.lane), "wait_ms": .stringConvertible(wait),
            "session": .string(lease.spec.sessionKey ?? "-"),
        ]
        if let position = try? await store.startsInLane(lease.spec.lane, since: readySince) {
            metadata["position"] = .stringConvertible(position)
        }
        logger.warning("lane wait exceeded", metadata: metadata)
    }

    // MARK: Registry

    /// Registers this process under its node id. When the registry shows the id held by a
    /// process on this host that no longer exists (a crash, `kill -9`, a reboot), the
    /// registration replaces it and the jobs it held run again at once.
    private func join() async throws {
        var replacing: String?
        while true {
            switch try await store.registerNode(identity, replacing: replacing) {
            case .registered(_, let previous, let rescued):
                if let previous {
                    logger.notice("took over the node id from an earlier process", metadata: [
                        "previous.instance": .string(previous.info.instance), "previous.pid": .stringConvertible(previous.info.pid),
                        "previous.state": .string(previous.state.rawValue), "rescued": .stringConvertible(rescued.count),
                    ])
                }
                return
            case .conflict(let existing):
                let sameHost = existing.info.host == identity.host
                let gone = existing.info.pid == identity.pid || !LocalHost.processExists(existing.info.pid)
                guard replacing == nil, sameHost, gone else {
                    throw Self.conflict(identity.id, held: existing, now: Date(), after: false)
                }
                replacing = existing.info.instance
            }
        }
    }

    static func conflict(_ id: String, held existing: NodeRecord, now: Date, after: Bool) -> BatonError {
        let silence = String(format: "%.1f", max(0, now.timeIntervalSince(existing.lastSeen)))
        let holder = "pid \(existing.info.pid) on host \(existing.info.host), last heartbeat \(silence) s ago"
        let what = after ? "was taken over by another process (\(holder)); this one stopped"
                         : "is already in use by a live process (\(holder))"
        return BatonError(.conflict, field: "node.id",
                          "node id \"\(id)\" \(what). Two processes with one node id would take each other's work; "
                          + "stop the other process, or give this one its own id with node.id, BATON_NODE_ID or --node-id")
    }

    private func registryLoop() async {
        var failures = 0
        var due = ContinuousClock.now + .milliseconds(Int64(options.heartbeatIntervalSec * 1000))
        while !state.withLock({ $0.stopped }) {
            // Short waits, so a stop never waits out a long heartbeat interval.
            let now = ContinuousClock.now
            if now < due {
                let left = due - now
                let seconds = Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18
                await registryWake.wait(upTo: min(0.25, seconds))
                continue
            }
            due = now + .milliseconds(Int64(options.heartbeatIntervalSec * 1000))
            do {
                switch try await store.nodeHeartbeat(identity, inFlight: inFlight) {
                case .ok:
                    failures = 0
                case .revived:
                    failures = 0
                    logger.warning("the cluster had declared this node dead (no heartbeat for its threshold) and ran its jobs elsewhere; registered again")
                case .replaced(let holder):
                    logger.critical("\(Self.conflict(identity.id, held: holder, now: Date(), after: true).message)")
                    let active = state.withLock { state -> [Active] in
                        state.replacedBy = holder
                        return Array(state.active.values)
                    }
                    for job in active { job.abort.trigger(.leaseLost("node id taken over by another process")) }
                    beginDrain()
                    return
                }
            } catch {
                failures += 1
                logger.warning("node heartbeat failed", metadata: ["error": "\(error)", "consecutive": .stringConvertible(failures)])
            }
        }
    }

    // MARK: Claiming

    private func claimLoop(group: inout DiscardingTaskGroup) async {
        var storeErrors = 0
        while true {
            let (running, draining) = state.withLock { ($0.active.count, $0.draining) }
            if draining || Task.isCancelled { return }
            let slots = options.capacity - running
            // While jobs are running, wait for a few slots to free up so that one claim
            // fetches several jobs instead of one transaction per finished job.
            if slots <= 0 || (running > 0 && slots < max(1, options.capacity / 4)) {
                await wake.wait(upTo: options.pollIntervalSec)
                continue
            }
            let leases: [Lease]
            do {
                leases = try await store.claim(ClaimRequest(nodeID: options.nodeID, region: options.region,
                                                            tags: options.tags, limit: slots))
                storeErrors = 0
            } catch {
                storeErrors += 1
                let delay = min(5, 0.1 * pow(2, Double(min(storeErrors, 6))))
                logger.warning("claim failed; retrying", metadata: ["error": "\(error)", "retry_in_sec": "\(delay)"])
                await wake.wait(upTo: delay)
                continue
            }
            for lease in leases {
                if let wait = lease.waitMs { NodeMetrics.queueWait(lane: lease.spec.lane, ms: wait) }
                if let handoff = lease.handoffMs { NodeMetrics.handoff(ms: handoff) }
            }
            for lease in leases where (lease.waitMs ?? 0) > Int64(options.waitWarnMs) && options.waitWarnMs > 0 {
                group.addTask { await self.reportWait(lease) }
            }
            for lease in leases {
                let active = Active(lease: lease, abort: AbortSignal(),
                                    nextHeartbeat: .now + .milliseconds(Int64(Lifecycle.heartbeatInterval(leaseTTLSec: lease.spec.leaseTTLSec) * 1000)),
                                    confirmedUntil: .now + .seconds(lease.spec.leaseTTLSec))
                state.withLock { $0.active[lease.jobID] = active }
                group.addTask { await self.runJob(lease, abort: active.abort) }
            }
            if leases.count < slots {
                await store.waitForWork(upTo: options.pollIntervalSec)
            }
        }
    }

    // MARK: Running one job

    private func runJob(_ initial: Lease, abort: AbortSignal) async {
        var lease = initial
        let jobStart = ContinuousClock.now
        defer {
            let remaining = state.withLock { state -> Int in
                state.active[initial.jobID] = nil
                return state.active.count
            }
            wake.notify()
            if remaining == 0 { idle.notify() }
        }
        while true {
            // Job metadata goes with each message rather than into a copy of the logger:
            // setting it on the handler re-renders its metadata, for every stage of every job
            // (5 % of a worker's CPU on a drain of noop jobs), even when nothing is logged.
            let log = JobLogger(logger, lease)
            log(.debug, "stage started", metadata: ["attempt": .stringConvertible(lease.attempt)])
            let context = StageContext(lease: lease, abort: abort, logDirectory: options.logDirectory,
                                       captureBytes: options.captureBytes, killGraceSec: options.killGraceSec)
            let stageStart = ContinuousClock.now
            let result = await executors.executor(for: lease.stage.run).execute(context)
            NodeMetrics.stage(kind: lease.stage.run.kind, since: stageStart)
            let current = lease
            switch result {
            case .succeeded(let report):
                let completion = await withStoreRetry(current, log) {
                    try await self.completions.complete(Completion(lease: current, report: report))
                }
                switch completion {
                case .nextStage(let next)?:
                    lease = next
                    state.withLock { $0.active[lease.jobID]?.lease = next }
                    continue
                case .succeeded?:
                    state.withLock { $0.completed += 1 }
                    NodeMetrics.job(lane: current.spec.lane, outcome: "succeeded", since: jobStart)
                    log(.debug, "job succeeded")
                case .handedOff(let stage)?:
                    log(.debug, "next stage handed to another node", metadata: ["next_stage": .string(stage)])
                case .refused(let error)?:
                    log(.warning, "completion refused: the lease is stale", metadata: ["reason": .string(error.message)])
                case nil:
                    log(.error, "completion not recorded: the store stayed unreachable until the lease ran out")
                }
            case .failed(let failure, let report):
                log(.info, "stage failed", metadata: ["class": .string(failure.errorClass.rawValue),
                                                   "reason": .string(failure.reason), "message": .string(failure.message)])
                let decision = await withStoreRetry(current, log) {
                    try await self.store.fail(current, failure: failure, report: report)
                }
                if let decision { log(.info, "failure recorded", metadata: ["decision": "\(decision)"]) }
                switch decision {
                case .retrying?: NodeMetrics.retry(reason: failure.reason)
                case .deadLettered?:
                    NodeMetrics.deadLetter(reason: failure.reason)
                    NodeMetrics.job(lane: current.spec.lane, outcome: "dead", since: jobStart)
                case .expired?: NodeMetrics.job(lane: current.spec.lane, outcome: "expired", since: jobStart)
                case .cancelled?: NodeMetrics.job(lane: current.spec.lane, outcome: "cancelled", since: jobStart)
                case nil: break
                }
                if case .deadLettered(_, let gate?)? = decision {
                    alerts.gateHeld(gate, job: current.jobID, nodeID: options.nodeID, logger: logger)
                }
            case .aborted(let reason, _):
                switch reason {
                case .shutdown:
                    _ = await withStoreRetry(current, log) { try await self.store.release(current, reason: "shutdown") }
                    log(.notice, "lease released at shutdown; the job will run again without losing an attempt")
                case .leaseLost(let why):
                    log(.warning, "stage stopped: lease lost", metadata: ["reason": .string(why)])
                case .cancelled(let why):
                    log(.notice, "stage stopped: job cancelled", metadata: ["reason": .string(why)])
                }
            }
            return
        }
    }

    /// Retries a store write through transient store failures for as long as the lease may
    /// still be valid. A stale-lease refusal is final and logged. Returns nil when it gave up.
    private func withStoreRetry<T: Sendable>(_ lease: Lease, _ log: JobLogger,
                                             _ body: @Sendable () async throws -> T) async -> T? {
        var delay = 0.05
        while true {
            do {
                return try await body()
            } catch let error as BatonError where error.code == .staleLease || error.code == .notFound || error.code == .invalidState {
                log(.warning, "write refused", metadata: ["reason": .string(error.message)])
                return nil
            } catch {
                let until = state.withLock { $0.active[lease.jobID]?.confirmedUntil } ?? .now
                if ContinuousClock.now >= until {
                    log(.error, "store write failed and the lease ran out", metadata: ["error": "\(error)"])
                    return nil
                }
                log(.warning, "store write failed; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
                delay = min(2, delay * 2)
            }
        }
    }

    // MARK: Heartbeats

    private func heartbeatLoop() async {
        while !state.withLock({ $0.stopped }) {
            let now = ContinuousClock.now
            let due = state.withLock { state in state.active.values.filter { $0.nextHeartbeat <= now } }
            // A lease this node could not renew in time may already run elsewhere: stop the work.
            for job in due where job.confirmedUntil <= now {
                job.abort.trigger(.leaseLost("lease ran out before a heartbeat reached the store"))
            }
            let renewable = due.filter { $0.confirmedUntil > now }
            if !renewable.isEmpty {
                do {
                    let results = try await store.heartbeat(renewable.map(\.lease))
                    for (job, result) in zip(renewable, results) {
                        switch result {
                        case .extended:
                            let interval = Lifecycle.heartbeatInterval(leaseTTLSec: job.lease.spec.leaseTTLSec)
                            state.withLock {
                                $0.active[job.lease.jobID]?.nextHeartbeat = now + .milliseconds(Int64(interval * 1000))
                                $0.active[job.lease.jobID]?.confirmedUntil = now + .seconds(job.lease.spec.leaseTTLSec)
                            }
                        case .lost(let reason):
                            let abort: AbortReason = reason.contains("cancelled") ? .cancelled(reason) : .leaseLost(reason)
                            job.abort.trigger(abort)
                        }
                    }
                } catch {
                    logger.warning("heartbeat failed", metadata: ["error": "\(error)", "leases": .stringConvertible(renewable.count)])
                    state.withLock { state in
                        for job in renewable { state.active[job.lease.jobID]?.nextHeartbeat = now + .milliseconds(250) }
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: Rescue

    private func rescueLoop() async {
        while true {
            let (draining, stopped) = state.withLock { ($0.draining, $0.stopped) }
            if draining || stopped { return }
            do {
                let report = try await store.rescue()
                NodeMetrics.leaseExpiries(report.requeued.count + report.deadLettered.count)
                for _ in report.deadLettered { NodeMetrics.deadLetter(reason: "lease_expired") }
                for gate in report.gatesHeld {
                    alerts.gateHeld(gate, job: gate.deadJobs.last ?? "", nodeID: options.nodeID, logger: logger)
                }
                for node in report.deadNodes {
                    logger.warning("declared node dead: no heartbeat for its threshold; its jobs run elsewhere",
                                   metadata: ["dead.node": .string(node)])
                }
                if !report.isEmpty {
                    logger.notice("rescued work", metadata: [
                        "requeued": .stringConvertible(report.requeued.count),
                        "dead_lettered": .stringConvertible(report.deadLettered.count),
                        "expired": .stringConvertible(report.expired.count),
                    ])
                }
            } catch {
                logger.warning("rescue failed", metadata: ["error": "\(error)"])
            }
            // Short waits with a fresh look at the state: a stop signalled while the pass ran
            // would otherwise wait out a whole rescue interval.
            let due = ContinuousClock.now + .milliseconds(Int64(options.rescueIntervalSec * 1000))
            while ContinuousClock.now < due && !state.withLock({ $0.draining || $0.stopped }) {
                await registryWake.wait(upTo: min(0.25, options.rescueIntervalSec))
            }
        }
    }

    // MARK: Draining

    private func drain() async {
        let deadline = ContinuousClock.now + .milliseconds(Int64(options.drainTimeoutSec * 1000))
        let count = state.withLock { $0.active.count }
        guard count > 0 else { return }
        logger.notice("draining", metadata: ["in_flight": .stringConvertible(count),
                                            "drain_timeout_sec": .stringConvertible(options.drainTimeoutSec)])
        while state.withLock({ !$0.active.isEmpty }) && ContinuousClock.now < deadline {
            let left = deadline - ContinuousClock.now
            let seconds = Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18
            await idle.wait(upTo: min(0.2, max(0.001, seconds)))
        }
        let remaining = state.withLock { Array($0.active.values) }
        if !remaining.isEmpty {
            logger.notice("drain timeout passed; releasing unfinished leases", metadata: ["jobs": .stringConvertible(remaining.count)])
            for job in remaining { job.abort.trigger(.shutdown) }
        }
    }
}

/// A node's logger plus one job's metadata, attached to each message only when the message is
/// logged at all.
struct JobLogger {
    let base: Logger
    let job: Logger.Metadata

    init(_ base: Logger, _ lease: Lease) {
        self.base = base
        self.job = ["job.id": .string(lease.jobID), "job.stage": .string(lease.stage.name), "lane": .string(lease.spec.lane)]
    }

    /// Logs `message` with the job's metadata (and `metadata`), when `level` is enabled.
    func callAsFunction(_ level: Logger.Level, _ message: @autoclosure () -> Logger.Message,
                        metadata: @autoclosure () -> Logger.Metadata = [:],
                        file: String = #fileID, function: String = #function, line: UInt = #line) {
        base.log(level: level, message(), metadata: job.merging(metadata()) { _, extra in extra },
                 file: file, function: function, line: line)
    }
}
