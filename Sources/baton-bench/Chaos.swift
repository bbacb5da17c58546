import ArgumentParser
import BatonCore
import BatonPostgres
import BatonStore
import Foundation
import Logging
import Synchronization

/// The chaos soak: real `baton worker` processes on PostgreSQL, killed (`kill -9`) and
/// restarted every few seconds, the server restarted once and one worker stalled (SIGSTOP)
/// past its lease, while jobs keep arriving. At the end the store and the side-effect files
/// answer: is every job terminal, was any lost, completed twice, or a finished stage run again?
struct ChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Kill and stall worker processes and restart PostgreSQL while jobs run; check that nothing is lost or done twice.",
        discussion: """
            Bounded: it stops when every job is terminal, or fails at --duration. Prints \
            `chaos: N jobs, K kills, 0 lost, 0 duplicated` and exits 0 only when every check holds. \
            scripts/chaos starts a private PostgreSQL and passes --pg-restart.
            """)

    @Option(help: "PostgreSQL URL (default: $BATON_CHAOS_POSTGRES_URL, then $BATON_TEST_POSTGRES_URL).") var postgresURL: String?
    @Option(help: "Noop jobs.") var jobs = 100_000
    @Option(help: "Three-stage shell chains that write side-effect files.") var chains = 200
    @Option(help: "Seconds over which the jobs are submitted (so failures hit a flowing queue).") var produceOver = 60.0
    @Option(help: "Worker processes.") var workers = 3
    @Option(help: "Capacity of each worker.") var capacity = 32
    @Option(help: "Seconds between kills: MIN-MAX.") var killEvery = "2-5"
    @Option(help: "Shell command that restarts the PostgreSQL server (once, mid-run); none: no restart.") var pgRestart: String?
    @Option(help: "Lease TTL of the jobs, in seconds (the stall lasts longer than this).") var leaseTTL = 4
    @Option(help: "Give up (and fail) after this many seconds.") var duration = 900.0
    @Option(help: "The baton executable (default: next to this one).") var baton: String?
    @Flag(help: "Keep the scratch directory and schema for inspection.") var keep = false

    func validate() throws {
        guard jobs >= 0, chains >= 0, jobs + chains > 0 else {
            throw ValidationError("--jobs and --chains: expected 0 or more, and at least one job in all, got \(jobs) and \(chains)")
        }
        guard workers >= 1, capacity >= 1, leaseTTL >= 1 else {
            throw ValidationError("--workers, --capacity and --lease-ttl: expected positive integers, got \(workers), \(capacity), \(leaseTTL)")
        }
        guard produceOver > 0, produceOver.isFinite, duration > 0, duration.isFinite else {
            throw ValidationError("--produce-over and --duration: expected positive seconds, got \(produceOver) and \(duration)")
        }
    }

    func run() async throws {
        bootstrapBenchLogging(.error)
        say(Machine.describe())
        let environment = ProcessInfo.processInfo.environment
        guard let url = postgresURL ?? environment["BATON_CHAOS_POSTGRES_URL"] ?? environment["BATON_TEST_POSTGRES_URL"] else {
            throw ValidationError("chaos needs --postgres-url (or BATON_CHAOS_POSTGRES_URL); scripts/chaos starts a server")
        }
        let bounds = killEvery.split(separator: "-").compactMap { Double($0) }
        guard bounds.count == 2, bounds[0] > 0, bounds[0] <= bounds[1] else {
            throw ValidationError("--kill-every: expected MIN-MAX seconds such as 2-5, got \(killEvery)")
        }
        let soak = try await Soak(url: url, command: self, killBounds: bounds[0]...bounds[1])
        // Interrupted (Ctrl-C, SIGTERM from scripts/chaos's caller): take the workers along.
        let sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                soak.killWorkers()
                Foundation.exit(128 + number)
            }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }
        let ok = try await soak.run()
        if !ok { throw ExitCode(1) }
    }
}

