import ArgumentParser
import BatonCore
import BatonNode
import BatonSQLite
import BatonStore
import Foundation
import Logging
import ServiceLifecycle

/// Throughput benchmarks. Figures are printed with the machine they ran on and recorded in
/// docs/BENCHMARKS.md; tests never assert on speed.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baton-bench",
        abstract: "Measure Baton's enqueue and drain throughput on the embedded SQLite engine.")

    @Option(help: "Noop jobs to enqueue and drain.") var jobs = 20_000
    @Option(help: "Envelopes per enqueue call.") var batch = 1_000
    @Option(help: "Worker capacity (jobs claimed and run at once) per node.") var capacity = 64
    @Option(help: "Worker nodes in this process.") var nodes = 1
    @Option(help: "SQLite synchronous mode: normal or full.") var synchronous = "normal"
    @Option(help: "Repetitions; the median is reported.") var runs = 3

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        print(Machine.describe())
        print("sqlite synchronous=\(synchronous), jobs=\(jobs), batch=\(batch), capacity=\(capacity), nodes=\(nodes), runs=\(runs)")
        var enqueueRates: [Double] = []
        var drainRates: [Double] = []
        for run in 1...runs {
            let (enqueue, drain) = try await once()
            enqueueRates.append(enqueue)
            drainRates.append(drain)
            print(String(format: "run %d: enqueue %.0f jobs/s, drain %.0f jobs/s", run, enqueue, drain))
        }
        print(String(format: "median: enqueue (batch %d) %.0f jobs/s, drain (noop, %d node%@ x capacity %d) %.0f jobs/s",
                     batch, median(enqueueRates), nodes, nodes == 1 ? "" : "s", capacity, median(drainRates)))
    }

    func once() async throws -> (Double, Double) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var options = SQLiteJobStore.Options()
        options.synchronous = synchronous == "full" ? .full : .normal
        let store = try SQLiteJobStore(path: directory.appendingPathComponent("bench.db").path, options: options)
        try await store.migrate()

        let specs = (0..<jobs).map { _ in JobSpec(id: JobID.make(), stages: [StageSpec(name: "noop", run: .noop)]) }
        let enqueueStart = ContinuousClock.now
        for start in stride(from: 0, to: specs.count, by: batch) {
            _ = try await store.enqueue(Array(specs[start..<min(start + batch, specs.count)]))
        }
        let enqueueTime = seconds(ContinuousClock.now - enqueueStart)

        let workers = (0..<nodes).map { index in
            WorkerNode(store: store, options: WorkerOptions(nodeID: "bench-\(index)", capacity: capacity, pollIntervalSec: 0.01,
                                                            drainTimeoutSec: 5, rescueIntervalSec: 60,
                                                            logDirectory: directory.appendingPathComponent("logs").path))
        }
        let drainStart = ContinuousClock.now
        let drainTime = try await withThrowingTaskGroup(of: Void.self, returning: Double.self) { group in
            for worker in workers { group.addTask { try await worker.run() } }
            while workers.map(\.succeededCount).reduce(0, +) < jobs {
                try await Task.sleep(for: .milliseconds(2))
            }
            let drainTime = seconds(ContinuousClock.now - drainStart)
            for worker in workers { worker.beginDrain() }
            try await group.waitForAll()
            return drainTime
        }
        try await store.close()
        return (Double(jobs) / enqueueTime, Double(jobs) / drainTime)
    }

    func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }
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
