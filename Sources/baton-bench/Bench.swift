import ArgumentParser
import BatonCore
import BatonNode
import BatonPostgres
import BatonSQLite
import BatonStore
import Foundation
import Histogram
import Logging
import ServiceLifecycle
import Synchronization

/// Throughput and latency benchmarks, and the chaos soak. Figures are printed with the machine
/// they ran on and recorded in docs/BENCHMARKS.md; tests never assert on speed.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton-bench",
        abstract: "Baton's benchmarks (the default) and its chaos soak.",
        subcommands: [BenchRun.self, ChaosCommand.self], defaultSubcommand: BenchRun.self)
}

struct BenchRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Measure Baton's enqueue and drain throughput and idle pickup latency.",
        discussion: """
            drain: enqueue N noop jobs, then run them with in-process worker nodes (--processes 0) or \
            with real `baton worker` processes (--processes N). pickup: with idle worker processes, \
            enqueue one job at a time and measure enqueue → claim from the event log.
            """)

    enum Scenario: String, ExpressibleByArgument { case drain, pickup, rate, claimCost = "claim-cost", rss }
    enum Engine: String, ExpressibleByArgument { case sqlite, postgres }

    @Option(help: "drain, pickup, rate (latency at a fixed offered rate), claim-cost (claim latency with a small and a large queue) or rss (an idle worker's memory).")
    var scenario: Scenario = .drain
    @Option(help: "sqlite or postgres.") var store: Engine = .sqlite
    @Option(help: "PostgreSQL URL (default: $BATON_BENCH_POSTGRES_URL, then $BATON_TEST_POSTGRES_URL).")
    var postgresURL: String?
    @Option(help: "Noop jobs to enqueue and drain.") var jobs = 20_000
    @Option(help: "Envelopes per enqueue call.") var batch = 1_000
    @Option(help: "Worker capacity (jobs claimed and run at once) per node.") var capacity = 64
    @Option(help: "Worker nodes inside this process (with --processes 0).") var nodes = 1
    @Option(help: "`baton worker` processes to drain with; 0 runs the nodes inside this process.")
    var processes = 0
    @Option(help: "The baton executable for --processes (default: next to this one).") var baton: String?
    @Option(help: "SQLite synchronous mode: normal or full.") var synchronous = "normal"
    @Option(help: "Repetitions; the median is reported.") var runs = 3
    @Option(help: "Pickup samples.") var samples = 500
    @Option(help: "Cap the main lane (all bench jobs) at this many running jobs across the cluster; without it the lane has no cap.")
    var laneCap: Int?
    @Option(help: "Spread drain jobs over this many session keys (each session runs one job at a time, in order); 0: no sessions.")
    var sessions = 0
    @Option(help: "rate: jobs per second offered.") var rate = 500.0
    @Option(help: "rate: seconds to offer them for.") var seconds = 20.0
    @Option(help: "claim-cost: queue sizes to compare, comma-separated.") var queued = "10000,1000000"
    @Option(help: "PostgreSQL synchronous_commit for the run: on (durable, the default) or off (set with ALTER SYSTEM, reset afterwards).")
    var synchronousCommit = "on"

    func validate() throws {
        for (name, value) in [("--jobs", jobs), ("--batch", batch), ("--capacity", capacity), ("--nodes", nodes), ("--runs", runs),
                              ("--samples", samples)] where value < 1 {
            throw ValidationError("\(name): expected a positive integer, got \(value)")
        }
        if processes < 0 { throw ValidationError("--processes: expected 0 or more, got \(processes)") }
        if sessions < 0 { throw ValidationError("--sessions: expected 0 or more, got \(sessions)") }
        if let laneCap, laneCap < 1 { throw ValidationError("--lane-cap: expected a positive integer, got \(laneCap)") }
        guard rate > 0, rate.isFinite, seconds > 0, seconds.isFinite else {
            throw ValidationError("--rate and --seconds: expected positive numbers, got \(rate) and \(seconds)")
        }
        guard ["normal", "full"].contains(synchronous) else { throw ValidationError("--synchronous: expected normal or full, got \(synchronous)") }
        guard ["on", "off"].contains(synchronousCommit) else {
            throw ValidationError("--synchronous-commit: expected on or off, got \(synchronousCommit)")
        }
    }

    func run() async throws {
        bootstrapBenchLogging(.warning)
        print(Machine.describe())
        if store == .postgres && synchronousCommit == "off" {
            try setSynchronousCommit(off: true)
            try await Task.sleep(for: .milliseconds(300))
        }
        defer { if store == .postgres && synchronousCommit == "off" { try? setSynchronousCommit(off: false) } }
        let probe = try await openStore()
        if let postgres = probe.store as? PostgresJobStore {
            let settings = try await postgres.serverSettings().map { "\($0.name)=\($0.value)" }.joined(separator: ", ")
            print("postgresql: \(settings)")
        }
        try await probe.close()
        switch scenario {
        case .drain: try await drain()
        case .pickup: try await pickup()
        case .rate: try await offeredRate()
        case .claimCost: try await claimCost()
        case .rss: try await idleRSS()
        }
    }

    // MARK: Drain

    func drain() async throws {
        let workers = processes > 0 ? "\(processes) worker process\(processes == 1 ? "" : "es")" : "\(nodes) in-process node\(nodes == 1 ? "" : "s")"
        print("store=\(store.rawValue)\(store == .sqlite ? " synchronous=\(synchronous)" : " synchronous_commit=\(synchronousCommit)"), "
              + "jobs=\(jobs), batch=\(batch), \(workers) × capacity \(capacity), lane cap \(laneCap.map(String.init) ?? "none"), "
              + "sessions \(sessions == 0 ? "none" : String(sessions)), runs=\(runs)")
        var enqueueRates: [Double] = []
        var drainRates: [Double] = []
        for run in 1...runs {
            let (enqueue, drain) = try await drainOnce()
            enqueueRates.append(enqueue)
            drainRates.append(drain)
            print(String(format: "run %d: enqueue %.0f jobs/s, drain %.0f jobs/s", run, enqueue, drain))
        }
        print(String(format: "median: enqueue (batch %d) %.0f jobs/s, drain (noop, %@ × capacity %d) %.0f jobs/s",
                     batch, median(enqueueRates), workers, capacity, median(drainRates)))
    }

    func drainOnce() async throws -> (Double, Double) {
        let bench = try await openStore()
        defer { bench.removeDirectory() }
        let store = bench.store
        let specs = (0..<jobs).map { index in
            JobSpec(id: JobID.make(), sessionKey: sessions > 0 ? "session-\(index % sessions)" : nil,
                    stages: [StageSpec(name: "noop", run: .noop)])
        }
        let enqueueStart = ContinuousClock.now
        for start in stride(from: 0, to: specs.count, by: batch) {
            _ = try await store.enqueue(Array(specs[start..<min(start + batch, specs.count)]))
        }
        let enqueueTime = seconds(ContinuousClock.now - enqueueStart)

        let drainTime: Double
        if processes > 0 {
            drainTime = try await drainWithProcesses(bench, first: specs[0].id)
        } else {
            let workers = (0..<nodes).map { index in
                WorkerNode(store: store, options: WorkerOptions(nodeID: "bench-\(index)", capacity: capacity, pollIntervalSec: 0.01,
                                                                drainTimeoutSec: 5, rescueIntervalSec: 60,
                                                                logDirectory: bench.directory.appendingPathComponent("logs").path,
                                                                laneCaps: laneCap.map { ["main": $0] }))
            }
            let drainStart = ContinuousClock.now
            drainTime = try await withThrowingTaskGroup(of: Void.self, returning: Double.self) { group in
                for worker in workers { group.addTask { try await worker.run() } }
                var progress = Progress(total: jobs, what: "drain")
                while true {
                    let done = workers.map(\.succeededCount).reduce(0, +)
                    progress.show(done)
                    if done >= jobs { break }
                    try await Task.sleep(for: .milliseconds(2))
                }
                let drainTime = seconds(ContinuousClock.now - drainStart)
                for worker in workers { worker.beginDrain() }
                try await group.waitForAll()
                return drainTime
            }
        }
        try await bench.close()
        return (Double(jobs) / enqueueTime, Double(jobs) / drainTime)
    }

    /// Starts the worker processes on the full queue and times the drain from the job log:
    /// from the first claim (the queue's first job is in it) to the last completion. Process
    /// start-up is not counted, and the poll that notices the end adds nothing to the figure.
    func drainWithProcesses(_ bench: BenchStore, first: String) async throws -> Double {
        let workers = try (0..<processes).map { try bench.startWorker("bench-\($0)", capacity: capacity, baton: batonPath) }
        defer { stop(workers) }
        var progress = Progress(total: jobs, what: "drain")
        while true {
            let counts = try await bench.store.counts()
            progress.show(counts[.succeeded] ?? 0)
            if (counts[.succeeded] ?? 0) >= jobs { break }
            if let dead = workers.first(where: { !$0.isRunning }) {
                throw ValidationError("worker process \(dead.processIdentifier) exited (status \(dead.terminationStatus)); see \(bench.directory.path)")
            }
            // counts() reads the whole table: polling it often would take CPU from the workers.
            try await Task.sleep(for: .milliseconds(250))
        }
        let claimed = try await bench.store.detail(id: first)?.events.first { $0.kind == .claimed }?.at
        // The newest completions by seq; the last one by time is among them.
        let completed = try await bench.store.recentEvents(kinds: [.completed], limit: processes * capacity,
                                                           window: 10 * processes * capacity).map(\.at).max()
        guard let claimed, let completed else { throw ValidationError("the job log has no first claim or last completion") }
        return max(0.001, completed.timeIntervalSince(claimed))
    }

    // MARK: Pickup

    func pickup() async throws {
        if processes == 0 { return try await pickupInProcess() }
        let count = processes
        print("store=\(store.rawValue), \(samples) samples, \(count) idle worker process\(count == 1 ? "" : "es") "
              + "(poll interval 1 s: a faster pickup comes from the push wake-up)")
        let bench = try await openStore()
        defer { bench.removeDirectory() }
        let workers = try (0..<count).map {
            try bench.startWorker("pickup-\($0)", capacity: 4, baton: batonPath, pollIntervalMs: 1000)
        }
        defer { stop(workers) }
        try await Task.sleep(for: .seconds(2))
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000, numberOfSignificantValueDigits: .three)
        for _ in 0..<samples {
            let spec = JobSpec(id: JobID.make(), stages: [StageSpec(name: "noop", run: .noop)])
            _ = try await bench.store.enqueue(spec)
            var claimed: JobEvent?
            while claimed == nil {
                claimed = try await bench.store.events(jobID: spec.id).first { $0.kind == .claimed }
                if claimed == nil { try await Task.sleep(for: .microseconds(500)) }
            }
            // The store's own clock at enqueue (run_at) and at claim: `wait_ms` in the claim event.
            histogram.record(UInt64(claimed?.detail["wait_ms"].flatMap(UInt64.init) ?? 0))
            // Let the nodes go idle again before the next sample.
            try await Task.sleep(for: .milliseconds(20))
        }
        try await bench.close()
        print(String(format: "pickup (enqueue → claim, ms, event-log resolution 1 ms): p50 %d, p90 %d, p99 %d, max %d over %d samples",
                     histogram.valueAtPercentile(50), histogram.valueAtPercentile(90), histogram.valueAtPercentile(99),
                     histogram.max, histogram.totalCount))
    }

    /// Idle pickup with a worker node inside this process, timed on one monotonic clock with
    /// microsecond resolution: from the enqueue call, and from its acknowledgement (the commit),
    /// to the moment the stage starts running.
    func pickupInProcess() async throws {
        print("store=\(store.rawValue), \(samples) samples, 1 idle in-process node (its own connection pool and listener; "
              + "poll interval 1 s: a faster pickup comes from the push wake-up)")
        let bench = try await openStore()
        defer { bench.removeDirectory() }
        // SQLite wakes nodes of its own process only (other processes poll): the node shares the
        // bench's store, as the API and the worker share one in `baton up`.
        let workerStore = store == .sqlite ? bench.store : try await bench.openAnother()
        let starts = StageStarts()
        let worker = WorkerNode(store: workerStore,
                                options: WorkerOptions(nodeID: "pickup-0", capacity: 4, pollIntervalSec: 1, drainTimeoutSec: 5,
                                                       rescueIntervalSec: 60,
                                                       logDirectory: bench.directory.appendingPathComponent("logs").path),
                                executors: ExecutorRegistry(noop: starts))
        var fromCall = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var fromAck = fromCall
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            try await Task.sleep(for: .seconds(2))
            for _ in 0..<samples {
                let spec = JobSpec(id: JobID.make(), stages: [StageSpec(name: "noop", run: .noop)])
                let started = starts.expect(spec.id)
                let call = ContinuousClock.now
                _ = try await bench.store.enqueue(spec)
                let ack = ContinuousClock.now
                let stageStart = await started.value
                fromCall.record(UInt64(max(0, seconds(stageStart - call)) * 1e6))
                fromAck.record(UInt64(max(0, seconds(stageStart - ack)) * 1e6))
                try await Task.sleep(for: .milliseconds(20))
            }
            worker.beginDrain()
            try await group.waitForAll()
        }
        if store != .sqlite { try await workerStore.close() }
        try await bench.close()
        func line(_ label: String, _ h: Histogram<UInt64>) -> String {
            String(format: "%@: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms", label,
                   Double(h.valueAtPercentile(50)) / 1000, Double(h.valueAtPercentile(90)) / 1000,
                   Double(h.valueAtPercentile(99)) / 1000, Double(h.max) / 1000)
        }
        print("pickup over \(fromCall.totalCount) samples")
        print(line("  enqueue call → stage start", fromCall))
        print(line("  enqueue acknowledged (committed) → stage start", fromAck))
    }

    // MARK: Support

    var batonPath: String {
        baton ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("baton").path
    }

    func openStore() async throws -> BenchStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        switch store {
        case .sqlite:
            var options = SQLiteJobStore.Options()
            options.synchronous = synchronous == "full" ? .full : .normal
            let path = directory.appendingPathComponent("bench.db").path
            let sqlite = try SQLiteJobStore(path: path, options: options)
            try await sqlite.migrate()
            return BenchStore(store: sqlite, directory: directory, storeURL: "sqlite:\(path)",
                              extraConfig: "sqlite: {synchronous: \(synchronous)}", laneCap: laneCap,
                              reopen: { [options] in try SQLiteJobStore(path: path, options: options) })
        case .postgres:
            let environment = ProcessInfo.processInfo.environment
            guard let url = postgresURL ?? environment["BATON_BENCH_POSTGRES_URL"] ?? environment["BATON_TEST_POSTGRES_URL"] else {
                throw ValidationError("--store postgres needs --postgres-url (or BATON_BENCH_POSTGRES_URL); scripts/postgres start prints one")
            }
            let schema = "bench_" + UUID().uuidString.prefix(8).lowercased()
            var options = PostgresJobStore.Options()
            options.schema = schema
            options.dropSchemaOnClose = true
            let postgres = try PostgresJobStore(url: url, options: options)
            try await postgres.migrate()
            var shared = options
            shared.dropSchemaOnClose = false
            return BenchStore(store: postgres, directory: directory, storeURL: url,
                              extraConfig: "postgres: {schema: \(schema), max_connections: 4}", laneCap: laneCap,
                              reopen: { [shared] in try PostgresJobStore(url: url, options: shared) })
        }
    }

    func stop(_ workers: [Process]) {
        for worker in workers where worker.isRunning { kill(worker.processIdentifier, SIGKILL) }
        let deadline = Date().addingTimeInterval(10)
        while workers.contains(where: \.isRunning) && Date() < deadline { usleep(10_000) }
    }

    func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

