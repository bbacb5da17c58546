import BatonCore
import BatonNode
import BatonStore
import Foundation
import Testing

/// The shell executor against real /bin/sh processes.
struct ShellExecutorTests {
    let logs = FileManager.default.temporaryDirectory.appendingPathComponent("baton-shell-\(UUID().uuidString.prefix(8))").path

    func context(_ command: String, timeoutSec: Int? = nil, transient: [Int32] = [], env: [String: String] = [:],
                 capture: Int = 16_384, abort: AbortSignal = AbortSignal()) -> StageContext {
        let spec = JobSpec(id: JobID.make(), stages: [StageSpec(name: "build", run: .shell(command), timeoutSec: timeoutSec,
                                                                 transientExitCodes: transient, env: env)])
        let lease = Lease(jobID: spec.id, nodeID: "node-t", fence: 3, attempt: 2, stageIndex: 0,
                          expiresAt: Date().addingTimeInterval(60), spec: spec)
        return StageContext(lease: lease, abort: abort, logDirectory: logs, captureBytes: capture, killGraceSec: 0.5)
    }

    @Test func exitZeroSucceedsAndKeepsOutput() async throws {
        let result = await ShellExecutor().execute(context("echo hello; echo oops >&2"))
        guard case .succeeded(let report) = result else { Issue.record("expected success, got \(result)"); return }
        #expect(report.exitCode == 0)
        #expect(report.stdout == "hello\n")
        #expect(report.stderr == "oops\n")
        let logPath = try #require(report.logPath)
        #expect(try String(contentsOfFile: logPath + ".stdout", encoding: .utf8) == "hello\n")
    }

    @Test func stageSeesBatonEnvironment() async throws {
        let result = await ShellExecutor().execute(context("echo $BATON_JOB_ID:$BATON_ATTEMPT:$BATON_STAGE:$GREETING",
                                                           env: ["GREETING": "hi"]))
        guard case .succeeded(let report) = result else { Issue.record("expected success, got \(result)"); return }
        let parts = try #require(report.stdout).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":")
        #expect(parts.count == 4)
        #expect(parts.dropFirst().map(String.init) == ["2", "build", "hi"])
    }

    @Test func exit75IsTransient() async {
        let result = await ShellExecutor().execute(context("exit 75"))
        guard case .failed(let failure, let report) = result else { Issue.record("expected failure, got \(result)"); return }
        #expect(failure.errorClass == .transient)
        #expect(failure.reason == "exit_code")
        #expect(report.exitCode == 75)
    }

    @Test func otherNonZeroExitIsFatalUnlessTheStageListsIt() async {
        let fatal = await ShellExecutor().execute(context("exit 3"))
        guard case .failed(let f1, _) = fatal else { Issue.record("expected failure, got \(fatal)"); return }
        #expect(f1.errorClass == .fatal)
        let listed = await ShellExecutor().execute(context("exit 3", transient: [3]))
        guard case .failed(let f2, _) = listed else { Issue.record("expected failure, got \(listed)"); return }
        #expect(f2.errorClass == .transient)
    }

    @Test func captureIsBoundedToTheTail() async {
        let result = await ShellExecutor().execute(context("seq 1 10000", capture: 64))
        guard case .succeeded(let report) = result else { Issue.record("expected success, got \(result)"); return }
        let stdout = report.stdout ?? ""
        #expect(stdout.utf8.count <= 64 + 3)
        #expect(stdout.hasSuffix("9999\n10000\n"))
        #expect(stdout.hasPrefix("…"))
    }

    @Test func timeoutKillsTheWholeProcessGroupBeforeReporting() async throws {
        let pidFile = FileManager.default.temporaryDirectory.appendingPathComponent("baton-grandchild-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: pidFile) }
        // A grandchild that records its pid and would outlive the stage; the timeout (1 s) must
        // stop it too, not only the shell. Checked by pid, so a slow machine cannot fool the test.
        let started = Date()
        let result = await ShellExecutor().execute(context("sh -c 'echo $$ > \(pidFile); exec sleep 60' & sleep 60", timeoutSec: 1))
        let took = Date().timeIntervalSince(started)
        guard case .failed(let failure, _) = result else { Issue.record("expected failure, got \(result)"); return }
        #expect(failure.errorClass == .transient)
        #expect(failure.reason == "exec_timeout")
        #expect(took < 30)
        // No pid file: the group was stopped before the grandchild got to write it.
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let grandchild = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return }
        var alive = Self.isRunning(grandchild)
        for _ in 0..<40 where alive {
            try await Task.sleep(for: .milliseconds(50))
            alive = Self.isRunning(grandchild)
        }
        #expect(!alive, "grandchild \(grandchild) still runs after the stage was reported")
    }

    /// True while `pid` exists and is not a zombie waiting for a parent that never reaps.
    static func isRunning(_ pid: Int32) -> Bool {
        #if !os(Linux)
        return kill(pid, 0) == 0
        #else
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).prefix(1)
        return state != "Z" && state != "X"
        #endif
    }

    @Test func abortStopsTheProcessAndReportsTheReason() async {
        let abort = AbortSignal()
        Task {
            try? await Task.sleep(for: .milliseconds(300))
            abort.trigger(.shutdown)
        }
        let result = await ShellExecutor().execute(context("sleep 30", abort: abort))
        guard case .aborted(let reason, _) = result else { Issue.record("expected abort, got \(result)"); return }
        #expect(reason == .shutdown)
    }

    @Test func missingWorkdirIsFatal() async {
        var ctx = context("true")
        ctx.lease.spec.stages[0].workdir = "/nonexistent/baton/dir"
        let result = await ShellExecutor().execute(ctx)
        guard case .failed(let failure, _) = result else { Issue.record("expected failure, got \(result)"); return }
        #expect(failure.errorClass == .fatal)
    }
}
