import ArgumentParser
import BatonCore
import BatonNode
import BatonStore
import Foundation

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enqueue one envelope or an array of envelopes from a JSON file, or '-' for standard input.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "A JSON file, or - to read standard input.") var file: String
    @Flag(help: "Print the result as JSON.") var json = false

    func run() async throws {
        try await reporting {
            let config = try global.loadConfig()
            let data = try readInput(file)
            // Everything is validated before anything is stored: a bad batch stores nothing.
            let specs = try EnvelopeReader(defaults: config.defaults).read(data)
            let store = try await openStore(config)
            let results = try await store.enqueue(specs)
            try await store.close()
            if json {
                printJSON(.array(results.map {
                    .object(["job_id": .string($0.jobID), "deduplicated": .bool($0.deduplicated), "gated": .bool($0.gated)])
                }))
            } else {
                for result in results {
                    let what = result.deduplicated ? "deduplicated (existing job)"
                        : result.gated ? "gated: its idempotency key's human gate holds it (see `baton gate list`)" : "enqueued"
                    print("\(result.jobID)  \(what)")
                }
            }
        }
    }
}

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List jobs, newest first.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Only jobs in this state (repeatable): queued, running, retry_wait, succeeded, dead, cancelled, expired.")
    var state: [String] = []
    @Option(help: "Only jobs in this lane.") var lane: String?
    @Option(help: "At most this many jobs.") var limit = 50
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await reporting {
            var states: [JobState] = []
            for name in state { states.append(try JobState.parse(name)) }
            guard (1...100_000).contains(limit) else {
                throw BatonError(.invalidInput, field: "--limit", "expected an integer from 1 to 100000, got \(limit)")
            }
            let store = try await openStore(try global.loadConfig())
            let jobs = try await store.jobs(matching: JobFilter(states: states, lane: lane, limit: limit))
            try await store.close()
            if json { return printJSON(.array(jobs.map(\.json))) }
            var table = Table("JOB", "STATE", "LANE", "STAGE", "ATTEMPTS", "NODE", "AGE", "REASON")
            for job in jobs {
                let stage = job.stageIndex < job.spec.stages.count ? job.spec.stages[job.stageIndex].name : "done"
                table.add(job.id, job.state.rawValue, job.spec.lane, "\(stage) (\(min(job.stageIndex + 1, job.spec.stages.count))/\(job.spec.stages.count))",
                          "\(job.attempts)/\(job.spec.retry.maxAttempts)", job.leaseNode ?? "-", Format.age(job.enqueuedAt),
                          job.lastReason ?? "")
            }
            print(jobs.isEmpty ? "no jobs" : table.render())
        }
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one job: its stages, attempts and event log.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The job id.") var job: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await reporting {
            let store = try await openStore(try global.loadConfig())
            guard let detail = try await store.detail(id: job) else {
                throw BatonError(.notFound, field: "job_id", "no job with id \"\(job)\"")
            }
            try await store.close()
            if json {
                return printJSON(detail.json)
            }
            print(Self.render(detail))
        }
    }

    static func render(_ detail: JobDetail) -> String {
        let job = detail.job
        var lines: [String] = []
        lines.append("job       \(job.id)")
        lines.append("state     \(job.state.rawValue)\(job.lastReason.map { " (\($0))" } ?? "")")
        lines.append("lane      \(job.spec.lane)   priority \(job.spec.priority)")
        if let key = job.spec.idempotencyKey { lines.append("key       \(key)") }
        lines.append("attempts  \(job.attempts)/\(job.spec.retry.maxAttempts)   retries \(job.retryCount)   backoff \(Format.duration(job.cumulativeBackoffSec))")
        if let node = job.leaseNode { lines.append("lease     \(node) until \(Format.time(job.leaseExpiresAt))   fence \(job.fence)") }
        if let node = job.lastNode {
            lines.append("last node \(node), last heard \(Format.time(job.lastNodeAt))")
        }
        if let message = job.lastMessage { lines.append("last      \(message)") }
        lines.append("")
        var stages = Table("#", "STAGE", "RUN", "STATE", "RUNS", "NODE", "TOOK", "STATUS", "HANDOFF", "OUTPUT")
        for stage in detail.stages {
            let took = stage.startedAt.flatMap { start in stage.finishedAt.map { Format.duration($0.timeIntervalSince(start)) } } ?? "-"
            let status = stage.httpStatus.map { "http \($0)" } ?? stage.exitCode.map { "exit \($0)" } ?? stage.lastReason ?? "-"
            let output = stage.output.map { output in
                (output.values.keys.sorted() + output.artifacts.map { _ in "artifact" }).joined(separator: ",")
            } ?? "-"
            stages.add(String(stage.index + 1), stage.name, stage.kind, stage.state.rawValue, String(stage.attempts),
                       stage.node ?? "-", took, status, stage.handoffMs.map { "\($0) ms" } ?? "-", output.isEmpty ? "-" : output)
        }
        lines.append(stages.render())
        if !detail.attempts.isEmpty {
            lines.append("")
            var attempts = Table("ATTEMPT", "FENCE", "STAGE", "NODE", "OUTCOME", "EXIT", "REASON")
            for a in detail.attempts {
                attempts.add(String(a.attempt), String(a.fence), a.stageName, a.nodeID, a.outcome.rawValue,
                             a.report.exitCode.map(String.init) ?? "-", [a.reason, a.message].compactMap { $0 }.joined(separator: ": "))
            }
            lines.append(attempts.render())
            if let tail = detail.attempts.last(where: { $0.report.stderr != nil })?.report.stderr {
                lines.append("")
                lines.append("last stderr:")
                lines.append(tail.split(separator: "\n", omittingEmptySubsequences: false).suffix(10).map { "  " + $0 }.joined(separator: "\n"))
            }
        }
        let handovers = Handover.timeline(detail)
        if !handovers.isEmpty {
            lines.append("")
            lines.append("handovers (who held the job, and how long it sat between holders):")
            lines.append(contentsOf: handovers.map { "  " + $0 })
        }
        lines.append("")
        lines.append("events:")
        for event in detail.events {
            lines.append("  \(Format.time(event.at))  \(event.kind.rawValue.padding(toLength: 20, withPad: " ", startingAt: 0)) \(event.summary)")
        }
        return lines.joined(separator: "\n")
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job that has not finished.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The job id.") var job: String
    @Option(help: "Why, for the event log.") var reason = "cancelled by operator"

    func run() async throws {
        try await reporting {
            let store = try await openStore(try global.loadConfig())
            let record = try await store.cancel(jobID: job, reason: reason)
            try await store.close()
            print("\(record.id)  cancelled")
        }
    }
}

