import BatonCore
import BatonPostgres
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

/// The PostgreSQL server the engine's tests run against: `BATON_TEST_POSTGRES_URL`, set by
/// `scripts/test` (which starts a private server) or by a developer pointing at their own.
enum TestPostgres {
    static var url: String? {
        guard let url = ProcessInfo.processInfo.environment["BATON_TEST_POSTGRES_URL"], !url.isEmpty else { return nil }
        return url
    }

    /// Whether PostgreSQL tests must run: `scripts/test` sets `BATON_REQUIRE_POSTGRES=1`, so
    /// a missing server fails the run there instead of skipping silently.
    static var required: Bool { ProcessInfo.processInfo.environment["BATON_REQUIRE_POSTGRES"] == "1" }

    static var enabled: Bool {
        if url == nil && required {
            Issue.record("BATON_REQUIRE_POSTGRES=1 but BATON_TEST_POSTGRES_URL is not set")
        }
        return url != nil
    }

    /// A store on a schema of its own, dropped when the store is closed.
    static func store(clock: BatonClock, schema: String = "t_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))",
                      listen: Bool = false) async throws -> PostgresJobStore {
        var options = PostgresJobStore.Options()
        options.schema = schema
        options.maxConnections = 4
        options.listen = listen
        options.dropSchemaOnClose = true
        let store = try PostgresJobStore(url: url!, options: options, clock: clock)
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