/// One soak run: its schema, scratch directory, workers and tallies.
final class Soak: Sendable {
    let command: ChaosCommand
    let url: String
    let schema: String
    let directory: URL
    let sideEffects: URL
    let store: PostgresJobStore
    let killBounds: ClosedRange<Double>
    let batonPath: String
    let started = ContinuousClock.now
    /// Jobs the producer got an id for, by index (a retried batch gets the same ids back).
    private let submitted = Mutex<[Int: String]>([:])
    private let processes = Mutex<[String: Process]>([:])
    private let tallies = Mutex(Tallies())

    struct Tallies {
        var kills = 0
        var restarts = 0
        var pgRestarts = 0
        var failedRestarts = 0
        var stalls = 0
        var producerErrors = 0
    }

    var total: Int { command.jobs + command.chains }

    init(url: String, command: ChaosCommand, killBounds: ClosedRange<Double>) async throws {
        self.command = command
        self.url = url
        self.killBounds = killBounds
        schema = "chaos_" + UUID().uuidString.prefix(8).lowercased()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-chaos-\(UUID().uuidString.prefix(8))")
        sideEffects = directory.appendingPathComponent("side-effects")
        try FileManager.default.createDirectory(at: sideEffects, withIntermediateDirectories: true)
        var options = PostgresJobStore.Options()
        options.schema = schema
        options.maxConnections = 4
        options.listen = false
        store = try PostgresJobStore(url: url, options: options)
        try await store.migrate()
        batonPath = command.baton
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("baton").path
    }

    func elapsed() -> Double {
        let d = ContinuousClock.now - started
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    func run() async throws -> Bool {
        say("chaos: \(command.jobs) noop jobs + \(command.chains) chains over \(Int(command.produceOver)) s, "
              + "\(command.workers) workers × \(command.capacity), kill -9 every \(command.killEvery) s, lease \(command.leaseTTL) s, "
              + "PostgreSQL restart: \(command.pgRestart == nil ? "no" : "once"), schema \(schema), scratch \(directory.path)")
        let finished: Bool
        do {
            for index in 1...command.workers { try startWorker("chaos-\(index)") }
            finished = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask { try await self.produce(); return true }
                group.addTask { try await self.chaos() }
                let producerDone = try await group.next() ?? false
                let settled = producerDone ? try await group.next() ?? false : false
                group.cancelAll()
                return settled
            }
        } catch {
            stopWorkers()
            throw error
        }
        stopWorkers()
        let ok = try await audit(finished: finished)
        try await store.close()
        if ok && !command.keep {
            _ = try? sql("DROP SCHEMA \(schema) CASCADE")
            try? FileManager.default.removeItem(at: directory)
        }
        return ok
    }

    // MARK: Work

