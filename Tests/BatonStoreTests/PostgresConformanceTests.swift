import BatonCore
import BatonPostgres
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

/// Stores for the engine's tests, each on a schema of its own.
enum TestPostgres {
    static var enabled: Bool { TestPostgresServer.enabled }

    /// A store on a schema of its own, dropped when the store is closed.
    static func store(clock: BatonClock, schema: String = TestPostgresServer.freshSchema(),
                      listen: Bool = false) async throws -> PostgresJobStore {
        var options = PostgresJobStore.Options()
        options.schema = schema
        options.maxConnections = 4
        options.listen = listen
        options.dropSchemaOnClose = true
        let store = try PostgresJobStore(url: TestPostgresServer.url!, options: options, clock: clock)
        try await store.migrate()
        return store
    }
}

/// Opens a fresh schema per case, dropped when the case closes the store.
let postgresFactory: StoreFactory = { clock in
    try await TestPostgres.store(clock: clock.clock)
}

@Test(.enabled(if: TestPostgres.enabled), arguments: JobStoreConformance.cases)
func postgres(_ c: ConformanceCase) async throws {
    try await c.run(postgresFactory)
}
