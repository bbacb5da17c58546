import BatonCore
import BatonPostgres
import BatonSQLite
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A scratch directory with one store (a SQLite file, or a PostgreSQL schema of its own), and
/// real `baton` processes started against it.
final class ProcessHarness: @unchecked Sendable {
    // @unchecked: `workers` is only touched from the test's own task.
    enum Engine { case sqlite, postgres }

    let directory: URL
    let engine: Engine
    /// The SQLite file (SQLite harnesses only).
    let dbPath: String
    /// What `store:` says in every node's configuration.
    let storeURL: String
    /// The PostgreSQL schema (PostgreSQL harnesses only).
    let schema: String?
    let store: any JobStore
    private var workers: [Process] = []

    /// `postgresURL` overrides `BATON_TEST_POSTGRES_URL` (a server the test started itself).
    init(_ engine: Engine = .sqlite, postgresURL: String? = nil, name: String = #function) async throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("baton-\(name.prefix(24).filter(\.isLetter))-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.engine = engine
        dbPath = directory.appendingPathComponent("baton.db").path
        switch engine {
        case .sqlite:
            storeURL = "sqlite:\(dbPath)"
            schema = nil
            let sqlite = try SQLiteJobStore(path: dbPath)
            try await sqlite.migrate()
            store = sqlite
        case .postgres:
            let url = try #require(postgresURL ?? TestPostgresServer.url, "PostgreSQL harness without BATON_TEST_POSTGRES_URL")
            let schema = TestPostgresServer.freshSchema()
            var options = PostgresJobStore.Options()
            options.schema = schema
            options.maxConnections = 4
            options.listen = false
            options.dropSchemaOnClose = true
            let postgres = try PostgresJobStore(url: url, options: options)
            try await postgres.migrate()
            storeURL = url
            self.schema = schema
            store = postgres
        }
    }

