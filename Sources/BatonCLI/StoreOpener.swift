import BatonCore
import BatonNode
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
            let store = try SQLiteJobStore(path: path, options: options)
            try await store.migrate()
            return store
        }
        throw BatonError(.invalidInput, field: "store",
                         "the PostgreSQL engine is not part of this build yet; use sqlite:PATH (got \"\(redacted(config.store))\")")
    }

    /// The store URL without its password, for messages.
    static func redacted(_ url: String) -> String {
        guard let at = url.firstIndex(of: "@"), let scheme = url.range(of: "://") else { return url }
        let credentials = url[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return url }
        return url.replacingCharacters(in: colon..<at, with: ":***")
    }
}
