import BatonCore
import BatonStore
import BatonStoreTesting
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Chains run by real `baton worker` processes: stages are shell commands that leave side
/// effects in files, so "ran exactly once" is counted on disk, not taken from the store.
extension MultiProcessTests {
@Suite(.serialized) struct ChainTests {
    /// Lines in a side-effect file of the scratch directory (0 when it does not exist).
    static func lines(_ h: ProcessHarness, _ name: String) -> [String] {
        let text = (try? String(contentsOf: h.directory.appendingPathComponent(name), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    static func stage(_ name: String, _ command: String, timeoutSec: Int? = nil,
                      timeoutClass: TimeoutClass = .exec) -> StageSpec {
        StageSpec(name: name, run: .shell(command), timeoutSec: timeoutSec, timeoutClass: timeoutClass)
    }

    @Test func fourStageChainRetriesOnlyTheStageThatFailedWithGrowingBackoff() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let d = h.directory.path
        let retry = RetryPolicy(maxAttempts: 5, initialSec: 0.3, multiplier: 2, maxSec: 5, jitter: 0.2)
        let spec = JobSpec(id: JobID.make(), stages: [
            Self.stage("compile", "echo run >> \(d)/compile.txt"),
            Self.stage("sign", "echo run >> \(d)/sign.txt"),
            // Fails with EX_TEMPFAIL (transient) on its first two runs, then succeeds.
            Self.stage("upload", "echo run >> \(d)/upload.txt; [ $(wc -l < \(d)/upload.txt) -ge 3 ] || exit 75"),
            Self.stage("notify", "echo run >> \(d)/notify.txt"),
        ], leaseTTLSec: 10, retry: retry)
        _ = try await h.store.enqueue(spec)
        try h.startWorker("chain-a")
        try await h.waitUntil(timeout: 30, "the chain to succeed") {
            try await h.store.job(id: spec.id)?.state == .succeeded
        }
        #expect(Self.lines(h, "compile.txt").count == 1)
        #expect(Self.lines(h, "sign.txt").count == 1)
        #expect(Self.lines(h, "upload.txt").count == 3)
        #expect(Self.lines(h, "notify.txt").count == 1)

        let detail = try #require(try await h.store.detail(id: spec.id))
        #expect(detail.job.retryCount == 2)
        #expect(detail.stages.map(\.attempts) == [1, 1, 3, 1])
        let delays = detail.events.filter { $0.kind == .retried }.compactMap { $0.detail["delay_sec"].flatMap(Double.init) }
        #expect(delays.count == 2)
        for (index, delay) in delays.enumerated() {
            let bounds = retry.delayBounds(afterAttempt: index + 1)
            #expect(bounds.lowerBound - 0.001 <= delay && delay <= bounds.upperBound + 0.001,
                    "retry \(index + 1) waited \(delay) s, outside \(bounds)")
        }
        // Jitter of ±20 % around 0.3 s and 0.6 s: the second wait is always the longer one.
        #expect(delays[1] > delays[0])
        #expect(abs(detail.job.cumulativeBackoffSec - delays.reduce(0, +)) < 0.01)
        let uploads = detail.attempts.filter { $0.stageName == "upload" }
        #expect(uploads.map(\.attempt) == [1, 2, 3])
        // Each retry started only after the previous run had finished and its backoff had passed.
        for (previous, next) in zip(uploads, uploads.dropFirst()) {
            let finished = try #require(previous.finishedAt)
            #expect(next.startedAt.timeIntervalSince(finished) >= retry.delayBounds(afterAttempt: previous.attempt).lowerBound - 0.01)
        }
    }

    @Test(arguments: [ProcessHarness.Engine.sqlite, .postgres])
    func chainKilledDuringStage2ResumesOnAnotherNodeWithStage1Outputs(_ engine: ProcessHarness.Engine) async throws {
        if engine == .postgres && !TestPostgresServer.enabled { return }
        let h = try await ProcessHarness(engine)
        defer { h.finish() }
        let d = h.directory.path
        let spec = JobSpec(id: JobID.make(), stages: [
            Self.stage("build", "echo run >> \(d)/build.txt; echo \"artifact_id=abc-$BATON_JOB_ID\" >> \"$BATON_OUTPUT\"; echo artifact=file://\(d)/app.ipa >> \"$BATON_OUTPUT\""),
            Self.stage("upload", "echo \"$BATON_NODE_ID $BATON_OUT_ARTIFACT_ID $(cat \"$BATON_OUTPUTS\")\" >> \(d)/upload.txt; sleep 3"),
        ], leaseTTLSec: 2, retry: RetryPolicy(maxAttempts: 3, initialSec: 0.1, jitter: 0))
        _ = try await h.store.enqueue(spec)
        let a = try h.startWorker("chain-kill-a")
        let b = try h.startWorker("chain-kill-b")
        var holder = ""
        try await h.waitUntil(timeout: 30, "stage 2 to start") {
            guard let job = try await h.store.job(id: spec.id) else { return false }
            holder = job.leaseNode ?? ""
            return job.state == .running && job.stageIndex == 1 && !Self.lines(h, "upload.txt").isEmpty
        }
        let (victim, survivor) = holder == "chain-kill-a" ? (a, "chain-kill-b") : (b, "chain-kill-a")
        h.signal(victim, SIGKILL)
        try await h.waitUntil(timeout: 30, "the chain to succeed on the surviving node") {
            try await h.store.job(id: spec.id)?.state == .succeeded
        }
        #expect(Self.lines(h, "build.txt").count == 1, "the finished stage must not run again")
        let uploads = Self.lines(h, "upload.txt")
        #expect(uploads.count == 2)
        let last = try #require(uploads.last)
        #expect(last.hasPrefix("\(survivor) abc-\(spec.id) "), "stage 2 on the new node sees stage 1's outputs: \(last)")
        #expect(last.contains("file://\(d)/app.ipa"))
        let detail = try #require(try await h.store.detail(id: spec.id))
        #expect(detail.stages.map(\.node) == [holder, survivor])
        #expect(detail.job.outputs.values["artifact_id"] == "abc-\(spec.id)")
    }

    @Test(arguments: [ProcessHarness.Engine.sqlite, .postgres])
    func stagesNeedingOtherTagsAreHandedToANodeThatHasThem(_ engine: ProcessHarness.Engine) async throws {
        if engine == .postgres && !TestPostgresServer.enabled { return }
        let h = try await ProcessHarness(engine)
        defer { h.finish() }
        let d = h.directory.path
        let spec = JobSpec(id: JobID.make(), stages: [
            Self.stage("compile", "echo \"compile $BATON_NODE_ID\" >> \(d)/ran.txt; echo ipa=app-$BATON_JOB_ID.ipa >> \"$BATON_OUTPUT\""),
            StageSpec(name: "sign", run: .shell("echo \"sign $BATON_NODE_ID $BATON_OUT_IPA\" >> \(d)/ran.txt"), nodeTags: ["mac"]),
            Self.stage("notify", "echo \"notify $BATON_NODE_ID\" >> \(d)/ran.txt"),
        ])
        // The linux node starts first and alone, so it is the one that takes the first stage.
        try h.startWorker("tags-linux", tags: ["linux"])
        _ = try await h.store.enqueue(spec)
        try await h.waitUntil(timeout: 30, "the first stage to hand the chain on") {
            try await h.store.job(id: spec.id)?.stageIndex == 1
        }
        #expect(try await h.store.job(id: spec.id)?.state == .queued, "no node may run the signing stage yet")
        try h.startWorker("tags-mac", tags: ["mac", "arm64"])
        try await h.waitUntil(timeout: 30, "the chain to succeed") { try await h.store.job(id: spec.id)?.state == .succeeded }
        #expect(Self.lines(h, "ran.txt") == ["compile tags-linux", "sign tags-mac app-\(spec.id).ipa", "notify tags-mac"])
        let detail = try #require(try await h.store.detail(id: spec.id))
        let handoff = try #require(detail.stages[1].handoffMs)
        #expect(handoff >= 0)
        #expect(detail.events.contains { $0.kind == .handedOff && $0.nodeID == "tags-linux" && $0.detail["node_tags"] == "mac" })
        #expect(detail.job.attempts == 1, "a handoff is not a new attempt")
    }

    @Test func eachKindOfTimeoutIsRecordedWithItsOwnReason() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let once = RetryPolicy(maxAttempts: 1)
        let exec = JobSpec(id: "exec-\(JobID.make())", stages: [Self.stage("build", "sleep 30", timeoutSec: 1)], retry: once)
        let upload = JobSpec(id: "upload-\(JobID.make())",
                             stages: [Self.stage("push", "sleep 30", timeoutSec: 1, timeoutClass: .upload)], retry: once)
        // No node carries this tag: the job is never claimed, and its queue timeout runs out.
        let queued = JobSpec(id: "queue-\(JobID.make())",
                             stages: [StageSpec(name: "wait", run: .noop, nodeTags: ["no-such-node"])], queueTimeoutSec: 1)
        _ = try await h.store.enqueue([exec, upload, queued])
        try h.startWorker("timeouts", capacity: 3, drainTimeoutSec: 1)
        try await h.waitUntil(timeout: 30, "all three jobs to end") {
            for id in [exec.id, upload.id, queued.id] where try await h.store.job(id: id)?.state.isTerminal != true { return false }
            return true
        }
        let execJob = try #require(try await h.store.job(id: exec.id))
        #expect(execJob.state == .dead)
        #expect(execJob.lastReason == "attempts_exhausted")
        #expect(try await h.store.detail(id: exec.id)?.attempts.first?.reason == "exec_timeout")
        let uploadDetail = try #require(try await h.store.detail(id: upload.id))
        #expect(uploadDetail.attempts.first?.reason == "upload_timeout")
        #expect(uploadDetail.events.contains { $0.kind == .failed && $0.detail["reason"] == "upload_timeout" })
        let queuedJob = try #require(try await h.store.job(id: queued.id))
        #expect(queuedJob.state == .expired)
        #expect(queuedJob.lastReason == "queue_timeout")
        #expect(try await h.store.events(jobID: queued.id).contains { $0.kind == .expired && $0.detail["reason"] == "queue_timeout" })
    }