    /// Submits every job at an even pace over `produceOver` seconds, in batches with
    /// idempotency keys: a batch that failed (the server restarting) is sent again and
    /// deduplicated, never doubled.
    func produce() async throws {
        let batch = 200
        let perSecond = Double(total) / max(1, command.produceOver)
        let chainEvery = command.chains > 0 ? max(1, total / command.chains) : Int.max
        var chainsMade = 0
        var index = 0
        while index < total {
            var specs: [(Int, JobSpec)] = []
            while specs.count < batch && index < total {
                let isChain = chainsMade < command.chains && (index % chainEvery == 0 || total - index <= command.chains - chainsMade)
                if isChain { chainsMade += 1 }
                specs.append((index, isChain ? chainJob(index) : noopJob(index)))
                index += 1
            }
            while true {
                do {
                    let results = try await store.enqueue(specs.map(\.1))
                    submitted.withLock { map in for ((i, _), result) in zip(specs, results) { map[i] = result.jobID } }
                    break
                } catch {
                    tallies.withLock { $0.producerErrors += 1 }
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
            let due = Double(index) / perSecond
            let now = elapsed()
            if due > now { try await Task.sleep(for: .milliseconds(Int64((due - now) * 1000))) }
        }
    }

    var retry: RetryPolicy { RetryPolicy(maxAttempts: 100, initialSec: 0.2, multiplier: 2, maxSec: 2, jitter: 0.2) }

    func noopJob(_ index: Int) -> JobSpec {
        JobSpec(id: JobID.make(), idempotencyKey: "\(schema)-\(index)", stages: [StageSpec(name: "noop", run: .noop)],
                leaseTTLSec: command.leaseTTL, retry: retry)
    }

    /// Three stages that each sleep a little, then append `STAGE FENCE` to the job's file: a
    /// line for a fence later than the one the store recorded as finishing that stage would be
    /// a finished stage run again.
    func chainJob(_ index: Int) -> JobSpec {
        let file = sideEffects.appendingPathComponent("job-\(index)").path
        let stages = ["build", "sign", "upload"].map { name in
            // /bin/sh may be dash, which has no $RANDOM: each stage's pause is drawn here.
            StageSpec(name: name, run: .shell("sleep 0.\(Int.random(in: 0...7)); echo \"$BATON_STAGE $BATON_FENCE\" >> '\(file)'"))
        }
        return JobSpec(id: JobID.make(), idempotencyKey: "\(schema)-\(index)", stages: stages, leaseTTLSec: command.leaseTTL,
                       retry: retry, payload: .object(["file": .string(file)]))
    }

    // MARK: Chaos

    /// Kills a random worker every few seconds (restarting it at once under its node id),
    /// restarts PostgreSQL once when half the jobs are submitted and stalls one worker past its
    /// lease when three quarters are. Returns true once every job is terminal.
    func chaos() async throws -> Bool {
        var nextKill = elapsed() + Double.random(in: killBounds)
        var nextReport = elapsed() + 5
        var restarted = command.pgRestart == nil
        var stalled = false
        var stalledNode: String?
        var resumeAt = 0.0
        while elapsed() < command.duration {
            try await Task.sleep(for: .milliseconds(200))
            let now = elapsed()
            let produced = submitted.withLock { $0.count }
            if let node = stalledNode, now >= resumeAt {
                signal(node, SIGCONT)
                stalledNode = nil
            }
            if !restarted && produced >= total / 2, let restart = command.pgRestart {
                restarted = true
                let at = elapsed()
                let status = try await shell(restart)
                tallies.withLock { if status == 0 { $0.pgRestarts += 1 } else { $0.failedRestarts += 1 } }
                say(String(format: "  %6.1fs  PostgreSQL restarted (exit %d, took %.1f s)", at, status, elapsed() - at))
            }
            if !stalled && produced >= total * 3 / 4, let node = processes.withLock({ $0.keys.sorted().randomElement() }) {
                stalled = true
                stalledNode = node
                // Past its lease and the node's dead threshold: its jobs run elsewhere meanwhile.
                resumeAt = now + Double(command.leaseTTL) + 3
                signal(node, SIGSTOP)
                tallies.withLock { $0.stalls += 1 }
                say(String(format: "  %6.1fs  SIGSTOP %@ for %.0f s (lease %d s)", now, node, resumeAt - now, command.leaseTTL))
            }
            if now >= nextKill {
                nextKill = now + Double.random(in: killBounds)
                let victims = processes.withLock { $0.keys.sorted() }.filter { $0 != stalledNode }
                if let node = victims.randomElement() { try await kill(node) }
            }
            if now >= nextReport {
                nextReport = now + 5
                let counts = (try? await store.counts()) ?? [:]
                let done = JobState.allCases.filter(\.isTerminal).reduce(0) { $0 + (counts[$1] ?? 0) }
                let t = tallies.withLock { $0 }
                say(String(format: "  %6.1fs  submitted %d/%d, terminal %d, running %d, kills %d", now, produced, total, done,
                             counts[.running] ?? 0, t.kills))
                if produced == total && done >= total && stalledNode == nil { return true }
            }
        }
        if let node = stalledNode { signal(node, SIGCONT) }
        return false
    }

    func kill(_ node: String) async throws {
        guard let process = processes.withLock({ $0[node] }) else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        try await exit(process)
        tallies.withLock { $0.kills += 1 }
        try startWorker(node)
        tallies.withLock { $0.restarts += 1 }
    }

    func signal(_ node: String, _ signal: Int32) {
        if let process = processes.withLock({ $0[node] }) { Foundation.kill(process.processIdentifier, signal) }
    }

    func startWorker(_ node: String) throws {
        let config = directory.appendingPathComponent("\(node).yaml")
        try """
            store: '\(url)'
            node: {id: \(node), capacity: \(command.capacity), poll_interval_ms: 50, rescue_interval_sec: 0.5,
                   heartbeat_interval_sec: 0.5, dead_after_missed: 3, drain_timeout_sec: 2}
            logs: {dir: \(directory.appendingPathComponent("logs").path), level: warning}
            postgres: {schema: \(schema), max_connections: 4}
            lanes: {main: null}
            """.write(to: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: batonPath)
        process.arguments = ["worker", "--config", config.path]
        let log = directory.appendingPathComponent("\(node).log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        processes.withLock { $0[node] = process }
    }

    func killWorkers() {
        for process in processes.withLock({ Array($0.values) }) where process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
        }
    }

    func stopWorkers() {
        let all = processes.withLock { Array($0.values) }
        for process in all where process.isRunning {
            Foundation.kill(process.processIdentifier, SIGCONT)
            Foundation.kill(process.processIdentifier, SIGTERM)
        }
        let deadline = Date().addingTimeInterval(15)
        while all.contains(where: \.isRunning) && Date() < deadline { usleep(50_000) }
        for process in all where process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }

    func shell(_ command: String) async throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return -1
        }
        return try await exit(process) ?? process.terminationStatus
    }

