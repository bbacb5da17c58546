import BatonCore
import BatonStore
import Foundation
import Subprocess
import Synchronization

#if canImport(System)
import System
#else
import SystemPackage
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs `/bin/sh -c COMMAND` in its own process group.
///
/// - stdout and stderr go to files under the log directory (the attempt keeps their paths and
///   a bounded tail of each);
/// - exit 0 succeeds; 75 (EX_TEMPFAIL) and the stage's `transient_exit_codes` are transient;
///   any other status is fatal;
/// - on timeout or abort the whole process group gets SIGTERM, then SIGKILL after a grace,
///   and the result is reported only once the process has exited, so a retry never starts
///   while this attempt may still be running.
public struct ShellExecutor: StageExecutor {
    public init() {}

    public func execute(_ context: StageContext) async -> StageResult {
        guard case .shell(let command) = context.lease.stage.run else {
            return .failed(.fatal("wrong_executor", "shell executor given a \(context.lease.stage.run.kind) stage"), .empty)
        }
        let lease = context.lease
        let directory = "\(context.logDirectory)/\(lease.jobID)"
        let base = "\(directory)/f\(lease.fence)-\(lease.stageIndex)-\(lease.stage.name)"
        let outPath = base + ".stdout", errPath = base + ".stderr"
        // The stage writes what it hands on to $BATON_OUTPUT; it reads what earlier stages
        // handed on from $BATON_OUTPUTS (JSON) and BATON_OUT_<KEY> variables.
        let outputPath = base + ".output", inputsPath = base + ".inputs.json", payloadPath = base + ".payload.json"
        let outFD: FileDescriptor, errFD: FileDescriptor
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try? FileManager.default.removeItem(atPath: outputPath)
            try lease.outputs.document.encoded().write(to: URL(fileURLWithPath: inputsPath))
            try lease.spec.payload.encoded().write(to: URL(fileURLWithPath: payloadPath))
            outFD = try FileDescriptor.open(FilePath(outPath), .writeOnly, options: [.create, .truncate], permissions: .init(rawValue: 0o644))
            do {
                errFD = try FileDescriptor.open(FilePath(errPath), .writeOnly, options: [.create, .truncate], permissions: .init(rawValue: 0o644))
            } catch {
                try? outFD.close()
                throw error
            }
        } catch {
            return .failed(.transient("log_unavailable", "cannot open log files under \(directory): \(error)"), .empty)
        }

        var overrides: [Environment.Key: String?] = [:]
        var variables = lease.outputs.environment.merging(context.batonEnvironment) { _, baton in baton }
        variables["BATON_OUTPUT"] = outputPath
        variables["BATON_OUTPUTS"] = inputsPath
        variables["BATON_PAYLOAD"] = payloadPath
        for (key, value) in variables.merging(lease.stage.env, uniquingKeysWith: { _, stage in stage }) {
            overrides[Environment.Key(stringLiteral: key)] = value
        }
        let environment = Environment.inherit.updating(overrides)
        let options: PlatformOptions = {
            var options = PlatformOptions()
            options.processGroupID = 0  // the child leads a new group, so a kill reaches its children too
            return options
        }()
        let workdir = lease.stage.workdir.map { FilePath($0) }
        let pid = ProcessIDBox()

        enum Outcome: Sendable {
            case exited(TerminationStatus)
            case launchFailed(String)
            case timedOut
            case aborted(AbortReason)
            case graceOver
        }

