import BatonCore
import BatonStore
import Foundation
import Logging
import NIOSSL
import PostgresNIO

/// The multi-node engine: every node of a cluster pulls from one PostgreSQL database.
///
/// Claims take a batch of rows with `FOR UPDATE SKIP LOCKED` in one statement; completions and
/// heartbeats of a batch are one statement each; idle nodes are woken by `LISTEN/NOTIFY` on
/// enqueue and release (polling stays the fallback, and a lost listen connection is opened
/// again). Every value travels as a bound parameter; only the schema name, checked to be a
/// plain identifier, is spliced into SQL text.
public final class PostgresJobStore: JobStore {
    public struct Options: Sendable {
        /// The schema that holds Baton's tables; several Baton clusters (or test runs) can share
        /// one database under different schemas.
        public var schema = "baton"
        /// Connections in this process's pool.
        public var maxConnections = 8
        /// Open the listen connection that turns NOTIFY into wake-ups.
        public var listen = true
        public var connectTimeoutSec: Double = 10
        /// The longest one operation (a statement, or a whole transaction) may take before it
        /// is abandoned and reported as the store being unavailable.
        public var operationTimeoutSec: Double = 30
        /// Drop the schema when the store is closed: for tests and benchmarks that each work
        /// in a throw-away schema.
        public var dropSchemaOnClose = false
        /// When a key's dead letters make its human gate hold.
        public var gates = GatePolicy.standard
        /// Whether a session's job in backoff after a failure keeps the session's later jobs
        /// waiting (no overtaking). Default true.
        public var retryHoldsPlace = true
        /// Priority ageing: a ready job gains one priority step per this many seconds of
        /// waiting, at most `ageingMaxBoost` steps (0 turns ageing off).
        public var ageingEverySec = 60
        public var ageingMaxBoost = 10
        public init() {}
    }

    let client: PostgresClient
    let endpoint: PostgresEndpoint
    let tables: PostgresTables
    let clock: BatonClock
    let jitter: @Sendable () -> Double
    let signal = WorkSignal()
    let closeWatch = ConnectionCloseWatch()
    let logger: Logger
    let options: Options
    /// Ageing runs at most every quarter of its step.
    let ageingThrottle: Throttle
    private let runTask: Task<Void, Never>
    private let listenTask: Task<Void, Never>?

    /// Opens a pool against `url` (`postgres://user[:password]@host[:port]/database[?sslmode=…]`).
    /// Nothing is sent until the first operation; call `migrate()` before using the store.
    public init(url: String, options: Options = Options(), clock: BatonClock = .system,
                jitter: @escaping @Sendable () -> Double = { Double.random(in: -1...1) },
                logger: Logger = Logger(label: "baton.postgres")) throws {
        let endpoint = try PostgresEndpoint(url: url)
        let tables = try PostgresTables(schema: options.schema)
        var configuration = try endpoint.clientConfiguration()
        configuration.options.maximumConnections = max(1, options.maxConnections)
        configuration.options.connectTimeout = .milliseconds(Int64(options.connectTimeoutSec * 1000))
        // JIT compilation never pays for statements this short; it only adds latency.
        // The pool's search_path is the store's schema, so that prepared statements (whose
        // text is fixed) name tables without it.
        configuration.options.additionalStartupParameters = [("jit", "off"), ("search_path", tables.schema)]
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.endpoint = endpoint
        self.tables = tables
        self.clock = clock
        self.jitter = jitter
        self.logger = logger
        self.options = options
        self.ageingThrottle = Throttle(intervalMs: Int64(options.ageingEverySec) * 250)
        self.runTask = Task { await client.run() }
        if options.listen {
            let signal = signal
            self.listenTask = Task {
                await PostgresListener(endpoint: endpoint, channel: tables.channel, logger: logger).run { signal.notify() }
            }
        } else {
            self.listenTask = nil
        }
    }

