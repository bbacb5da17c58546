import BatonCore
import BatonPostgres
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

/// Behaviour of the PostgreSQL engine beyond the shared conformance suite: its prepared
/// statements and its connections.
@Suite(.enabled(if: TestPostgres.enabled))
struct PostgresEngineTests {
    /// postgres-nio keeps a failed prepare on its connection and would return that error on
    /// every later use; the engine drops such a connection so that the pool opens a fresh one.
    @Test func claimThatFailedBeforeTheSchemaExistedWorksOnceItDoes() async throws {
        var options = PostgresJobStore.Options()
        options.schema = TestPostgresServer.freshSchema()
        options.maxConnections = 1  // one connection: the failed prepare would sit on it
        options.listen = false
        options.dropSchemaOnClose = true
        let store = try PostgresJobStore(url: TestPostgresServer.url!, options: options, clock: .system)
        do {
            await #expect(throws: BatonError.self) {
                try await store.claim(ClaimRequest(nodeID: "node-a", limit: 4))
            }
            try await store.migrate()
            let id = try await store.enqueue(JobSpec(id: JobID.make(), stages: [StageSpec(name: "only", run: .noop)])).jobID
            let leases = try await store.claim(ClaimRequest(nodeID: "node-a", limit: 4))
            #expect(leases.map(\.jobID) == [id])
            let completed = try await store.complete(leases[0])
            #expect(completed == .succeeded)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    /// The claim order holds on a table the planner knows nothing about (never analyzed, as a
    /// fresh or bursting queue is): priority first, then time, then insertion, batch by batch.
    @Test func claimsFollowTheQueueOrderOnAFreshTable() async throws {
        let clock = ManualClock()
        let store = try await TestPostgres.store(clock: clock.clock)
        do {
            var specs: [JobSpec] = []
            for index in 0..<3_000 {
                specs.append(JobSpec(id: String(format: "job-%05d", index), priority: index % 3 == 0 ? 5 : 0,
                                     stages: [StageSpec(name: "only", run: .noop)]))
            }
            for start in stride(from: 0, to: specs.count, by: 500) {
                _ = try await store.enqueue(Array(specs[start..<start + 500]))
            }
            let expected = specs.filter { $0.priority == 5 }.map(\.id) + specs.filter { $0.priority == 0 }.map(\.id)
            var claimed: [String] = []
            while claimed.count < specs.count {
                let batch = try await store.claim(ClaimRequest(nodeID: "node-a", limit: 64))
                #expect(!batch.isEmpty)
                if batch.isEmpty { break }
                claimed += batch.map(\.jobID)
            }
            #expect(claimed == expected)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }
}
