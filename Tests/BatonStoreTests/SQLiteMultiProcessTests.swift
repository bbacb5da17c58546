import BatonCore
import BatonSQLite
import BatonStore
import Foundation
import Testing

// Several store instances on one file stand for several worker processes on one host.

/// `count` stores opened on one new file in `directory`, each migrated (as every process does
/// at start-up).
func storesSharingOneFile(_ count: Int, in directory: URL, clock: ManualClock) async throws -> [SQLiteJobStore] {
    let path = directory.appendingPathComponent("baton.db").path
    var stores: [SQLiteJobStore] = []
    for _ in 0..<count {
        let store = try SQLiteJobStore(path: path, clock: clock.clock)
        try await store.migrate()
        stores.append(store)
    }
    return stores
}

/// Concurrent submissions of the same idempotency key from several processes still yield one
/// job per key.
@Test func concurrentSubmissionsFromSeveralProcessesDedupeToOneJobPerKey() async throws {
    try await withTemporaryDirectory { directory in
        let clock = ManualClock()
        let instances = try await storesSharingOneFile(4, in: directory, clock: clock)

        let results = try await withThrowingTaskGroup(of: EnqueueResult.self) { group in
            for i in 0..<1_000 {
                group.addTask {
                    let spec = JobSpec(id: JobID.make(at: clock.now), idempotencyKey: "key-\(i % 100)",
                                       stages: [StageSpec(name: "s1", run: .noop)])
                    return try await instances[i % instances.count].enqueue(spec)
                }
            }
            var all: [EnqueueResult] = []
            for try await result in group { all.append(result) }
            return all
        }

        #expect(results.count == 1_000)
        #expect(Set(results.map(\.jobID)).count == 100)
        #expect(results.filter(\.deduplicated).count == 900)
        #expect(try await instances[0].counts()[.queued] == 100)
        for store in instances { try await store.close() }
    }
}

/// Claim loops in several processes never lease the same job twice, and together drain the queue.
@Test func concurrentClaimsFromSeveralProcessesLeaseEveryJobExactlyOnce() async throws {
    try await withTemporaryDirectory { directory in
        let clock = ManualClock()
        let instances = try await storesSharingOneFile(4, in: directory, clock: clock)
        let ids = (0..<200).map { "job-\($0)" }
        _ = try await instances[0].enqueue(ids.map { JobSpec(id: $0, stages: [StageSpec(name: "s1", run: .noop)]) })

        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in 0..<8 {
                group.addTask {
                    let store = instances[worker % instances.count]
                    var mine: [String] = []
                    while true {
                        let leases = try await store.claim(ClaimRequest(nodeID: "node-\(worker)", limit: 5))
                        if leases.isEmpty { return mine }
                        mine += leases.map(\.jobID)
                    }
                }
            }
            var all: [String] = []
            for try await batch in group { all += batch }
            return all
        }

        #expect(claimed.count == 200)
        #expect(Set(claimed) == Set(ids))
        #expect(try await instances[0].counts()[.running] == 200)
        for store in instances { try await store.close() }
    }
}
