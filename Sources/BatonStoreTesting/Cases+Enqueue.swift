import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let enqueueCases: [ConformanceCase] = [
        ConformanceCase("enqueueStoresAQueuedJobAtAttemptZeroFenceZeroStageZero") { h in
            let spec = h.spec()
            let result = try await h.store.enqueue(spec)
            #expect(result == EnqueueResult(jobID: spec.id, deduplicated: false))
            let job = try await h.record(spec.id)
            #expect(job.state == .queued)
            #expect(job.attempts == 0)
            #expect(job.fence == 0)
            #expect(job.stageIndex == 0)
            #expect(job.retryCount == 0)
            #expect(job.leaseNode == nil)
            #expect(job.finishedAt == nil)
            #expect(ms(job.enqueuedAt) == ms(h.clock.now))
            #expect(ms(job.runAt) == ms(h.clock.now))
            let events = try await h.store.events(jobID: spec.id)
            #expect(events.map(\.kind) == [.enqueued])
            #expect(ms(events.first?.at) == ms(h.clock.now))
        },

        ConformanceCase("enqueueKeepsTheEnvelopeIntact") { h in
            let spec = JobSpec(
                id: "job-envelope-1", idempotencyKey: "repo:acme:commit:9c1b", dedupeWindowSec: 120, lane: "builds",
                sessionKey: "telegram:peer:42", regionAffinity: "eu", priority: 7,
                stages: [StageSpec(name: "compile", run: .shell("make build"), timeoutSec: 1800, transientExitCodes: [3, 4],
                                   env: ["MODE": "release"], workdir: "/tmp/w"),
                         StageSpec(name: "wait", run: .sleep(1.5)),
                         StageSpec(name: "notify", run: .noop)],
                queueTimeoutSec: 600, execTimeoutSec: 7200, leaseTTLSec: 45, ttlSec: 3600,
                retry: RetryPolicy(maxAttempts: 3, initialSec: 0.5, multiplier: 3, maxSec: 60, jitter: 0.1),
                artifactURI: "s3://bucket/path",
                payload: .object(["n": .int(1), "list": .array([.string("a"), .bool(true), .null]), "x": .double(2.5)]))
            try await h.enqueue(spec)
            let job = try await h.record(spec.id)
            #expect(job.spec == spec)
        },

        ConformanceCase("batchEnqueueStoresEveryJobAndAnswersInOrder") { h in
            let specs = (0..<5).map { i in h.spec(id: "batch-\(i)") }
            let results = try await h.store.enqueue(specs)
            #expect(results == specs.map { EnqueueResult(jobID: $0.id, deduplicated: false) })
            for spec in specs {
                #expect(try await h.store.job(id: spec.id)?.state == .queued)
            }
            #expect(try await h.store.counts()[.queued] == 5)
        },

        ConformanceCase("enqueueOfAnExistingJobIDThrowsAndStoresNothing") { h in
            let first = h.spec(id: "same-id", lane: "first")
            try await h.enqueue(first)
            await expectError(.invalidInput, "enqueue of a second job with id same-id") {
                _ = try await h.store.enqueue(h.spec(id: "same-id", lane: "second"))
            }
            let job = try await h.record("same-id")
            #expect(job.spec.lane == "first")
            #expect(try await h.eventKinds("same-id") == [.enqueued])
            #expect(try await h.store.counts().values.reduce(0, +) == 1)
        },

        ConformanceCase("batchWithAnExistingJobIDStoresNoneOfIt") { h in
            try await h.enqueue(h.spec(id: "taken"))
            let batch = [h.spec(id: "new-1", key: "k-new-1"), h.spec(id: "taken"), h.spec(id: "new-2")]
            await expectError(.invalidInput, "a batch holding an existing job id") {
                _ = try await h.store.enqueue(batch)
            }
            #expect(try await h.store.job(id: "new-1") == nil)
            #expect(try await h.store.job(id: "new-2") == nil)
            #expect(try await h.store.counts().values.reduce(0, +) == 1)
            // Nothing of the refused batch survives, not even its idempotency key.
            let retried = try await h.store.enqueue(h.spec(id: "new-1b", key: "k-new-1"))
            #expect(retried == EnqueueResult(jobID: "new-1b", deduplicated: false))
        },
    ]
}
