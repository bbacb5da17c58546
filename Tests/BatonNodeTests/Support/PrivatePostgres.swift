import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A PostgreSQL server of the test's own (`scripts/postgres` with a private data directory
/// and port), for tests that restart the server and so must not share one.
final class PrivatePostgres: Sendable {
    let directory: String
    let port: Int
    let url: String

    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("scripts/postgres").path
    }

    /// Starts a server on a random port below the ephemeral range (so no client connection
    /// holds it), trying another port when one is taken.
    init() async throws {
        var lastError: (any Error)?
        for _ in 0..<4 {
            let directory = "/tmp/baton-pg-\(UUID().uuidString.prefix(8).lowercased())"
            let port = Int.random(in: 20_000...29_999)
            do {
                url = try await Self.run("start", directory: directory, port: port).trimmingCharacters(in: .whitespacesAndNewlines)
                self.directory = directory
                self.port = port
                return
            } catch {
                lastError = error
                _ = try? await Self.run("stop", directory: directory, port: port)
                _ = try? await Self.shell(["rm", "-rf", directory])
            }
        }
        throw lastError ?? PrivatePostgresError(message: "could not start a private PostgreSQL")
    }

    func restart() async throws { _ = try await Self.run("restart", directory: directory, port: port) }

    func stop() async {
        _ = try? await Self.run("stop", directory: directory, port: port)
        _ = try? await Self.shell(["rm", "-rf", directory])
    }

    @discardableResult
    static func run(_ command: String, directory: String, port: Int) async throws -> String {
        try await shell(["bash", script, command], environment: ["BATON_PG_DIR": directory, "BATON_PG_PORT": String(port)])
    }

    /// Runs a command to its end and returns its standard output. Output goes through a file
    /// and the exit is polled: `waitUntilExit` after reading a pipe can hang on Linux.
    static func shell(_ arguments: [String], environment: [String: String] = [:]) async throws -> String {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("pg-\(UUID().uuidString).out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = FileHandle.standardError
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Reaped here with waitpid: Foundation sometimes leaves a child that started a daemon
        // (pg_ctl) as a zombie and never reports its exit.
        let pid = process.processIdentifier
        var status: Int32 = 0
        var exitCode: Int32?
        let deadline = Date().addingTimeInterval(300)
        while exitCode == nil && Date() < deadline {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid {
                exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            } else if reaped < 0 {
                // Foundation reaped it first.
                exitCode = process.isRunning ? nil : process.terminationStatus
                if exitCode == nil { try await Task.sleep(for: .milliseconds(50)) }
            } else {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        guard exitCode == 0 else {
            throw PrivatePostgresError(message: "\(arguments.joined(separator: " ")) failed (\(exitCode.map(String.init) ?? "timed out")): \(text)")
        }
        return text
    }
}

struct PrivatePostgresError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