    @Test func redriveResumesAtTheFailedStageOnceTheCauseIsFixed() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let d = h.directory.path
        let spec = JobSpec(id: JobID.make(), stages: [
            Self.stage("build", "echo run >> \(d)/build.txt; echo version=7 >> \"$BATON_OUTPUT\""),
            // Fatal (exit 1) until the credentials file exists.
            Self.stage("publish", "test -f \(d)/credentials || exit 1; echo \"$BATON_OUT_VERSION\" >> \(d)/publish.txt"),
        ], retry: RetryPolicy(maxAttempts: 3, initialSec: 0.1, jitter: 0))
        _ = try await h.store.enqueue(spec)
        try h.startWorker("redrive-a")
        try await h.waitUntil(timeout: 30, "the job to be dead-lettered") { try await h.store.job(id: spec.id)?.state == .dead }

        let shown = try await h.cli(["dlq", "show", spec.id, "--db", h.dbPath])
        #expect(shown.status == 0)
        #expect(shown.output.contains("last successful stage build"))
        #expect(shown.output.contains("exit_code"))

        _ = FileManager.default.createFile(atPath: "\(d)/credentials", contents: Data())
        let redrive = try await h.cli(["dlq", "redrive", spec.id, "--db", h.dbPath])
        #expect(redrive.status == 0, "\(redrive.output)")
        #expect(redrive.output.contains("publish"))
        try await h.waitUntil(timeout: 30, "the redriven job to succeed") { try await h.store.job(id: spec.id)?.state == .succeeded }
        #expect(Self.lines(h, "build.txt").count == 1)
        #expect(Self.lines(h, "publish.txt") == ["7"])
    }

