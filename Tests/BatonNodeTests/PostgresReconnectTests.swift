import BatonCore
import BatonPostgres
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

extension MultiProcessTests {
@Suite(.serialized, .timeLimit(.minutes(3)))
struct PostgresReconnectTests {
    static func job() -> JobSpec { JobSpec(id: JobID.make(), stages: [StageSpec(name: "a", run: .noop)]) }

    /// Store calls under way while the server restarts fail at once (and the next ones work):
    /// none waits out the 30 s operation timeout on a connection the restart closed.
    @Test(.enabled(if: TestPostgresServer.enabled))
    func callsDuringARestartFailFastAndTheNextOnesWork() async throws {
        let server = try await PrivatePostgres()
        var options = PostgresJobStore.Options()
        options.schema = "reconnect"
        let store = try PostgresJobStore(url: server.url, options: options)
        do {
            try await store.migrate()
            let stop = Date().addingTimeInterval(6)
            let restart = Task {
                try await Task.sleep(for: .seconds(1))
                try await server.restart()
            }
            // Six callers keep the pool's connections busy with enqueues and claims (both
            // prepared statements) across the restart.
            let (slowest, failures) = try await withThrowingTaskGroup(of: (Double, Int).self) { group in
                for index in 0..<6 {
                    group.addTask {
                        var slowest = 0.0
                        var failures = 0
                        while Date() < stop {
                            let start = Date()
                            do {
                                _ = try await store.enqueue([Self.job()])
                                _ = try await store.claim(ClaimRequest(nodeID: "reconnect-\(index)", limit: 1))
                            } catch let error as BatonError {
                                #expect(error.code == .storeUnavailable, "\(error)")
                                failures += 1
                                try await Task.sleep(for: .milliseconds(50))
                            }
                            slowest = max(slowest, Date().timeIntervalSince(start))
                        }
                        return (slowest, failures)
                    }
                }
                var slowest = 0.0
                var failures = 0
                for try await (s, f) in group {
                    slowest = max(slowest, s)
                    failures += f
                }
                return (slowest, failures)
            }
            try await restart.value
            // The pool has new connections: the next call works at once.
            _ = try await store.enqueue([Self.job()])
            print(String(format: "postgres restart under load: %d calls failed fast, slowest call %.2f s", failures, slowest))
            // The restart itself takes about a second; the operation timeout is 30 s. (Whether a
            // call was under way at the close is up to timing; PostgresEngineTests closes a
            // connection under a statement deterministically.)
            #expect(slowest < 10, "a call waited \(slowest) s across the restart")
        } catch {
            try? await store.close()
            await server.stop()
            throw error
        }
        try? await store.close()
        await server.stop()
    }
}
}