    public func migrate() async throws {
        // A migration may rebuild indexes of a large queue: it gets an hour, not the 30 s of
        // an ordinary operation.
        try await transaction(timeoutSec: max(options.operationTimeoutSec, 3600)) { connection, _ in
            try await PostgresSchema.migrate(connection, tables: self.tables, logger: self.logger)
        }
        // The prepared statements name tables without a schema: they rely on the search_path
        // this pool asks for at connect time. A pooler that drops startup parameters would send
        // them to whatever the default path holds; refuse to start rather than guess.
        let schema = try await rows("SELECT current_schema() AS schema").first.map { try $0.get("schema", as: String?.self) } ?? nil
        guard schema == tables.schema else {
            throw BatonError(.storeUnavailable, field: "store",
                             "PostgreSQL at \(endpoint.redacted) ignored the search_path Baton asked for (current schema "
                             + "\(schema.map { "\"\($0)\"" } ?? "none"), expected \"\(tables.schema)\"); connect directly or "
                             + "through a pooler that passes startup parameters (session mode)")
        }
    }

    public func close() async throws {
        if options.dropSchemaOnClose { try? await dropSchema() }
        listenTask?.cancel()
        runTask.cancel()
        await runTask.value
        await listenTask?.value
    }

    public func waitForWork(upTo seconds: Double) async {
        await signal.wait(upTo: seconds)
    }

    /// Drops this store's schema with everything in it. For tests and benchmarks.
    public func dropSchema() async throws {
        try await execute("DROP SCHEMA IF EXISTS \(unescaped: tables.schema) CASCADE")
    }

    // MARK: Running statements

    /// Runs `body` on a pooled connection within the operation deadline.
    ///
    /// postgres-nio hands a statement to its connection's channel without a write promise: a
    /// statement written just after the server closed the connection (a restart) is never
    /// answered. Rather than wait out the deadline, the operation fails as soon as its
    /// connection closes, like the statements the closing connection did answer.
    ///
    /// The close is acted on after a short grace: a statement the server answered just before
    /// closing (a commit) reports its own result, and an error that made Baton close the
    /// connection itself is reported as it was.
    func leased<T: Sendable>(_ what: String, timeoutSec: Double? = nil,
                             _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await Deadline.run(seconds: timeoutSec ?? options.operationTimeoutSec, what: what) { abandon in
            try await self.client.withConnection { connection in
                let closed = BatonError(.storeUnavailable, field: "store",
                                        "PostgreSQL at \(self.endpoint.redacted) closed the connection while \(what) was under way")
                return try await self.closeWatch.whileOpen(connection, onClose: {
                    Task {
                        try? await Task.sleep(for: .milliseconds(250))
                        abandon.fail(closed)
                    }
                }) {
                    try await body(connection)
                }
            }
        }
    }

    /// Runs one statement outside an explicit transaction and returns its rows.
    @discardableResult
    func rows(_ query: PostgresQuery) async throws -> [PostgresRandomAccessRow] {
        try await mapped {
            try await self.leased("a PostgreSQL statement") { connection in
                try await (connection.rows(query, logger: self.logger))
            }
        }
    }

    /// Runs one prepared statement outside an explicit transaction and returns its rows.
    func run<Statement: PostgresPreparedStatement>(_ statement: Statement, what: String) async throws -> [Statement.Row]
    where Statement.Row: Sendable {
        try await mapped {
            try await self.leased(what) { connection in
                try await connection.run(statement, logger: self.logger)
            }
        }
    }

    func execute(_ query: PostgresQuery) async throws {
        try await rows(query)
    }

    /// Runs `body` in one READ COMMITTED transaction with the clock's current time, retrying
    /// the whole transaction on a deadlock or serialization failure.
    func transaction<T: Sendable>(timeoutSec: Double? = nil,
                                  _ body: @escaping @Sendable (PostgresConnection, Int64) async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await mapped {
                    try await self.leased("a PostgreSQL transaction", timeoutSec: timeoutSec) { connection in
                        try await connection.rows("BEGIN", logger: self.logger)
                        do {
                            let result = try await body(connection, self.clock.now().epochMilliseconds)
                            try await connection.rows("COMMIT", logger: self.logger)
                            return result
                        } catch {
                            // A closed connection never answers a statement written to it.
                            if !connection.isClosed { _ = try? await connection.rows("ROLLBACK", logger: self.logger) }
                            throw error
                        }
                    }
                }
            } catch let error as RetryableConflict where attempt < 5 {
                logger.debug("retrying transaction after \(error.sqlState)")
                try await Task.sleep(for: .milliseconds(Int64(attempt * 5)))
            }
        }
    }

    /// Turns driver errors into `BatonError`s users can act on; deadlocks and serialization
    /// failures become `RetryableConflict` for `transaction` to retry.
    func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as BatonError {
            throw error
        } catch let error as RetryableConflict {
            throw error
        } catch let error as DuplicateJobID {
            throw error
        } catch let error as PSQLError {
            let state = error.serverInfo?[.sqlState]
            if state == "40001" || state == "40P01" { throw RetryableConflict(sqlState: state ?? "") }
            throw BatonError(.storeUnavailable, field: "store", "PostgreSQL at \(endpoint.redacted): \(Self.describe(error))")
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw BatonError(.storeUnavailable, field: "store", "PostgreSQL at \(endpoint.redacted): \(error)")
        }
    }

    static func describe(_ error: PSQLError) -> String {
        if let message = error.serverInfo?[.message] {
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        }
        return "\(error.code)"
    }
}

struct RetryableConflict: Error {
    let sqlState: String
}

extension JobStore where Self == PostgresJobStore {
    /// The multi-node engine on the PostgreSQL database at `url`.
    public static func postgres(url: String, options: PostgresJobStore.Options = .init(),
                                clock: BatonClock = .system) throws -> PostgresJobStore {
        try PostgresJobStore(url: url, options: options, clock: clock)
    }
}

extension PostgresConnection {
    /// Runs one statement and reads its whole result. Always use this rather than `query`
    /// alone: a statement's error (a constraint violation, say) arrives with its result, and
    /// a result that is never read would hide it.
    @discardableResult
    func rows(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRandomAccessRow] {
        var out: [PostgresRandomAccessRow] = []
        for try await row in try await self.query(query, logger: logger) { out.append(row.makeRandomAccess()) }
        return out
    }
}

extension PostgresConnection {
    /// Runs a prepared statement (prepared on this connection at first use) and reads its
    /// whole result.
    ///
    /// postgres-nio remembers a failed prepare on the connection and returns that error on
    /// every later use without preparing again (a claim that ran before a migration finished,
    /// a plan invalidated by a schema change). Unless the error is about the data (a key
    /// conflict, a serialization failure or deadlock), the connection is closed so that the
    /// pool replaces it with a fresh one.
    @discardableResult
    func run<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger) async throws -> [Statement.Row] {
        do {
            var out: [Statement.Row] = []
            for try await row in try await execute(statement, logger: logger) { out.append(row) }
            return out
        } catch let error as PSQLError {
            let state = error.serverInfo?[.sqlState] ?? ""
            if !(state.hasPrefix("23") || state.hasPrefix("40")) { try? await close() }
            throw error
        }
    }
}

extension PostgresRandomAccessRow {
    /// The column `name` decoded as `T`; a missing column or a type mismatch is a bug, reported
    /// with the column's name.
    func get<T: PostgresDecodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        do {
            return try self[name].decode(T.self)
        } catch {
            throw BatonError(.internal, field: name, "cannot read column \(name) as \(T.self): \(error)")
        }
    }
}