        let outcome: Outcome = await withTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                do {
                    let result = try await Subprocess.run(
                        .path("/bin/sh"), arguments: ["-c", command], environment: environment,
                        workingDirectory: workdir, platformOptions: options, input: .none,
                        output: .fileDescriptor(outFD, closeAfterSpawningProcess: true),
                        error: .fileDescriptor(errFD, closeAfterSpawningProcess: true)
                    ) { execution in
                        pid.set(execution.processIdentifier.value)
                    }
                    return .exited(result.terminationStatus)
                } catch {
                    return .launchFailed("\(error)")
                }
            }
            group.addTask {
                let timeout = Double(context.timeoutSec)
                return await withTaskGroup(of: Outcome?.self) { watch in
                    watch.addTask {
                        do { try await Task.sleep(for: .milliseconds(Int64(timeout * 1000))) } catch { return nil }
                        return .timedOut
                    }
                    watch.addTask { await context.abort.wait().map(Outcome.aborted) }
                    let first = await watch.next() ?? nil
                    watch.cancelAll()
                    return first
                }
            }
            var stopReason: Outcome?
            var killed = false
            while let next = await group.next() {
                guard let next else { continue }
                switch next {
                case .exited, .launchFailed:
                    group.cancelAll()
                    // A stopped stage's shell is gone; anything of its group that outlived the
                    // SIGTERM (a child forked as the signal arrived, one that ignores it) is not
                    // left running behind the job's back.
                    if stopReason != nil && !killed { Self.signalGroup(pid.value, SIGKILL) }
                    return stopReason ?? next
                case .timedOut, .aborted:
                    // When the group is already gone the process ended on its own: its exit
                    // status, not the stop, is the outcome (the store's fencing decides).
                    guard Self.signalGroup(pid.value, SIGTERM) else { continue }
                    stopReason = next
                    let grace = context.killGraceSec
                    group.addTask {
                        do { try await Task.sleep(for: .milliseconds(Int64(grace * 1000))) } catch { return nil }
                        return .graceOver
                    }
                case .graceOver:
                    guard !killed else { continue }
                    guard pid.value != nil else {
                        // Stopped before the spawn reported its pid (a loaded machine): try
                        // again shortly rather than leave the group running.
                        group.addTask {
                            do { try await Task.sleep(for: .milliseconds(50)) } catch { return nil }
                            return .graceOver
                        }
                        continue
                    }
                    killed = true
                    Self.signalGroup(pid.value, SIGKILL)
                }
            }
            return stopReason ?? .launchFailed("process ended without a status")
        }

        var report = AttemptReport(
            exitCode: { if case .exited(.exited(let code)) = outcome { return code } else { return nil } }(),
            stdout: Self.tail(of: outPath, bytes: context.captureBytes),
            stderr: Self.tail(of: errPath, bytes: context.captureBytes),
            logPath: base)
        switch outcome {
        case .exited(.exited(let code)):
            if let failure = Lifecycle.classifyExit(code: code, transientCodes: lease.stage.transientExitCodes) {
                return .failed(failure, report)
            }
            if let data = FileManager.default.contents(atPath: outputPath) {
                do {
                    report.output = try StageOutput.parse(data, stage: lease.stage.name)
                } catch {
                    // The stage's work is done but what it handed on cannot be read: later
                    // stages must not run on half an output.
                    return .failed(.fatal("bad_output", error.description), report)
                }
            }
            return .succeeded(report)
        case .exited(let status):
            return .failed(.fatal("signal", "terminated by a signal: \(status)"), report)
        case .launchFailed(let message):
            return .failed(.fatal("launch_failed", "could not start /bin/sh: \(message)"), report)
        case .timedOut:
            return .failed(context.timeoutFailure("; its process group was stopped"), report)
        case .aborted(let reason):
            return .aborted(reason, report)
        case .graceOver:
            return .failed(.fatal("internal", "unexpected executor state"), report)
        }
    }

    /// Signals the stage's process group; false when no such group exists any more.
    @discardableResult
    static func signalGroup(_ pid: pid_t?, _ signal: Int32) -> Bool {
        guard let pid, pid > 0 else { return true }
        return kill(-pid, signal) == 0 || errno != ESRCH
    }

    /// The last `bytes` of a file as text (invalid UTF-8 repaired), or nil when empty.
    static func tail(of path: String, bytes: Int) -> String? {
        guard bytes > 0, let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd(), size > 0 else { return nil }
        let start = size > UInt64(bytes) ? size - UInt64(bytes) : 0
        try? handle.seek(toOffset: start)
        guard let data = try? handle.readToEnd(), !data.isEmpty else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        return start > 0 ? "…" + text : text
    }
}

/// The child's pid, published by the spawning task and read by the watchdog.
final class ProcessIDBox: Sendable {
    private let pid = Mutex<pid_t?>(nil)
    func set(_ value: pid_t) { pid.withLock { $0 = value } }
    var value: pid_t? { pid.withLock { $0 } }
}
