import BatonCore
import BatonSQLite
import BatonStore
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Real `baton worker` processes on one SQLite file, killed and stopped with real signals.
extension MultiProcessTests {
@Suite(.serialized, .timeLimit(.minutes(3)))
struct CrashTests {
    @Test func killedWorkersJobCompletesOnAnotherNodeAfterLeaseExpiry() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let spec = sleepJob(3, leaseTTL: 2)
        _ = try await h.store.enqueue(spec)
        let a = try h.startWorker("crash-a")
        let b = try h.startWorker("crash-b")

        var holder = ""
        try await h.waitUntil(timeout: 30, "the job to start on a worker") {
            let job = try await h.store.job(id: spec.id)
            holder = job?.leaseNode ?? ""
            return job?.state == .running
        }
        let (victim, survivor) = holder == "crash-a" ? (a, "crash-b") : (b, "crash-a")
        h.signal(victim, SIGKILL)

        try await h.waitUntil(timeout: 30, "the job to succeed on the surviving node") {
            try await h.store.job(id: spec.id)?.state == .succeeded
        }
        let events = try await h.store.events(jobID: spec.id)
        let claims = events.filter { $0.kind == .claimed }.compactMap(\.nodeID)
        #expect(claims == [holder, survivor])
        #expect(events.contains { $0.kind == .heartbeatLost && $0.nodeID == holder })
        #expect(events.contains { $0.kind == .rescued && $0.detail["from_node"] == holder })
        let completions = events.filter { $0.kind == .completed }
        #expect(completions.count == 1)
        #expect(completions.first?.nodeID == survivor)
        let job = try #require(try await h.store.job(id: spec.id))
        #expect(job.attempts == 2)
    }

    @Test func stalledWorkersCompletionIsRefusedAfterAnotherNodeReclaimed() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let spec = sleepJob(3, leaseTTL: 2)
        _ = try await h.store.enqueue(spec)
        let a = try h.startWorker("stall-a")
        try await h.waitUntil(timeout: 30, "the job to start on stall-a") {
            try await h.store.job(id: spec.id)?.state == .running
        }
        h.signal(a, SIGSTOP)
        try h.startWorker("stall-b")
        try await h.waitUntil(timeout: 30, "stall-b to re-claim and finish the job") {
            try await h.store.job(id: spec.id)?.state == .succeeded
        }
        h.signal(a, SIGCONT)
        try await h.waitUntil(timeout: 15, "stall-a's stale completion to be refused") {
            try await h.store.events(jobID: spec.id).contains { $0.kind == .staleWriteRefused && $0.nodeID == "stall-a" }
        }
        let events = try await h.store.events(jobID: spec.id)
        let refused = try #require(events.first { $0.kind == .staleWriteRefused && $0.nodeID == "stall-a" })
        #expect(refused.detail["op"] == "complete")
        #expect(refused.fence == 1)
        #expect(refused.detail["current_fence"] == "2")
        let completions = events.filter { $0.kind == .completed }
        #expect(completions.map(\.nodeID) == ["stall-b"])
        #expect(try await h.store.job(id: spec.id)?.state == .succeeded)
        #expect(h.log(of: "stall-a").contains("completion refused"))
    }

    @Test func sigtermWithinDrainTimeoutFinishesTheRunningJob() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let spec = sleepJob(2, leaseTTL: 5)
        _ = try await h.store.enqueue(spec)
        let a = try h.startWorker("drain-a", drainTimeoutSec: 20)
        try await h.waitUntil(timeout: 30, "the job to start") {
            try await h.store.job(id: spec.id)?.state == .running
        }
        h.signal(a, SIGTERM)
        try await h.waitForExit(a, timeout: 20)
        #expect(a.terminationStatus == 0)
        let job = try #require(try await h.store.job(id: spec.id))
        #expect(job.state == .succeeded)
        #expect(job.attempts == 1)
        let events = try await h.store.events(jobID: spec.id)
        #expect(events.filter { $0.kind == .completed }.map(\.nodeID) == ["drain-a"])
        #expect(!events.contains { $0.kind == .released })
    }

    @Test func sigtermPastDrainTimeoutReleasesTheJobWhichRunsElsewhereWithItsAttemptCountUnchanged() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let spec = sleepJob(4, leaseTTL: 10)
        _ = try await h.store.enqueue(spec)
        let a = try h.startWorker("release-a", drainTimeoutSec: 0.5)
        try await h.waitUntil(timeout: 30, "the job to start") {
            try await h.store.job(id: spec.id)?.state == .running
        }
        h.signal(a, SIGTERM)
        try await h.waitForExit(a, timeout: 20)
        #expect(a.terminationStatus == 0)
        let released = try #require(try await h.store.job(id: spec.id))
        #expect(released.state == .queued)
        #expect(released.attempts == 0)
        #expect(released.lastErrorClass == nil)

        try h.startWorker("release-b")
        try await h.waitUntil(timeout: 30, "the job to finish on release-b") {
            try await h.store.job(id: spec.id)?.state == .succeeded
        }
        let job = try #require(try await h.store.job(id: spec.id))
        #expect(job.attempts == 1)
        let events = try await h.store.events(jobID: spec.id)
        #expect(events.contains { $0.kind == .released && $0.nodeID == "release-a" && $0.detail["reason"] == "shutdown" })
        #expect(events.filter { $0.kind == .claimed }.map(\.attempt) == [1, 1])
        #expect(events.filter { $0.kind == .completed }.map(\.nodeID) == ["release-b"])
        #expect(!events.contains { $0.kind == .failed })
    }
}
}
