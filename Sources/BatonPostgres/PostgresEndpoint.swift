import BatonCore
import Foundation
import Logging
import NIOPosix
import NIOSSL
import PostgresNIO

/// Where the database is, read from a `postgres://` URL.
struct PostgresEndpoint: Sendable {
    enum TLSMode: String, Sendable { case disable, prefer, require }

    var host: String
    var port: Int
    var username: String
    var password: String?
    var database: String
    var tls: TLSMode
    /// The URL with its password replaced, for messages and logs.
    var redacted: String

    init(url: String) throws(BatonError) {
        guard let components = URLComponents(string: url),
              let scheme = components.scheme, scheme == "postgres" || scheme == "postgresql" else {
            throw BatonError(.invalidInput, field: "store",
                             "expected postgres://user[:password]@host[:port]/database, got \"\(Self.redact(url))\"")
        }
        guard let host = components.host, !host.isEmpty else {
            throw BatonError(.invalidInput, field: "store", "the PostgreSQL URL \"\(Self.redact(url))\" names no host")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.user.flatMap { $0.removingPercentEncoding } ?? "postgres"
        self.password = components.password.flatMap { $0.removingPercentEncoding }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? self.username : (path.removingPercentEncoding ?? path)
        var tls = TLSMode.prefer
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                switch item.value ?? "" {
                case "disable": tls = .disable
                case "allow", "prefer": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                default:
                    throw BatonError(.invalidInput, field: "store",
                                     "sslmode \"\(item.value ?? "")\" is not one of disable, prefer, require, verify-ca, verify-full")
                }
            default:
                throw BatonError(.invalidInput, field: "store",
                                 "unknown PostgreSQL URL parameter \"\(item.name)\" (supported: sslmode)")
            }
        }
        self.tls = tls
        self.redacted = Self.redact(url)
    }

    /// `url` with the password (everything between the user's ':' and the last '@') hidden.
    static func redact(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://"), let at = url.range(of: "@", options: .backwards),
              at.lowerBound > schemeEnd.upperBound else { return url }
        let userInfo = url[schemeEnd.upperBound..<at.lowerBound]
        guard let colon = userInfo.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at.lowerBound...])
    }

    private func tlsSetting() throws -> PostgresClient.Configuration.TLS {
        switch tls {
        case .disable: return .disable
        case .prefer: return .prefer(NIOSSL.TLSConfiguration.makeClientConfiguration())
        case .require: return .require(NIOSSL.TLSConfiguration.makeClientConfiguration())
        }
    }

    func clientConfiguration() throws -> PostgresClient.Configuration {
        PostgresClient.Configuration(host: host, port: port, username: username, password: password,
                                     database: database, tls: try tlsSetting())
    }

    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS = switch self.tls {
        case .disable: .disable
        case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        return PostgresConnection.Configuration(host: host, port: port, username: username, password: password,
                                                database: database, tls: tls)
    }
}

/// Qualified table names for one schema, and the NOTIFY channel of that schema.
struct PostgresTables: Sendable {
    let schema: String
    let jobs: String
    let idempotency: String
    let attempts: String
    let events: String
    let nodes: String
    let gates: String
    let deadLetterKeys: String
    let lanes: String
    let migrations: String
    let channel: String

    init(schema: String) throws(BatonError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789_")
        guard let first = schema.first, first.isLetter || first == "_", schema.count <= 48,
              schema.allSatisfy({ allowed.contains($0) }) else {
            throw BatonError(.invalidInput, field: "postgres.schema",
                             "expected a lower-case identifier (letters, digits, _), got \"\(schema)\"")
        }
        self.schema = schema
        jobs = "\(schema).jobs"
        idempotency = "\(schema).idempotency_keys"
        attempts = "\(schema).attempts"
        events = "\(schema).events"
        nodes = "\(schema).nodes"
        gates = "\(schema).gates"
        deadLetterKeys = "\(schema).dead_letter_keys"
        lanes = "\(schema).lanes"
        migrations = "\(schema).schema_migrations"
        channel = "\(schema)_work"
    }
}

/// Holds one dedicated connection that LISTENs on the work channel and calls `wake` for every
/// notification. When the connection is lost it is opened again (with a capped backoff), and
/// `wake` is called once after each reconnect so nothing sent in the gap is missed for long.
struct PostgresListener: Sendable {
    let endpoint: PostgresEndpoint
    let channel: String
    let logger: Logger

    func run(wake: @escaping @Sendable () -> Void) async {
        var delayMs: Int64 = 100
        var connectionID = 0
        while !Task.isCancelled {
            connectionID += 1
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: endpoint.connectionConfiguration(), id: connectionID, logger: logger)
                delayMs = 100
                do {
                    try await withTaskCancellationHandler {
                        try await connection.listen(on: channel) { notifications in
                            wake()
                            for try await _ in notifications { wake() }
                        }
                    } onCancel: {
                        connection.close().whenComplete { _ in }
                    }
                } catch {
                    if !Task.isCancelled { logger.warning("listen connection lost: \(error); reconnecting") }
                }
                try? await connection.close()
            } catch {
                if Task.isCancelled { return }
                logger.debug("listen connection to \(endpoint.redacted) failed: \(error); retrying in \(delayMs) ms")
            }
            try? await Task.sleep(for: .milliseconds(delayMs))
            delayMs = min(delayMs * 2, 5_000)
        }
    }
}

extension PostgresJobStore {
    /// Whether a TCP connection to the server of `url` opens within `timeoutSec`: nil when it
    /// does, else what went wrong, naming the host and port (for `baton doctor`, which must
    /// not wait out the pool's retries to say "connection refused").
    public static func probe(url: String, timeoutSec: Int64 = 3) async -> String? {
        let endpoint: PostgresEndpoint
        do {
            endpoint = try PostgresEndpoint(url: url)
        } catch {
            return "\(error)"
        }
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(.seconds(timeoutSec))
        do {
            let channel = try await bootstrap.connect(host: endpoint.host, port: endpoint.port).get()
            try? await channel.close()
            return nil
        } catch {
            return "cannot connect to \(endpoint.host):\(endpoint.port): \(error)"
        }
    }
}
