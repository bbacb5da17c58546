import ArgumentParser
import BatonCore
import BatonNode
import BatonStore
import Foundation

struct Cron: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Schedules: cron expressions, intervals and one-shot jobs, fired once per tick across the cluster.",
        subcommands: [List.self, Add.self, Remove.self, Pause.self, Resume.self, RunNow.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List schedules with their state, next fire time and last run.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await reporting {
                let now = Date()
                let listed = try await global.withStore { store in
                    var listed: [(ScheduleRecord, ScheduleRun?)] = []
                    for record in try await store.schedules() {
                        listed.append((record, try await store.scheduleRuns(id: record.id, limit: 1).first))
                    }
                    return listed
                }
                if json { return printJSON(.array(listed.map { $0.0.json(last: $0.1, now: now) })) }
                var table = Table("ID", "STATE", "WHEN", "LANE", "NEXT", "LAST TICK", "LAST RUN", "SOURCE")
                for (record, last) in listed {
                    let state = record.state == .paused ? "paused: \(record.reason ?? "")" : record.spec.enabled ? "active" : "disabled"
                    let run = last.map { run in run.jobID.map { "\($0) \(run.jobState?.rawValue ?? "gone")" } ?? (run.note ?? "-") } ?? "-"
                    table.add(record.id, state, record.spec.trigger.summary, record.spec.lane,
                              record.nextFire(now: now).map { Format.time($0) } ?? "-", last.map { Format.time($0.tick) } ?? "-", run,
                              record.source.rawValue)
                }
                print(listed.isEmpty ? "no schedules" : table.render())
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a schedule, or replace one with the same id (its state and last tick are kept).",
            discussion: """
                Either flags: baton cron add nightly --cron "0 3 * * *" --timezone Europe/Berlin --job job.json
                or a document with the configuration's schedule fields: baton cron add --file schedule.json
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The schedule id.") var id: String?
        @Option(help: "A 5-field cron expression or @daily, @hourly...") var cron: String?
        @Option(help: "An IANA time zone for --cron (default UTC).") var timezone: String?
        @Option(help: "An interval: 30s, 5m, 1h30m, 1d.") var every: String?
        @Option(help: "One-shot: an ISO 8601 time with its offset.") var at: String?
        @Option(help: "The job envelope (JSON file, or - for standard input) each tick enqueues.") var job: String?
        @Option(help: "The lane its jobs run in (default cron).") var lane: String?
        @Option(help: "While the previous run is unfinished: skip, queue or allow (default skip).") var overlap: String?
        @Option(help: "Ticks missed while no scheduler ran: skip, once or all (default once).") var misfire: String?
        @Option(help: "Consecutive failed runs that pause the schedule (default 3).") var pauseAfterFailures: Int?
        @Flag(help: "One-shot only: delete the schedule once its run succeeded.") var deleteAfterRun = false
        @Option(help: "A JSON document with the schedule's fields, instead of the flags.") var file: String?

        func run() async throws {
            try await reporting {
                let config = try global.loadConfig()
                let reader = EnvelopeReader(defaults: config.defaults)
                let spec = try file.map { file throws(BatonError) in
                    try ScheduleSpec.read(try JSONValue.parse(try readInput(file), what: file), path: "", reader: reader)
                } ?? fromFlags(reader)
                try spec.checkNew(now: Date(), field: file == nil ? "--at" : "at")
                let record = try await global.withStore { try await $0.putSchedule(spec, source: .api) }
                print("schedule \(record.id): \(record.spec.trigger.summary), next \(record.nextFire(now: Date()).map { Format.time($0) } ?? "never")")
            }
        }

        func fromFlags(_ reader: EnvelopeReader) throws(BatonError) -> ScheduleSpec {
            guard let id else { throw BatonError(.invalidInput, field: "ID", "is required: expected a schedule id (or --file)") }
            guard let job else { throw BatonError(.invalidInput, field: "--job", "is required: expected the job envelope's file") }
            var fields: [String: JSONValue] = ["id": .string(id), "job": try JSONValue.parse(try readInput(job), what: job)]
            let strings = ["cron": cron, "timezone": timezone, "every": every, "at": at, "lane": lane, "overlap": overlap,
                           "misfire": misfire]
            for (key, value) in strings { if let value { fields[key] = .string(value) } }
            if let pauseAfterFailures { fields["pause_after_failures"] = .int(Int64(pauseAfterFailures)) }
            if deleteAfterRun { fields["delete_after_run"] = .bool(true) }
            do {
                return try ScheduleSpec.read(.object(fields), path: "", reader: reader)
            } catch {
                // Name the flag the user typed, not the document field.
                var error = error
                if error.field == "id" {
                    error.field = "ID"
                } else if let field = error.field, fields[field] != nil || ["cron", "every", "at"].contains(field) {
                    error.field = "--" + field.replacingOccurrences(of: "_", with: "-")
                }
                throw error
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a schedule (its jobs stay). A configuration schedule comes back unless removed from the configuration.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The schedule id.") var id: String

        func run() async throws {
            try await reporting {
                try await global.withStore { try await $0.removeSchedule(id: id) }
                print("removed schedule \(id)")
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause a schedule: no tick fires until it is resumed.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The schedule id.") var id: String
        @Option(help: "Why (shown by cron list).") var reason = "paused by an operator"

        func run() async throws {
            try await reporting {
                _ = try await global.withStore { try await $0.setSchedulePaused(id: id, paused: true, reason: reason, ifVersion: nil) }
                print("paused schedule \(id)")
            }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resume a paused schedule from now: ticks due while it was paused are not run; its failure count starts again.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The schedule id.") var id: String

        func run() async throws {
            try await reporting {
                let record = try await global.withStore {
                    try await $0.setSchedulePaused(id: id, paused: false, reason: nil, ifVersion: nil)
                }
                print("resumed schedule \(id), next \(record?.nextFire(now: Date()).map { Format.time($0) } ?? "never")")
            }
        }
    }

    struct RunNow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run-now", abstract: "Enqueue the schedule's job once, now, outside its ticks (its next tick is unchanged).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The schedule id.") var id: String

        func run() async throws {
            try await reporting {
                let config = try global.loadConfig()
                let jobID = try await global.withStore {
                    try await $0.runScheduleNow(id: id, reader: EnvelopeReader(defaults: config.defaults))
                }
                print("\(jobID)  enqueued (manual run of \(id))")
            }
        }
    }
}
