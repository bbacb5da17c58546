import BatonCore
import BatonStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The scheduler every node runs: it keeps the store's configuration schedules in line with
/// this node's configuration, then runs a `SchedulerPass` at each tick (and at least every
/// `maxSleepSec`). Several nodes running it fire each tick once: the store decides.
public final class Scheduler: Service, Sendable {
    let store: any JobStore
    let clock: BatonClock
    let nodeID: String
    let alerts: Alerts
    let logger: Logger
    let maxSleepSec: Double
    /// The configuration's schedules and the reader for their jobs (replaced on reload), and
    /// whether the store has this generation of them.
    let settings: Mutex<Settings>
    struct Settings {
        var schedules: [ScheduleSpec]
        var reader: EnvelopeReader
        var generation = 0
        var syncedGeneration = -1
        var needsSync: Bool { syncedGeneration != generation }
    }
    let wake = WorkSignal()

    public init(store: any JobStore, schedules: [ScheduleSpec], reader: EnvelopeReader, nodeID: String, clock: BatonClock = .system,
                alerts: Alerts = .logOnly, maxSleepSec: Double = 1, logger: Logger = Logger(label: "baton.scheduler")) {
        self.store = store
        self.clock = clock
        self.nodeID = nodeID
        self.alerts = alerts
        self.maxSleepSec = maxSleepSec
        var logger = logger
        logger[metadataKey: "node.id"] = .string(nodeID)
        self.logger = logger
        self.settings = Mutex(Settings(schedules: schedules, reader: reader))
    }

    /// Takes the schedules of a reloaded configuration; they are written at the next pass.
    public func reload(schedules: [ScheduleSpec], reader: EnvelopeReader) {
        settings.withLock {
            $0.schedules = schedules
            $0.reader = reader
            $0.generation += 1
        }
        wake.notify()
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let (nextDue, failed) = await pass()
            // Short sleeps, so that a stop never waits out a long one; a reload wakes it
            // (unless the pass failed: the store gets a second before the next try).
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let left = nextDue.timeIntervalSince(clock.now())
                if left <= 0 || (!failed && settings.withLock({ $0.needsSync })) { break }
                await wake.wait(upTo: min(left, 0.25))
            }
        }
    }

    /// One pass; returns when the next tick is due (at most `maxSleepSec` away) and whether
    /// the pass failed.
    func pass() async -> (next: Date, failed: Bool) {
        let current = settings.withLock { $0 }
        let now = clock.now()
        do {
            if current.needsSync {
                let (written, removed) = try await store.syncConfigSchedules(current.schedules)
                // A reload during the sync is a new generation: it is written at the next pass.
                settings.withLock { $0.syncedGeneration = current.generation }
                if !written.isEmpty || !removed.isEmpty {
                    logger.notice("configuration schedules written", metadata: [
                        "written": .string(written.joined(separator: ",")), "removed": .string(removed.joined(separator: ",")),
                    ])
                }
            }
            let outcome = try await SchedulerPass(store: store, reader: current.reader).run(now: now)
            report(outcome)
            let ceiling = clock.now().addingTimeInterval(maxSleepSec)
            return (min(outcome.nextDue ?? ceiling, ceiling), false)
        } catch {
            logger.warning("scheduler pass failed", metadata: ["error": "\(error)"])
            return (clock.now().addingTimeInterval(maxSleepSec), true)
        }
    }

    private func report(_ outcome: SchedulerPass.Outcome) {
        for fired in outcome.fired {
            logger.info("schedule fired", metadata: [
                "schedule": .string(fired.scheduleID), "tick": .string(JSONTime.string(fired.tick)), "job.id": .string(fired.jobID),
                "late_ms": .stringConvertible(fired.lateMs),
            ])
        }
        for skipped in outcome.skipped {
            logger.notice("schedule tick without a job", metadata: [
                "schedule": .string(skipped.scheduleID), "tick": .string(JSONTime.string(skipped.tick)), "why": .string(skipped.note),
            ])
        }
        for record in outcome.paused {
            alerts.schedulePaused(record, nodeID: nodeID, logger: logger)
        }
        for (id, error) in outcome.failed {
            logger.warning("schedule not handled in this pass", metadata: ["schedule": .string(id), "error": .string(error)])
        }
        for id in outcome.deleted {
            logger.info("one-shot schedule done and deleted (delete_after_run)", metadata: ["schedule": .string(id)])
        }
    }
}