    @Test func aKeyThatKeepsDyingIsHeldByItsGateUntilReleased() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let d = h.directory.path
        func job(_ id: String) -> JobSpec {
            JobSpec(id: id, idempotencyKey: "deploy:prod",
                    stages: [Self.stage("deploy", "test -f \(d)/fixed || exit 1; echo \(id) >> \(d)/deployed.txt")],
                    retry: RetryPolicy(maxAttempts: 1))
        }
        let webhook = try await ScriptedHTTPServer.start([ScriptedHTTPServer.Reply(status: 204)])
        defer { Task { await webhook.stop() } }
        try h.startWorker("gate-a", extra: "alerts: {webhook_url: '\(webhook.url)/alerts'}")
        for id in ["d1", "d2"] {
            _ = try await h.store.enqueue(job(id))
            try await h.waitUntil(timeout: 30, "\(id) to be dead-lettered") { try await h.store.job(id: id)?.state == .dead }
        }
        try await h.waitUntil(timeout: 10, "the alert in the worker's log") {
            h.log(of: "gate-a").contains("human gate holds new jobs")
        }
        try await h.waitUntil(timeout: 10, "the alert webhook to be called") { webhook.callCount == 1 }
        let alert = try #require(webhook.calls.first)
        #expect(alert.method == "POST")
        #expect(alert.path == "/alerts")
        let document = try JSONValue.parse(Data(alert.body.utf8), what: "alert")
        guard case .object(let fields) = document else {
            Issue.record("the alert is not a JSON object: \(alert.body)")
            return
        }
        #expect(fields["kind"] == .string("gate_held"))
        #expect(fields["key"] == .string("deploy:prod"))
        #expect(fields["dead_jobs"] == .array([.string("d1"), .string("d2")]))
        let envelope = Data(#"{"job_id": "d3", "idempotency_key": "deploy:prod", "stages": [{"name": "deploy", "run": {"shell": "test -f \#(d)/fixed || exit 1; echo d3 >> \#(d)/deployed.txt"}}]}"#.utf8)
        let submit = try await h.cli(["submit", "-", "--db", h.dbPath], stdin: envelope)
        #expect(submit.status == 0, "\(submit.output)")
        #expect(submit.output.contains("gated"))
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await h.store.job(id: "d3")?.state == .gated, "a gated job waits for a person")

        let list = try await h.cli(["gate", "list", "--db", h.dbPath])
        #expect(list.output.contains("deploy:prod"))
        #expect(list.output.contains("held"))
        _ = FileManager.default.createFile(atPath: "\(d)/fixed", contents: Data())
        let release = try await h.cli(["gate", "release", "deploy:prod", "--db", h.dbPath])
        #expect(release.status == 0, "\(release.output)")
        #expect(release.output.contains("1 job queued"))
        try await h.waitUntil(timeout: 30, "the released job to run") { try await h.store.job(id: "d3")?.state == .succeeded }
        #expect(Self.lines(h, "deployed.txt") == ["d3"])
    }
}
}
