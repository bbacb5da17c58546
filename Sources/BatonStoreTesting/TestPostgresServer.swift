import Foundation
import Testing

/// The PostgreSQL server tests run against: `BATON_TEST_POSTGRES_URL`, set by `scripts/test`
/// (which starts a private server) or by a developer pointing at their own.
public enum TestPostgresServer {
    public static var url: String? {
        guard let url = ProcessInfo.processInfo.environment["BATON_TEST_POSTGRES_URL"], !url.isEmpty else { return nil }
        return url
    }

    /// Whether PostgreSQL tests must run: `scripts/test` sets `BATON_REQUIRE_POSTGRES=1`, so
    /// a missing server fails the run there instead of skipping silently.
    public static var required: Bool { ProcessInfo.processInfo.environment["BATON_REQUIRE_POSTGRES"] == "1" }

    /// For `.enabled(if:)`: true when a server is configured; records an issue when one is
    /// required and missing.
    public static var enabled: Bool {
        if url == nil && required {
            Issue.record("BATON_REQUIRE_POSTGRES=1 but BATON_TEST_POSTGRES_URL is not set")
        }
        return url != nil
    }

    /// A schema name no other test uses.
    public static func freshSchema() -> String {
        "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }
}
