import BatonCore
import Foundation

/// One pass of the scheduler over every schedule: pause the ones whose runs keep failing,
/// delete finished one-shots, and fire the ticks that are due. Every node runs passes; a tick
/// still fires once, because `fireSchedule` only succeeds for the pass that moves the
/// schedule's cursor (the others are told they were superseded).
///
/// Time comes in as `now`, so tests drive passes with a manual clock.
public struct SchedulerPass: Sendable {
    public let store: any JobStore
    /// Reads each tick's envelope with this node's job defaults.
    public let reader: EnvelopeReader

    public init(store: any JobStore, reader: EnvelopeReader = EnvelopeReader()) {
        self.store = store
        self.reader = reader
    }

    public struct Fired: Sendable, Hashable {
        public var scheduleID: String
        public var tick: Date
        public var jobID: String
        /// How long after its tick the job was enqueued.
        public var lateMs: Int64
    }

    public struct Outcome: Sendable {
        public var fired: [Fired] = []
        /// Ticks that got no job, with why (overlap, misfire).
        public var skipped: [(scheduleID: String, tick: Date, note: String)] = []
        /// Schedules this pass paused after repeated failures.
        public var paused: [ScheduleRecord] = []
        /// One-shot schedules deleted after their run succeeded.
        public var deleted: [String] = []
        /// Schedules whose due ticks another node handled first.
        public var superseded: [String] = []
        /// Schedules this pass could not handle, with the error.
        public var failed: [(scheduleID: String, error: String)] = []
        /// When the next tick of any active schedule is due.
        public var nextDue: Date?
    }

    public func run(now: Date) async throws -> Outcome {
        var outcome = Outcome()
        for record in try await store.schedules() where record.state == .active && record.spec.enabled {
            let pausedOrDeleted = outcome.paused.count + outcome.deleted.count
            do {
                try await handle(record, now: now, into: &outcome)
            } catch {
                // One schedule's trouble (a store error, a race with another node deleting
                // it) never holds up the others.
                outcome.failed.append((record.id, "\(error)"))
                continue
            }
            // Every tick up to now was handled (by this pass or another node's): the next is
            // the first after now, or after the cursor when nothing was due yet.
            if outcome.paused.count + outcome.deleted.count == pausedOrDeleted,
               let next = record.spec.trigger.next(after: max(record.cursor, now)) {
                outcome.nextDue = min(outcome.nextDue ?? next, next)
            }
        }
        return outcome
    }

    private func handle(_ record: ScheduleRecord, now: Date, into outcome: inout Outcome) async throws {
        let spec = record.spec
        let plan = spec.plan(cursor: record.cursor, now: now)
        var oneShotFired = false
        if case .at(let instant) = spec.trigger, record.cursor >= instant { oneShotFired = true }
        // Between ticks there is nothing to decide: runs are read when a tick is due (so a
        // failing schedule pauses before it would fire again) or when a one-shot has fired.
        guard plan != nil || oneShotFired else { return }
        let jobRuns = try await store.scheduleRuns(id: spec.id, limit: spec.pauseAfterFailures + 10, jobsOnly: true)
        if oneShotFired, let run = jobRuns.first(where: { !$0.manual }), let state = run.jobState, state.isTerminal {
            if state == .succeeded && spec.deleteAfterRun {
                try await store.removeSchedule(id: spec.id)
                outcome.deleted.append(spec.id)
            } else if state != .succeeded {
                try await pause(record, reason: "its one-shot run \(run.jobID ?? "") ended \(state.rawValue)", lastFailed: run.jobID,
                                into: &outcome)
            }
            return
        }
        if let reason = Self.failureStreak(jobRuns, since: record.resumedAt, threshold: spec.pauseAfterFailures) {
            try await pause(record, reason: reason,
                            lastFailed: jobRuns.first(where: { $0.jobState == .dead || $0.jobState == .expired })?.jobID, into: &outcome)
            return
        }
        guard let plan else { return }
        var fire = plan.fire
        var notes: [(tick: Date, note: String)] = []
        if plan.missed > 0 {
            notes.append((plan.cursor, "missed \(plan.missed) of \(plan.due) due ticks (misfire: \(spec.misfire.rawValue))"))
        }
        // Overlap skip: while the previous tick's job has not finished, due ticks get none.
        if spec.overlap == .skip, let previous = jobRuns.first, let state = previous.jobState, !state.isTerminal {
            for tick in fire {
                notes.append((tick, "skipped: the previous run \(previous.jobID ?? "") is still \(state.rawValue) (overlap: skip)"))
            }
            fire = []
        }
        var jobs: [(tick: Date, spec: JobSpec)] = []
        do {
            for tick in fire {
                jobs.append((tick, try spec.job(for: tick, id: JobID.make(at: now), reader: reader)))
            }
        } catch {
            // The envelope no longer reads with this node's defaults: stop visibly, never silently.
            try await pause(record, reason: "its job cannot be enqueued: \(error)", lastFailed: nil, into: &outcome)
            return
        }
        let result = try await store.fireSchedule(ScheduleFire(scheduleID: spec.id, expectedCursor: record.cursor,
                                                               expectedVersion: record.version, cursor: plan.cursor,
                                                               jobs: jobs, notes: notes))
        switch result {
        case .superseded:
            outcome.superseded.append(spec.id)
        case .fired(let results):
            for (job, result) in zip(jobs, results) {
                outcome.fired.append(Fired(scheduleID: spec.id, tick: job.tick, jobID: result.jobID,
                                          lateMs: now.epochMilliseconds - job.tick.epochMilliseconds))
            }
            for note in notes { outcome.skipped.append((spec.id, note.tick, note.note)) }
        }
    }

    /// Pauses the schedule (unless it changed since it was read), naming the last failed
    /// job's reason.
    private func pause(_ record: ScheduleRecord, reason: String, lastFailed: String?, into outcome: inout Outcome) async throws {
        var reason = reason
        if let lastFailed, let job = try await store.job(id: lastFailed), let why = job.lastReason {
            reason += ": \(why)" + (job.lastMessage.map { " (\($0.prefix(200)))" } ?? "")
        }
        if let paused = try await store.setSchedulePaused(id: record.id, paused: true, reason: reason, ifVersion: record.version) {
            outcome.paused.append(paused)
        }
    }

    /// Why the schedule must pause: its newest `threshold` finished runs since it was last
    /// resumed all failed (dead-lettered or expired). Runs still waiting or running, and
    /// cancelled ones, neither count nor break the streak.
    static func failureStreak(_ runs: [ScheduleRun], since resumedAt: Date?, threshold: Int) -> String? {
        var failed: [ScheduleRun] = []
        for run in runs {
            if let resumedAt, run.recordedAt < resumedAt { break }
            guard let state = run.jobState else { continue }
            if state == .dead || state == .expired {
                failed.append(run)
                if failed.count >= threshold { break }
            } else if state == .succeeded {
                break
            }
        }
        guard failed.count >= threshold, let last = failed.first else { return nil }
        return "\(failed.count) consecutive runs failed (last: job \(last.jobID ?? "") \(last.jobState?.rawValue ?? ""))"
    }
}