    /// Waits for a child to end by polling, reaping it here when Foundation does not (seen on
    /// Linux with a child whose own child daemonizes, `pg_ctl restart`: it stayed a zombie and
    /// `isRunning` true). Returns the exit status when this reaped it.
    @discardableResult
    func exit(_ process: Process) async throws -> Int32? {
        var status: Int32 = 0
        while process.isRunning {
            if waitpid(process.processIdentifier, &status, WNOHANG) == process.processIdentifier {
                return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    // MARK: Audit

    /// Checks the run from the store (through psql, so no code under test reads its own
    /// writes) and the side-effect files, prints what it found and the summary line.
    func audit(finished: Bool) async throws -> Bool {
        let ids = submitted.withLock { $0 }
        var problems: [String] = []
        if !finished { problems.append("not every job reached a terminal state within \(Int(command.duration)) s") }
        if ids.count != total { problems.append("the producer got ids for \(ids.count) of \(total) jobs") }
        let s = schema
        let states = try sql("SELECT state, count(*) FROM \(s).jobs GROUP BY state ORDER BY state")
        let byState = Dictionary(uniqueKeysWithValues: states.map { ($0[0], Int($0[1]) ?? 0) })
        let stored = byState.values.reduce(0, +)
        let storedIDs = Set(try sql("SELECT id FROM \(s).jobs").compactMap(\.first))
        let lost = Set(ids.values).subtracting(storedIDs).count
        let notTerminal = byState.filter { !(JobState(rawValue: $0.key)?.isTerminal ?? false) }.values.reduce(0, +)
        let succeeded = byState["succeeded"] ?? 0
        if stored != total { problems.append("\(stored) jobs stored for \(total) submitted (a retried submission doubled?)") }
        // Completed twice: more than one `completed` event, or more than one successful run of a stage.
        let twiceCompleted = try sql("""
            SELECT job_id FROM \(s).events WHERE kind = 'completed' GROUP BY job_id HAVING count(*) > 1
            """).count
        let twiceStages = try sql("""
            SELECT job_id, stage_index FROM \(s).attempts WHERE outcome = 'succeeded' GROUP BY job_id, stage_index HAVING count(*) > 1
            """).count
        let refused = Int(try sql("SELECT count(*) FROM \(s).events WHERE kind = 'stale_write_refused'").first?.first ?? "0") ?? 0
        let rescued = Int(try sql("SELECT count(*) FROM \(s).events WHERE kind = 'heartbeat_lost'").first?.first ?? "0") ?? 0
        // Side effects: for each chain, the fence that finished each stage, and the runs its file saw.
        let finishing = try sql("""
            SELECT j.payload_file, a.stage_name, a.fence FROM \(s).attempts a
            JOIN (SELECT id, (spec::json -> 'payload' ->> 'file') AS payload_file FROM \(s).jobs
                  WHERE spec::json -> 'payload' ->> 'file' IS NOT NULL) j ON j.id = a.job_id
            WHERE a.outcome = 'succeeded'
            """)
        var reruns = 0
        var missingEffects = 0
        var atLeastOnceRepeats = 0
        var finishedBy: [String: [String: Int64]] = [:]
        for row in finishing { finishedBy[row[0], default: [:]][row[1]] = Int64(row[2]) ?? 0 }
        for (file, stages) in finishedBy {
            let lines = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: " ") }
            for (stage, fence) in stages {
                let runs = lines.filter { $0.count == 2 && $0[0] == stage }.compactMap { Int64($0[1]) }
                let finishing = runs.filter { $0 == fence }.count
                if finishing == 0 { missingEffects += 1 }
                reruns += runs.filter { $0 > fence }.count + max(0, finishing - 1)
                atLeastOnceRepeats += runs.filter { $0 < fence }.count
            }
        }
        let chainsDone = finishedBy.values.filter { $0.count == 3 }.count
        if lost > 0 { problems.append("\(lost) submitted jobs are missing from the store") }
        if notTerminal > 0 { problems.append("\(notTerminal) jobs are not terminal: \(byState)") }
        if succeeded != total { problems.append("\(total - succeeded) jobs did not succeed: \(byState)") }
        if twiceCompleted > 0 { problems.append("\(twiceCompleted) jobs completed twice") }
        if twiceStages > 0 { problems.append("\(twiceStages) stages recorded as finished twice") }
        if reruns > 0 { problems.append("\(reruns) finished stages ran again (side-effect lines after the finishing fence)") }
        if missingEffects > 0 { problems.append("\(missingEffects) finished stages left no side effect") }
        if chainsDone != command.chains { problems.append("\(chainsDone) of \(command.chains) chains finished all three stages") }
        let t = tallies.withLock { $0 }
        if t.failedRestarts > 0 || (command.pgRestart != nil && t.pgRestarts == 0) {
            problems.append("the PostgreSQL restart did not happen (\(t.failedRestarts) failed)")
        }
        say(String(format: "after %.1f s: %d jobs succeeded; %d kill -9 (each restarted), %d PostgreSQL restart, %d stall; "
                     + "%d leases rescued, %d stale writes refused, %d submissions retried; chains: %d stage runs cut and "
                     + "repeated before their finish (at-least-once), %d finished stages re-run",
                     elapsed(), succeeded, t.kills, t.pgRestarts, t.stalls, rescued, refused, t.producerErrors, atLeastOnceRepeats,
                     reruns))
        for problem in problems { say("  FAILED: \(problem)") }
        // Not done is lost, whatever the reason; an extra stored job is a duplicate.
        let duplicated = twiceCompleted + twiceStages + reruns + max(0, stored - total)
        say("chaos: \(total) jobs, \(t.kills) kills, \(max(lost + notTerminal, total - succeeded)) lost, \(duplicated) duplicated")
        if !problems.isEmpty { say("  scratch kept: \(directory.path) (with --keep under scripts/chaos, the server goes when it ends)") }
        return problems.isEmpty
    }

    /// Rows of a query, read with psql (fields split on tabs).
    func sql(_ query: String) throws -> [[String]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", url, "-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", query]
        let out = directory.appendingPathComponent("psql.out")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let handle = try FileHandle(forWritingTo: out)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        while process.isRunning { usleep(5_000) }
        try handle.close()
        let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
        guard process.terminationStatus == 0 else { throw ValidationError("psql failed: \(text)") }
        return text.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }
}
