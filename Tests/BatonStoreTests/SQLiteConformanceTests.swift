import BatonCore
import BatonSQLite
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

/// Opens a fresh SQLite file in `directory`, migrated, reading the manual clock.
func sqliteFactory(in directory: URL) -> StoreFactory {
    { clock in
        let path = directory.appendingPathComponent("baton-\(UUID().uuidString).db").path
        let s = try SQLiteJobStore(path: path, clock: clock.clock)
        try await s.migrate()
        return s
    }
}

/// Runs `body` with a new temporary directory, removed afterwards.
func withTemporaryDirectory<T>(_ body: (URL) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("baton-store-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory)
}

@Test(arguments: JobStoreConformance.cases)
func sqlite(_ c: ConformanceCase) async throws {
    try await withTemporaryDirectory { directory in
        try await c.run(sqliteFactory(in: directory))
    }
}