/// A noop executor that tells the bench when each expected job's stage started.
final class StageStarts: StageExecutor, Sendable {
    private struct State {
        var waiting: [String: CheckedContinuation<ContinuousClock.Instant, Never>] = [:]
        var started: [String: ContinuousClock.Instant] = [:]
    }

    private let state = Mutex(State())

    /// A task that returns when `jobID`'s stage starts (create it before enqueueing).
    func expect(_ jobID: String) -> Task<ContinuousClock.Instant, Never> {
        Task {
            await withCheckedContinuation { continuation in
                let at = state.withLock { state -> ContinuousClock.Instant? in
                    if let at = state.started.removeValue(forKey: jobID) { return at }
                    state.waiting[jobID] = continuation
                    return nil
                }
                if let at { continuation.resume(returning: at) }
            }
        }
    }

    func execute(_ context: StageContext) async -> StageResult {
        let now = ContinuousClock.now
        let id = context.lease.jobID
        let waiter = state.withLock { state in
            if let waiter = state.waiting.removeValue(forKey: id) { return Optional(waiter) }
            state.started[id] = now
            return nil
        }
        waiter?.resume(returning: now)
        return .succeeded(.empty)
    }
}

/// One benchmark run's store, scratch directory and worker configuration.
struct BenchStore {
    let store: any JobStore
    let directory: URL
    let storeURL: String
    let extraConfig: String
    let laneCap: Int?
    /// Another handle on the same database (its own connections), as a second process would have.
    let reopen: @Sendable () async throws -> any JobStore

