import ArgumentParser
import BatonCore
import BatonStore
import Foundation

extension DLQ {
    struct ShowLetter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Show a dead letter as an on-call engineer needs it: envelope, progress, attempts, every error, logs.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The job id.") var job: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await reporting {
                let store = try await openStore(try global.loadConfig())
                let detail = try await store.detail(id: job)
                try await store.close()
                guard let detail else { throw BatonError(.notFound, field: "job_id", "no job with id \"\(job)\"") }
                let report = DeadLetterReport(detail)
                if json { return printJSON(report.json) }
                print(Self.render(report))
            }
        }

        static func render(_ report: DeadLetterReport) -> String {
            let job = report.job
            var lines = [
                "job            \(job.id)   \(job.state.rawValue)\(job.lastReason.map { " (\($0))" } ?? "")",
                "failed stage   \(report.failedStage ?? "-")   last successful stage \(report.lastSuccessfulStage ?? "none")",
                "attempts       \(report.attemptsUsed) of \(report.attemptBudget)   retries \(report.retryCount)   "
                    + "backoff waited \(Format.duration(report.cumulativeBackoffSec))",
            ]
            if let key = job.spec.idempotencyKey { lines.append("key            \(key)") }
            lines.append("")
            var errors = Table("AT", "STAGE", "ATTEMPT", "NODE", "CLASS", "REASON", "STATUS", "MESSAGE")
            for error in report.errors {
                let status = error.httpStatus.map { "http \($0)" } ?? error.exitCode.map { "exit \($0)" } ?? "-"
                errors.add(Format.time(error.at), error.stage, String(error.attempt), error.node,
                           error.errorClass?.rawValue ?? "-", error.reason, status, error.message ?? "")
            }
            lines.append(report.errors.isEmpty ? "no errors recorded" : errors.render())
            if !report.logs.isEmpty {
                lines.append("")
                lines.append("logs (node:path):")
                lines.append(contentsOf: report.logs.map { "  " + $0 })
            }
            lines.append("")
            lines.append("envelope:")
            lines.append(Format.json(job.spec.envelope))
            lines.append("")
            lines.append("redrive: baton dlq redrive \(job.id)   (or --from-start)")
            return lines.joined(separator: "\n")
        }
    }
}

struct Gate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Human gates: idempotency keys whose jobs kept dying, holding new jobs until released.",
        subcommands: [List.self, Release.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List gates, held ones first.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await reporting {
                let store = try await openStore(try global.loadConfig())
                let gates = try await store.gates()
                try await store.close()
                if json { return printJSON(.array(gates.map(\.json))) }
                var table = Table("KEY", "STATE", "SINCE", "HELD JOBS", "DEAD JOBS", "RELEASED")
                for gate in gates {
                    table.add(gate.key, gate.state.rawValue, Format.time(gate.heldSince), String(gate.heldJobs),
                              gate.deadJobs.joined(separator: ","), gate.releasedAt.map { Format.time($0) } ?? "-")
                }
                print(gates.isEmpty ? "no gates" : table.render())
            }
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Release a held gate: the jobs it holds are queued, and the key's dead-letter count starts again.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The idempotency key.") var key: String

        func run() async throws {
            try await reporting {
                let store = try await openStore(try global.loadConfig())
                let release = try await store.releaseGate(key: key)
                try await store.close()
                print("released gate \"\(release.gate.key)\": \(release.queued.count) job\(release.queued.count == 1 ? "" : "s") queued"
                      + (release.queued.isEmpty ? "" : " (\(release.queued.joined(separator: ", ")))"))
            }
        }
    }
}
