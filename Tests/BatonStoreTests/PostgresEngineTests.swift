import BatonCore
@testable import BatonPostgres
import BatonStore
import BatonStoreTesting
import Foundation
import PostgresNIO
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

    /// postgres-nio writes a statement to its connection's channel without a write promise:
    /// one written after the connection closed is never answered. The engine fails such an
    /// operation when the connection closes instead of waiting out its deadline (30 s here).
    @Test func statementOnAConnectionThatClosedUnderItFailsAtOnce() async throws {
        var options = PostgresJobStore.Options()
        options.schema = TestPostgresServer.freshSchema()
        options.listen = false
        options.operationTimeoutSec = 30
        let store = try PostgresJobStore(url: TestPostgresServer.url!, options: options, clock: .system)
        let started = Date()
        do {
            _ = try await store.leased("a statement after the close") { connection in
                try await connection.close()
                return try await connection.rows("SELECT 1", logger: store.logger).count
            }
            Issue.record("a statement on a closed connection returned")
        } catch let error as BatonError {
            #expect(error.code == .storeUnavailable)
            #expect(error.message.contains("closed the connection while a statement after the close was under way"), "\(error)")
        }
        // Returning before the 30 s deadline is the point; the bound leaves room for a loaded
        // CI machine. The pool opens a new connection for the next operation.
        #expect(Date().timeIntervalSince(started) < 15)
        #expect(try await store.rows("SELECT 1 AS one").count == 1)
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
