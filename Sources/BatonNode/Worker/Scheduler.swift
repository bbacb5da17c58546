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
    /// The configuration's schedules and the reader for their jobs (replaced on reload).
    let settings: Mutex<(schedules: [ScheduleSpec], reader: EnvelopeReader, synced: Bool)>
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
        self.settings = Mutex((schedules, reader, false))
    }

    /// Takes the schedules of a reloaded configuration; they are written at the next pass.
    public func reload(schedules: [ScheduleSpec], reader: EnvelopeReader) {
        settings.withLock { $0 = (schedules, reader, false) }
        wake.notify()
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let nextDue = await pass()
            // Short sleeps, so that a stop never waits out a long one.
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let left = (nextDue ?? .distantFuture).timeIntervalSince(clock.now())
                if left <= 0 || settings.withLock({ !$0.synced }) { break }
                await wake.wait(upTo: min(left, 0.25))
            }
        }
    }

    /// One pass; returns when the next tick is due (at most `maxSleepSec` away).
    func pass() async -> Date? {
        let (schedules, reader, synced) = settings.withLock { $0 }
        let now = clock.now()
        do {
            if !synced {
                let (written, removed) = try await store.syncConfigSchedules(schedules)
                settings.withLock { $0.synced = true }
                if !written.isEmpty || !removed.isEmpty {
                    logger.notice("configuration schedules written", metadata: [
                        "written": .string(written.joined(separator: ",")), "removed": .string(removed.joined(separator: ",")),
                    ])
                }
            }
            let outcome = try await SchedulerPass(store: store, reader: reader).run(now: now)
            report(outcome)
            let ceiling = clock.now().addingTimeInterval(maxSleepSec)
            return min(outcome.nextDue ?? ceiling, ceiling)
        } catch {
            logger.warning("scheduler pass failed", metadata: ["error": "\(error)"])
            return clock.now().addingTimeInterval(maxSleepSec)
        }
    }

    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    private func report(_ outcome: SchedulerPass.Outcome) {
        for fired in outcome.fired {
            logger.info("schedule fired", metadata: [
                "schedule": .string(fired.scheduleID), "tick": .string(Self.iso(fired.tick)), "job.id": .string(fired.jobID),
                "late_ms": .stringConvertible(fired.lateMs),
            ])
        }
        for skipped in outcome.skipped {
            logger.notice("schedule tick without a job", metadata: [
                "schedule": .string(skipped.scheduleID), "tick": .string(Self.iso(skipped.tick)), "why": .string(skipped.note),
            ])
        }
        for record in outcome.paused {
            alerts.schedulePaused(record, nodeID: nodeID, logger: logger)
        }
        for id in outcome.deleted {
            logger.info("one-shot schedule done and deleted (delete_after_run)", metadata: ["schedule": .string(id)])
        }
    }
}