struct DLQ: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "Dead letters: jobs that will not be retried automatically.",
        subcommands: [List.self, ShowLetter.self, Redrive.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead and expired jobs.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "At most this many.") var limit = 100
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await reporting {
                let store = try await openStore(try global.loadConfig())
                let jobs = try await store.jobs(matching: JobFilter(states: JobState.deadLetterStates, limit: limit))
                try await store.close()
                if json { return printJSON(.array(jobs.map(\.json))) }
                var table = Table("JOB", "STATE", "LANE", "FAILED STAGE", "LAST OK", "ATTEMPTS", "REASON", "MESSAGE")
                for job in jobs {
                    let stage = job.stageIndex < job.spec.stages.count ? job.spec.stages[job.stageIndex].name : "-"
                    table.add(job.id, job.state.rawValue, job.spec.lane, stage, job.lastSuccessfulStage ?? "-",
                              "\(job.attempts)/\(job.spec.retry.maxAttempts)", job.lastReason ?? "-", job.lastMessage ?? "")
                }
                print(jobs.isEmpty ? "no dead letters" : table.render())
            }
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue a dead letter again, resuming at the stage that failed, with a new attempt budget.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The job id.") var job: String?
        @Flag(help: "Redrive every dead letter.") var all = false
        @Flag(help: "Start again at the first stage (dropping what earlier stages handed on).") var fromStart = false

        func validate() throws {
            if job != nil && all { throw ValidationError("give either a job id or --all, not both") }
            if job == nil && !all { throw ValidationError("give a job id or --all") }
            if all && fromStart { throw ValidationError("--from-start applies to one job: give its id") }
        }

        func run() async throws {
            try await reporting {
                let store = try await openStore(try global.loadConfig())
                if let job {
                    let record = try await store.redrive(jobID: job, fromStart: fromStart)
                    print("\(record.id)  queued again at stage \(record.spec.stages[min(record.stageIndex, record.spec.stages.count - 1)].name)")
                } else {
                    let ids = try await store.redriveAll()
                    print("redrove \(ids.count) job\(ids.count == 1 ? "" : "s")")
                }
                try await store.close()
            }
        }
    }
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Configuration tools.", subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate baton.yaml and print the effective settings.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await reporting {
                let config = try global.loadConfig()
                let summary: [(String, String)] = [
                    ("store", config.redactedStore),
                    ("node.id", config.node.id),
                    ("node.region", config.node.region ?? "-"),
                    ("node.tags", config.node.tags.joined(separator: ",")),
                    ("node.capacity", String(config.node.capacity)),
                    ("defaults.lane", config.defaults.lane),
                    ("defaults.lease_ttl_sec", String(config.defaults.leaseTTLSec)),
                    ("defaults.exec_timeout_sec", String(config.defaults.execTimeoutSec)),
                    ("defaults.retry.max_attempts", String(config.defaults.retry.maxAttempts)),
                    ("config_hash", config.configHash),
                ]
                if json {
                    return printJSON(.object(Dictionary(uniqueKeysWithValues: summary.map { ($0.0, JSONValue.string($0.1)) })
                        .merging(["valid": .bool(true)]) { a, _ in a }))
                }
                print("configuration is valid")
                for (key, value) in summary { print("  \(key.padding(toLength: 28, withPad: " ", startingAt: 0)) \(value)") }
            }
        }
    }
}
