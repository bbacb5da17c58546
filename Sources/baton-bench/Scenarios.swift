import ArgumentParser
import BatonCore
import BatonNode
import BatonStore
import Foundation
import Histogram

extension BenchRun {
    // MARK: Latency at a fixed offered rate

    /// Offers `rate` jobs a second for `seconds` (open loop: each enqueue is due at its own
    /// time, whether or not earlier ones have started), to one in-process node with its own
    /// connections, and measures each job's enqueue call → stage start on one monotonic clock.
    func offeredRate() async throws {
        print("store=\(store.rawValue), offered \(Int(rate)) jobs/s for \(Int(seconds)) s, 1 in-process node × capacity \(capacity) "
              + "(its own connections; push wake-up, poll 1 s)")
        let bench = try await openStore()
        defer { bench.removeDirectory() }
        // SQLite wakes nodes of its own process only (other processes poll): the node shares the
        // bench's store, as the API and the worker share one in `baton up`.
        let workerStore = store == .sqlite ? bench.store : try await bench.openAnother()
        let starts = StageStarts()
        let worker = WorkerNode(store: workerStore,
                                options: WorkerOptions(nodeID: "rate-0", capacity: capacity, pollIntervalSec: 1, drainTimeoutSec: 5,
                                                       rescueIntervalSec: 60,
                                                       logDirectory: bench.directory.appendingPathComponent("logs").path),
                                executors: ExecutorRegistry(noop: starts))
        let total = Int(rate * seconds)
        var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
        var late = 0
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            try await Task.sleep(for: .seconds(1))
            let waits = try await withThrowingTaskGroup(of: UInt64.self, returning: [UInt64].self) { samples in
                let start = ContinuousClock.now
                var progress = Progress(total: total, what: "offered")
                for index in 0..<total {
                    let due = start + .microseconds(Int64(Double(index) / rate * 1e6))
                    if due > .now { try await Task.sleep(until: due, clock: .continuous) } else { late += 1 }
                    let spec = JobSpec(id: JobID.make(), stages: [StageSpec(name: "noop", run: .noop)])
                    let started = starts.expect(spec.id)
                    // From when the job was due: a producer that fell behind is delay too.
                    let call = min(due, ContinuousClock.now)
                    samples.addTask {
                        _ = try await bench.store.enqueue(spec)
                        let at = await started.value
                        return UInt64(max(0, self.seconds(at - call)) * 1e6)
                    }
                    progress.show(index + 1)
                }
                return try await samples.reduce(into: []) { $0.append($1) }
            }
            for wait in waits { histogram.record(wait) }
            worker.beginDrain()
            try await group.waitForAll()
        }
        if store != .sqlite { try await workerStore.close() }
        try await bench.close()
        print(String(format: "latency at %.0f jobs/s offered (due → stage start, %d samples): p50 %.2f ms, p90 %.2f ms, "
                     + "p99 %.2f ms, max %.2f ms; %d enqueues issued late (the producer fell behind its schedule)",
                     rate, histogram.totalCount, ms(histogram.valueAtPercentile(50)), ms(histogram.valueAtPercentile(90)),
                     ms(histogram.valueAtPercentile(99)), ms(histogram.max), late))
    }

    // MARK: Claim cost against the queue's size

    /// For each queue size: fills a fresh store, then times up to 200 claims of `capacity` jobs
    /// (each batch completed before the next claim, as a node would), on the same connection
    /// pool. The claim walks an index in claim order, so it should not grow with the queue.
    func claimCost() async throws {
        let sizes = queued.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        // At most half of the smallest queue is claimed, so every claim finds a full queue.
        let claims = min(200, (sizes.min() ?? 0) / capacity / 2)
        guard !sizes.isEmpty, claims >= 10 else {
            throw ValidationError("--queued: expected sizes of at least \(capacity * 20) (claims of --capacity \(capacity)), comma-separated")
        }
        print("store=\(store.rawValue), claims of \(capacity) jobs from queues of \(sizes.map(String.init).joined(separator: " and ")) jobs")
        var medians: [Int: Double] = [:]
        for size in sizes {
            let bench = try await openStore()
            defer { bench.removeDirectory() }
            var progress = Progress(total: size, what: "filling \(size)")
            var filled = 0
            while filled < size {
                let count = min(5000, size - filled)
                _ = try await bench.store.enqueue((0..<count).map { _ in JobSpec(id: JobID.make(), stages: [StageSpec(name: "noop", run: .noop)]) })
                filled += count
                progress.show(filled)
            }
            var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            // One untimed claim first: statement preparation is not the queue's cost.
            _ = try await bench.store.complete(try await bench.store.claim(ClaimRequest(nodeID: "claim-cost", limit: capacity))
                .map { Completion(lease: $0) })
            for _ in 0..<claims {
                let start = ContinuousClock.now
                let leases = try await bench.store.claim(ClaimRequest(nodeID: "claim-cost", limit: capacity))
                histogram.record(UInt64(seconds(ContinuousClock.now - start) * 1e6))
                _ = try await bench.store.complete(leases.map { Completion(lease: $0) })
            }
            try await bench.close()
            medians[size] = ms(histogram.valueAtPercentile(50))
            print(String(format: "queue of %d: claim of %d p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms", size, capacity,
                         ms(histogram.valueAtPercentile(50)), ms(histogram.valueAtPercentile(90)), ms(histogram.valueAtPercentile(99)),
                         ms(histogram.max)))
        }
        if let small = sizes.min(), let large = sizes.max(), small != large, let a = medians[small], let b = medians[large], a > 0 {
            print(String(format: "claim cost at %d queued / at %d queued (p50): %.2f×", large, small, b / a))
        }
    }

    // MARK: Idle worker memory

    /// Starts one `baton worker` process on an empty queue and reads its resident memory
    /// (VmRSS) after 5 and after 30 seconds idle.
    func idleRSS() async throws {
        let bench = try await openStore()
        defer { bench.removeDirectory() }
        let worker = try bench.startWorker("rss-0", capacity: capacity, baton: batonPath, pollIntervalMs: 250)
        defer { stop([worker]) }
        var readings: [String] = []
        for wait in [5, 25] {
            try await Task.sleep(for: .seconds(wait))
            guard worker.isRunning else { throw ValidationError("the worker exited; see \(bench.directory.path)") }
            let status = (try? String(contentsOfFile: "/proc/\(worker.processIdentifier)/status", encoding: .utf8)) ?? ""
            let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }.map(String.init) ?? "VmRSS: unknown"
            readings.append("\(rss.replacingOccurrences(of: "VmRSS:", with: "").trimmingCharacters(in: .whitespaces)) "
                            + "after \(wait == 5 ? 5 : 30) s")
        }
        stop([worker])
        try await bench.close()
        print("idle worker (store=\(store.rawValue), capacity \(capacity)) resident memory: \(readings.joined(separator: ", "))")
    }

    // MARK: Support

    func ms(_ microseconds: UInt64) -> Double { Double(microseconds) / 1000 }

    /// Sets synchronous_commit for the whole server (ALTER SYSTEM; only for a server of the
    /// bench's own, such as scripts/postgres starts), or resets it.
    func setSynchronousCommit(off: Bool) throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = postgresURL ?? environment["BATON_BENCH_POSTGRES_URL"] ?? environment["BATON_TEST_POSTGRES_URL"] else { return }
        let statement = off ? "ALTER SYSTEM SET synchronous_commit = off" : "ALTER SYSTEM RESET synchronous_commit"
        for query in [statement, "SELECT pg_reload_conf()"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", query]
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            while process.isRunning { usleep(5_000) }
            guard process.terminationStatus == 0 else { throw ValidationError("psql could not run: \(query)") }
        }
        print("postgresql: synchronous_commit=\(off ? "off" : "reset to the server's setting") for this run")
    }
}

/// A progress line on standard error, redrawn at most 4 times a second.
struct Progress {
    let total: Int
    let what: String
    var last = ContinuousClock.now - .seconds(1)

    init(total: Int, what: String) {
        self.total = total
        self.what = what
    }

    mutating func show(_ done: Int) {
        let now = ContinuousClock.now
        guard now - last >= .milliseconds(250) || done >= total else { return }
        last = now
        let width = 30
        let filled = total > 0 ? min(width, done * width / total) : width
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data("\r\(what) [\(bar)] \(done)/\(total)\(done >= total ? "\n" : "")".utf8))
    }
}
