import ArgumentParser
import BatonCore
import BatonNode
import BatonStore
import Foundation
import Logging

/// `baton`: the command tree.
public struct BatonCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "baton",
        abstract: "A durable task queue and task-chain orchestrator for fleets of agent and build nodes.",
        discussion: """
            Exit codes: 0 success; 1 the job is not found or not in a state that allows the operation;
            64 bad command line; 65 invalid envelope or configuration; 66 input file unreadable;
            69 store unavailable; 70 internal error; 75 the node id is held by another live process.
            """,
        version: BatonVersion.current,
        subcommands: [Up.self, Worker.self, Server.self, Submit.self, Jobs.self, Show.self, DLQ.self, Gate.self, Lanes.self, Inbound.self, Cron.self,
                      Cancel.self, Nodes.self, Models.self, Doctor.self,
                      ConfigCommand.self]
    )

    public init() {}
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (default: ./baton.yaml when it exists).")
    var config: String?

    @Option(name: .long, help: "Store, overriding the configuration and BATON_DB: a SQLite path, sqlite:PATH or postgres://...")
    var db: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    @Option(name: .long, help: "Log format: text, or json (one object a line; overrides logs.format).")
    var logFormat: String?

    func loadConfig() throws(BatonError) -> BatonConfig {
        var environment = ProcessInfo.processInfo.environment
        // --db wins over BATON_DB, so a BATON_DB it replaces is not validated either.
        if db != nil { environment["BATON_DB"] = nil }
        var config = try ConfigLoader.resolve(path: self.config, environment: environment)
        if let db { try ConfigLoader.overrideStore(db, source: "--db", in: &config) }
        if let logFormat {
            guard LogSettings.formats.contains(logFormat) else {
                throw BatonError(.invalidInput, field: "--log-format", "expected text or json, got \"\(logFormat)\"")
            }
            config.logs.format = logFormat
        }
        return config
    }
}

/// Opens the configured store. An error about the store names where its value was set
/// (`--db`, `BATON_DB` or the file's `store`), not always `store`.
func openStore(_ config: BatonConfig) async throws -> any JobStore {
    do {
        return try await StoreOpener.open(config)
    } catch var error as BatonError where error.field == "store" {
        error.field = config.storeSource
        throw error
    }
}

/// Runs a command body, turning Baton errors into a message on stderr and a stable exit code.
func reporting<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as BatonError {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(exitCode(for: error.code))
    }
}

func exitCode(for code: BatonError.Code) -> Int32 {
    switch code {
    case .invalidInput, .unsupportedSchema: 65
    case .unreadableInput: 66
    case .storeUnavailable: 69
    case .internal: 70
    case .conflict: 75
    default: 1
    }
}

func printJSON(_ value: JSONValue) { print(Format.json(value)) }

/// Logs to standard error at `level`, as text or (`format` json) one JSON object a line.
func bootstrapLogging(_ level: String?, format: String = "text") {
    let parsed = level.flatMap(Logger.Level.init(rawValue:)) ?? .info
    LoggingSystem.bootstrap { label in
        if format == "json" { return JSONLogHandler(label: label, level: parsed) }
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = parsed
        return handler
    }
}

extension GlobalOptions {
    /// Runs `body` with the configured store open, and closes the store afterwards, also when
    /// `body` throws.
    func withStore<T>(_ body: (any JobStore) async throws -> T) async throws -> T {
        let store = try await openStore(try loadConfig())
        do {
            let result = try await body(store)
            try await store.close()
            return result
        } catch {
            try? await store.close()
            throw error
        }
    }
}

/// The contents of `file`, or standard input for `-`.
func readInput(_ file: String) throws(BatonError) -> Data {
    if file == "-" { return FileHandle.standardInput.readDataToEndOfFile() }
    guard let contents = FileManager.default.contents(atPath: file) else {
        throw BatonError(.unreadableInput, field: file, "cannot read the file")
    }
    return contents
}