    /// The `baton` executable: $BATON_BIN (set by scripts/test) or the debug build folder.
    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["BATON_BIN"], !path.isEmpty { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        for candidate in [".build/debug/baton", ".build/x86_64-unknown-linux-gnu/debug/baton", ".build/arm64-apple-macosx/debug/baton"] {
            let path = root.appendingPathComponent(candidate).path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return root.appendingPathComponent(".build/debug/baton").path
    }

    /// Writes a config file for a node and returns its path.
    func config(node: String, capacity: Int = 1, drainTimeoutSec: Double = 30, heartbeatIntervalSec: Double = 10,
                deadAfterMissed: Int = 3, pollIntervalMs: Int = 50, logLevel: String = "debug", tags: [String] = [],
                extra: String = "") throws -> String {
        let path = directory.appendingPathComponent("\(node).yaml").path
        let yaml = """
            store: '\(storeURL)'
            node:
              id: \(node)
              capacity: \(capacity)
              poll_interval_ms: \(pollIntervalMs)
              rescue_interval_sec: 0.25
              drain_timeout_sec: \(drainTimeoutSec)
              heartbeat_interval_sec: \(heartbeatIntervalSec)
              dead_after_missed: \(deadAfterMissed)
              tags: [\(tags.joined(separator: ", "))]
            logs:
              dir: \(directory.appendingPathComponent("logs").path)
              level: \(logLevel)
            \(schema.map { "postgres: {schema: \($0), max_connections: 4}" } ?? "")
            \(Self.laneDefaults(extra))
            \(extra)
            """
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Tests that are not about lanes run without the main lane's built-in cap of 4.
    static func laneDefaults(_ extra: String) -> String {
        extra.contains("lanes:") || extra.contains("agents:") ? "" : "lanes: {main: null}"
    }

    /// Starts `baton worker` for `node`. Its output goes to NODE.log in the scratch directory.
    @discardableResult
    func startWorker(_ node: String, capacity: Int = 1, drainTimeoutSec: Double = 30, heartbeatIntervalSec: Double = 10,
                     deadAfterMissed: Int = 3, pollIntervalMs: Int = 50, logLevel: String = "debug", tags: [String] = [],
                     extra: String = "", arguments: [String] = [], log: String? = nil) throws -> Process {
        let configPath = try config(node: node, capacity: capacity, drainTimeoutSec: drainTimeoutSec,
                                    heartbeatIntervalSec: heartbeatIntervalSec, deadAfterMissed: deadAfterMissed,
                                    pollIntervalMs: pollIntervalMs, logLevel: logLevel, tags: tags, extra: extra)
        let process = try launch(["worker", "--config", configPath] + arguments, log: log ?? "\(node).log")
        workers.append(process)
        return process
    }

    /// Runs `baton ARGS` and waits for it to exit, polling: a blocking wait would hold one of
    /// the few threads every test shares and stall the others. `environment` is added to this
    /// process's own.
    @discardableResult
    func run(_ arguments: [String], log: String? = nil, stdin: Data? = nil,
             environment: [String: String] = [:]) async throws -> Process {
        let process = try launch(arguments, log: log, stdin: stdin, environment: environment)
        while process.isRunning { try await Task.sleep(for: .milliseconds(10)) }
        return process
    }

    /// Starts `baton ARGS` and returns at once.
    func launch(_ arguments: [String], log: String? = nil, stdin: Data? = nil,
                environment: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.currentDirectoryURL = directory
        let logURL = directory.appendingPathComponent(log ?? "cli-\(UUID().uuidString.prefix(6)).log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        process.standardOutput = handle
        process.standardError = handle
        if let stdin {
            let pipe = Pipe()
            process.standardInput = pipe
            try process.run()
            pipe.fileHandleForWriting.write(stdin)
            try pipe.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
        return process
    }

    /// Runs `baton ARGS` and returns its exit status and combined output.
    func cli(_ arguments: [String], stdin: Data? = nil,
             environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
        let log = "cli-\(UUID().uuidString.prefix(8)).log"
        let process = try await run(arguments, log: log, stdin: stdin, environment: environment)
        let output = (try? String(contentsOf: directory.appendingPathComponent(log), encoding: .utf8)) ?? ""
        return (process.terminationStatus, output)
    }

    func log(of node: String) -> String {
        (try? String(contentsOf: directory.appendingPathComponent("\(node).log"), encoding: .utf8)) ?? ""
    }

    func signal(_ process: Process, _ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Polls `condition` every 50 ms until it holds or `timeout` passes.
    func waitUntil(timeout: Double, _ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out after \(timeout) s waiting for: \(what)")
        throw CancellationError()
    }

    func waitForExit(_ process: Process, timeout: Double) async throws {
        try await waitUntil(timeout: timeout, "process \(process.processIdentifier) to exit") { !process.isRunning }
    }

    /// For `defer`: kills every worker still running at once (so none outlives the test run),
    /// then closes the store and removes the scratch directory in the background.
    func finish() {
        killWorkers()
        Task { await self.shutdown() }
    }

    /// Kills (SIGKILL) every worker still running and waits for each to exit.
    func killWorkers() {
        for worker in workers where worker.isRunning {
            kill(worker.processIdentifier, SIGCONT)
            kill(worker.processIdentifier, SIGKILL)
        }
        let deadline = Date().addingTimeInterval(10)
        while workers.contains(where: \.isRunning) && Date() < deadline { usleep(10_000) }
    }

    /// Stops every worker still running (SIGKILL), closes the store and removes the scratch
    /// directory.
    func shutdown() async {
        killWorkers()
        try? await store.close()
        if ProcessInfo.processInfo.environment["BATON_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }
}

func sleepJob(_ seconds: Double, leaseTTL: Int = 2, maxAttempts: Int = 5, stages: Int = 1) -> JobSpec {
    JobSpec(id: JobID.make(), stages: (1...stages).map { StageSpec(name: "s\($0)", run: .sleep(seconds)) },
            leaseTTLSec: leaseTTL, retry: RetryPolicy(maxAttempts: maxAttempts, initialSec: 0.1, maxSec: 1, jitter: 0))
}
