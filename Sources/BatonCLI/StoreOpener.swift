import BatonCore
import BatonNode
import BatonPostgres
import BatonSQLite
import BatonStore
import Foundation

/// Opens the store named in the configuration and applies pending migrations.
enum StoreOpener {
    static func open(_ config: BatonConfig) async throws -> any JobStore {
        if let path = config.sqlitePath {
            var options = SQLiteJobStore.Options()
            options.synchronous = config.sqlite.synchronous == "full" ? .full : .normal
            options.busyTimeoutSec = config.sqlite.busyTimeoutSec
            options.gates = config.gates
            options.retryHoldsPlace = config.lanes.retryHoldsPlace
            options.ageingEverySec = config.lanes.ageingEverySec
            options.ageingMaxBoost = config.lanes.ageingMaxBoost
            let store = try SQLiteJobStore(path: path, options: options)
            try await store.migrate()
            return store
        }
        if let url = config.postgresURL {
            let store: PostgresJobStore
            do {
                var options = PostgresJobStore.Options()
                options.schema = config.postgres.schema
                options.maxConnections = config.postgres.maxConnections
                options.connectTimeoutSec = config.postgres.connectTimeoutSec
                options.operationTimeoutSec = config.postgres.operationTimeoutSec
                options.gates = config.gates
                options.retryHoldsPlace = config.lanes.retryHoldsPlace
                options.ageingEverySec = config.lanes.ageingEverySec
                options.ageingMaxBoost = config.lanes.ageingMaxBoost
                store = try PostgresJobStore(url: url, options: options)
            } catch var error as BatonError {
                error.field = config.storeSource
                throw error
            }
            do {
                try await store.migrate()
            } catch {
                try? await store.close()
                throw error
            }
            return store
        }
        throw BatonError(.invalidInput, field: config.storeSource,
                         "expected sqlite:PATH or a postgres:// URL, got \"\(config.redactedStore)\"")
    }
}