    func openAnother() async throws -> any JobStore { try await reopen() }

    func startWorker(_ node: String, capacity: Int, baton: String, pollIntervalMs: Int = 10) throws -> Process {
        let config = directory.appendingPathComponent("\(node).yaml")
        try """
            store: '\(storeURL)'
            node: {id: \(node), capacity: \(capacity), poll_interval_ms: \(pollIntervalMs), rescue_interval_sec: 60}
            logs: {dir: \(directory.appendingPathComponent("logs").path), level: warning}
            \(extraConfig)
            lanes: {main: \(laneCap.map(String.init) ?? "null")}
            """.write(to: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: baton)
        process.arguments = ["worker", "--config", config.path]
        let log = directory.appendingPathComponent("\(node).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    func close() async throws { try await store.close() }

    func removeDirectory() { try? FileManager.default.removeItem(at: directory) }
}

enum Machine {
    static func describe() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        let memory = ProcessInfo.processInfo.physicalMemory / (1 << 30)
        let os = ProcessInfo.processInfo.operatingSystemVersionString
        return "machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(cpu), \(memory) GiB RAM, \(os)"
    }
}

/// Prints a line at once (unbuffered), so progress shows when the output goes to a file or a pipe.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Warnings and errors to standard error; the figures go to standard output.
func bootstrapBenchLogging(_ level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}
