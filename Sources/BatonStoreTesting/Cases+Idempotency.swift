import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let idempotencyCases: [ConformanceCase] = [
        ConformanceCase("sameIdempotencyKeyInsideItsWindowYieldsTheSameJob") { h in
            let original = try await h.enqueue(h.spec(id: "original", key: "artifact:ipa", dedupeWindowSec: 3600))
            h.clock.advance(by: 600)
            let again = try await h.store.enqueue(h.spec(id: "resubmitted", key: "artifact:ipa", dedupeWindowSec: 3600))
            #expect(again == EnqueueResult(jobID: original, deduplicated: true))
            #expect(try await h.store.job(id: "resubmitted") == nil)
            #expect(try await h.store.counts().values.reduce(0, +) == 1)
            #expect(try await h.eventKinds(original) == [.enqueued, .deduplicated])
        },

        ConformanceCase("sameIdempotencyKeyAfterItsWindowCreatesANewJob") { h in
            let first = try await h.enqueue(h.spec(id: "first", key: "nightly", dedupeWindowSec: 60))
            h.clock.advance(by: 61)
            let second = try await h.store.enqueue(h.spec(id: "second", key: "nightly", dedupeWindowSec: 60))
            #expect(second == EnqueueResult(jobID: "second", deduplicated: false))
            #expect(try await h.store.job(id: first)?.state == .queued)
            #expect(try await h.store.job(id: "second")?.state == .queued)
            #expect(try await h.eventKinds(first) == [.enqueued])
        },

        ConformanceCase("duplicateKeysInsideOneBatchDedupeToTheFirst") { h in
            let batch = [h.spec(id: "b-1", key: "k"), h.spec(id: "b-2", key: "k"), h.spec(id: "b-3", key: "other")]
            let results = try await h.store.enqueue(batch)
            #expect(results == [
                EnqueueResult(jobID: "b-1", deduplicated: false),
                EnqueueResult(jobID: "b-1", deduplicated: true),
                EnqueueResult(jobID: "b-3", deduplicated: false),
            ])
            #expect(try await h.store.job(id: "b-2") == nil)
            #expect(try await h.store.counts()[.queued] == 2)
        },
    ]
}
