import BatonCore
import BatonStore
import Foundation
import Testing

extension StoreHarness {
    /// A chain of no-op stages; `placements[i]` pins stage i to a region and tags.
    func chain(_ names: [String], id: String? = nil, key: String? = nil, placements: [Int: Placement] = [:],
               retry: RetryPolicy = .standard) -> JobSpec {
        JobSpec(id: id ?? JobID.make(at: clock.now), idempotencyKey: key, stages: names.enumerated().map { index, name in
            StageSpec(name: name, run: .noop, regionAffinity: placements[index]?.region, nodeTags: placements[index]?.tags ?? [])
        }, leaseTTLSec: 30, retry: retry)
    }

    func claimOne(_ node: String, region: String? = nil, tags: [String],
                  sourceLocation: SourceLocation = #_sourceLocation) async throws -> Lease {
        let leases = try await store.claim(ClaimRequest(nodeID: node, region: region, tags: tags, limit: 1))
        return try #require(leases.first, "expected \(node) to claim a job", sourceLocation: sourceLocation)
    }

    /// Dead-letters one job with `key` through a fatal failure; returns what the store said.
    func killOne(key: String, id: String) async throws -> FailureResult {
        let spec = chain(["only"], id: id, key: key)
        let result = try await store.enqueue(spec)
        #expect(result.deduplicated == false, "a dead-lettered key must not deduplicate a new job")
        let lease = try await claimOne("node-a")
        #expect(lease.jobID == id)
        return try await store.fail(lease, failure: .fatal("http_401", "unauthorized"), report: .empty)
    }
}

extension JobStoreConformance {
    static let chainCases: [ConformanceCase] = [
        ConformanceCase("stageOutputsAreStoredAndHandedToTheNextStage") { h in
            let id = try await h.enqueue(h.chain(["build", "upload"]))
            let build = try await h.claimOne("node-a")
            #expect(build.outputs.isEmpty)
            let output = StageOutput(stage: "build", values: ["ipa": "/tmp/app.ipa"], artifacts: ["s3://b/app.ipa"])
            let result = try await h.store.complete(build, report: AttemptReport(exitCode: 0, output: output))
            let upload = try #require(result.nextLease)
            #expect(upload.outputs.values == ["ipa": "/tmp/app.ipa"])
            #expect(upload.outputs.artifacts == ["s3://b/app.ipa"])
            #expect(try await h.record(id).outputs.stages == [output])
            let stages = try await h.detail(id).stages
            #expect(stages.map(\.state) == [.succeeded, .running])
            #expect(stages[0].output == output)
        },

        ConformanceCase("outputsSurviveTheLossOfTheNodeAndFinishedStagesDoNotRunAgain") { h in
            let id = try await h.enqueue(h.chain(["compile", "sign", "notify"]))
            let compile = try await h.claimOne("node-a")
            let output = StageOutput(stage: "compile", values: ["build": "42"])
            let sign = try #require(try await h.store.complete(compile, report: AttemptReport(output: output)).nextLease)
            h.expire(sign)
            _ = try await h.store.rescue()
            let resumed = try await h.claimOne("node-b")
            #expect(resumed.jobID == id)
            #expect(resumed.stageIndex == 1, "the finished stage must not run again")
            #expect(resumed.outputs.values == ["build": "42"])
            let runs = try await h.detail(id).attempts.filter { $0.stageIndex == 0 }
            #expect(runs.count == 1)
        },

        ConformanceCase("aNextStageTheNodeMayNotRunIsHandedToANodeThatMay") { h in
            let id = try await h.enqueue(h.chain(["build", "sign", "upload"], placements: [1: Placement(tags: ["mac", "signing"])]))
            let build = try await h.claimOne("linux-1", tags: ["linux"])
            let handed = try await h.store.complete(build)
            #expect(handed == .handedOff(stage: "sign"))
            let waiting = try await h.record(id)
            #expect(waiting.state == .queued)
            #expect(waiting.stageIndex == 1)
            #expect(waiting.attempts == 0, "a handoff does not use up an attempt")
            #expect(try await h.store.claim(ClaimRequest(nodeID: "linux-1", tags: ["linux"], limit: 5)).isEmpty)
            #expect(try await h.store.claim(ClaimRequest(nodeID: "mac-0", tags: ["mac"], limit: 5)).isEmpty,
                    "every tag of the stage is required")
            h.clock.advance(by: 2)
            let sign = try await h.claimOne("mac-1", tags: ["signing", "mac", "arm64"])
            #expect(sign.handoffMs == 2000, "the claiming node learns how long the handoff waited")
            #expect(sign.stageIndex == 1)
            #expect(sign.attempt == 1)
            // The stage after it asks for nothing: it runs on as it is, on the node that has the job.
            let upload = try #require(try await h.store.complete(sign).nextLease)
            #expect(upload.nodeID == "mac-1")
            _ = try await h.store.complete(upload)
            let detail = try await h.detail(id)
            #expect(detail.job.state == .succeeded)
            #expect(detail.stages.map(\.node) == ["linux-1", "mac-1", "mac-1"])
            #expect(detail.stages[1].handoffMs == 2000)
            let claim = try #require(detail.events.last { $0.kind == .claimed })
            #expect(claim.detail["handoff_ms"] == "2000")
            #expect(claim.detail["from_node"] == "linux-1")
            #expect(detail.events.contains { $0.kind == .handedOff && $0.stage == "sign" })
        },

        ConformanceCase("aStagesRegionAffinityRoutesItToThatRegion") { h in
            let id = try await h.enqueue(h.chain(["fetch", "publish"], placements: [1: Placement(region: "eu")]))
            let fetch = try await h.claimOne("us-1", region: "us")
            #expect(try await h.store.complete(fetch) == .handedOff(stage: "publish"))
            #expect(try await h.store.claim(ClaimRequest(nodeID: "us-2", region: "us", limit: 1)).isEmpty)
            let publish = try await h.claimOne("eu-1", region: "eu")
            #expect(publish.jobID == id)
            #expect(publish.stageIndex == 1)
        },

        ConformanceCase("aFailedHandedOffStageRetriesOnlyWhereItMayRun") { h in
            let id = try await h.enqueue(h.chain(["a", "b"], placements: [1: Placement(tags: ["gpu"])],
                                                 retry: RetryPolicy(maxAttempts: 3, initialSec: 1, jitter: 0)))
            _ = try await h.store.complete(try await h.claimOne("cpu-1"))
            let b = try await h.claimOne("gpu-1", tags: ["gpu"])
            guard case .retrying(let at, _) = try await h.store.fail(b, failure: .transient("exit_code", "75"), report: .empty) else {
                Issue.record("expected a retry")
                return
            }
            h.clock.set(at)
            #expect(try await h.store.claim(ClaimRequest(nodeID: "cpu-1", limit: 1)).isEmpty)
            let again = try await h.claimOne("gpu-2", tags: ["gpu"])
            #expect(again.jobID == id)
            #expect(again.stageIndex == 1)
            #expect(again.attempt == 2)
        },

        ConformanceCase("theHTTPStatusOfAStageIsKeptWithItsAttempt") { h in
            let id = try await h.enqueue(h.chain(["notify"]))
            let lease = try await h.claimOne("node-a")
            _ = try await h.store.complete(lease, report: AttemptReport(stdout: "{\"ok\":true}", httpStatus: 201))
            let detail = try await h.detail(id)
            #expect(detail.attempts.first?.report.httpStatus == 201)
            #expect(detail.stages.first?.httpStatus == 201)
            #expect(detail.events.last?.detail["http_status"] == "201")
        },

        ConformanceCase("stageRecordsShowStateRunsNodeAndReason") { h in
            let id = try await h.enqueue(h.chain(["one", "two", "three"], retry: RetryPolicy(maxAttempts: 3, initialSec: 1, jitter: 0)))
            let one = try await h.claimOne("node-a")
            let two = try #require(try await h.store.complete(one, report: AttemptReport(exitCode: 0)).nextLease)
            guard case .retrying(let at, _) = try await h.store.fail(two, failure: .transient("exit_code", "exited with status 75"),
                                                                       report: AttemptReport(exitCode: 75)) else {
                Issue.record("expected a retry")
                return
            }
            h.clock.set(at)
            _ = try await h.claimOne("node-b")
            let stages = try await h.detail(id).stages
            #expect(stages.map(\.state) == [.succeeded, .running, .pending])
            #expect(stages.map(\.attempts) == [1, 2, 0])
            #expect(stages.map(\.node) == ["node-a", "node-b", nil])
            #expect(stages[1].lastReason == "exit_code")
            #expect(stages[0].exitCode == 0)
            #expect(stages[0].finishedAt != nil)
        },

        ConformanceCase("aDeadLetterReportHasTheBudgetBackoffAndEveryError") { h in
            let id = try await h.enqueue(h.chain(["fetch", "parse"], retry: RetryPolicy(maxAttempts: 2, initialSec: 3, jitter: 0)))
            let first = try #require(try await h.store.complete(try await h.claimOne("node-a")).nextLease)
            guard case .retrying(let at, _) = try await h.store.fail(
                first, failure: .transient("exit_code", "exited with status 75"),
                report: AttemptReport(exitCode: 75, logPath: "/var/log/baton/j/f1-1-parse")) else {
                Issue.record("expected a retry")
                return
            }
            h.clock.set(at)
            let second = try await h.claimOne("node-b")
            _ = try await h.store.fail(second, failure: .transient("exit_code", "exited with status 75"), report: AttemptReport(exitCode: 75))
            let report = DeadLetterReport(try await h.detail(id))
            #expect(report.job.state == .dead)
            #expect(report.lastSuccessfulStage == "fetch")
            #expect(report.failedStage == "parse")
            #expect(report.attemptsUsed == 2)
            #expect(report.attemptBudget == 2)
            #expect(report.cumulativeBackoffSec == 3)
            #expect(report.errors.map(\.node) == ["node-a", "node-b"])
            #expect(report.errors.allSatisfy { $0.reason == "exit_code" && $0.errorClass == .transient && $0.exitCode == 75 })
            #expect(report.logs == ["node-a:/var/log/baton/j/f1-1-parse"])
        },

        ConformanceCase("redriveResumesAtTheFailedStageWithWhatEarlierStagesHandedOn") { h in
            let id = try await h.enqueue(h.chain(["build", "upload"]))
            let build = try await h.claimOne("node-a")
            let output = StageOutput(stage: "build", values: ["path": "/out/app"])
            let upload = try #require(try await h.store.complete(build, report: AttemptReport(output: output)).nextLease)
            _ = try await h.store.fail(upload, failure: .fatal("http_403", "forbidden"), report: .empty)
            _ = try await h.store.redrive(jobID: id, fromStart: false)
            let again = try await h.claimOne("node-b")
            #expect(again.stageIndex == 1)
            #expect(again.outputs.values == ["path": "/out/app"])
        },

        ConformanceCase("redriveFromStartRunsEveryStageAgainWithoutEarlierOutputs") { h in
            let id = try await h.enqueue(h.chain(["build", "upload"], placements: [0: Placement(tags: ["mac"])]))
            let build = try await h.claimOne("mac-1", tags: ["mac"])
            let upload = try #require(try await h.store.complete(
                build, report: AttemptReport(output: StageOutput(stage: "build", values: ["path": "/out/app"]))).nextLease)
            _ = try await h.store.fail(upload, failure: .fatal("http_403", "forbidden"), report: .empty)
            let redriven = try await h.store.redrive(jobID: id, fromStart: true)
            #expect(redriven.stageIndex == 0)
            #expect(redriven.outputs.isEmpty)
            #expect(try await h.store.claim(ClaimRequest(nodeID: "linux-1", limit: 1)).isEmpty,
                    "the first stage's placement applies again")
            let again = try await h.claimOne("mac-2", tags: ["mac"])
            #expect(again.stageIndex == 0)
            #expect(again.outputs.isEmpty)
            #expect(try await h.events(id, .redriven).last?.detail["from_start"] == "true")
        },

        ConformanceCase("aDeadLetteredKeyIsFreeForANewJob") { h in
            _ = try await h.killOne(key: "deploy:42", id: "first")
            let again = try await h.store.enqueue(h.chain(["only"], id: "second", key: "deploy:42"))
            #expect(again == EnqueueResult(jobID: "second", deduplicated: false))
            let dup = try await h.store.enqueue(h.chain(["only"], id: "third", key: "deploy:42"))
            #expect(dup == EnqueueResult(jobID: "second", deduplicated: true), "a live job still deduplicates")
        },

        ConformanceCase("twoDeadLettersOfOneKeyHoldItsNextJobsUntilAHumanReleasesThem") { h in
            let first = try await h.killOne(key: "release:ios", id: "r1")
            #expect(first == .deadLettered(reason: "http_401"), "one dead letter does not hold the gate")
            h.clock.advance(by: 60)
            guard case .deadLettered(_, let gate?) = try await h.killOne(key: "release:ios", id: "r2") else {
                Issue.record("the second dead letter should make the gate hold")
                return
            }
            #expect(gate.key == "release:ios")
            #expect(gate.deadJobs == ["r1", "r2"])
            #expect(try await h.eventKinds("r2").contains(.gateHeld))

            let third = try await h.store.enqueue(h.chain(["only"], id: "r3", key: "release:ios"))
            #expect(third == EnqueueResult(jobID: "r3", deduplicated: false, gated: true))
            #expect(try await h.record("r3").state == .gated)
            #expect(try await h.eventKinds("r3") == [.enqueued, .gated])
            #expect(try await h.store.claim(ClaimRequest(nodeID: "node-a", limit: 5)).isEmpty)
            let other = try await h.enqueue(h.chain(["only"], id: "other", key: "release:android"))
            #expect(try await h.record(other).state == .queued, "other keys are not held")
            _ = try await h.runToSuccess("node-a")

            let listed = try await h.store.gates()
            #expect(listed.map(\.key) == ["release:ios"])
            #expect(listed.first?.state == .held)
            #expect(listed.first?.heldJobs == 1)

            let release = try await h.store.releaseGate(key: "release:ios")
            #expect(release.queued == ["r3"])
            #expect(try await h.record("r3").state == .queued)
            #expect(try await h.store.gates().first?.state == .released)
            // The count starts again: one more dead letter does not hold the gate at once.
            let r3 = try await h.claimOne("node-b")
            #expect(r3.jobID == "r3")
            #expect(try await h.store.fail(r3, failure: .fatal("http_401", "unauthorized"), report: .empty)
                    == .deadLettered(reason: "http_401"))
            await expectError(.notFound, "releasing a gate that does not hold") {
                _ = try await h.store.releaseGate(key: "release:ios")
            }
        },

        ConformanceCase("aJobHeldByAGateLongerThanItsQueueTimeoutStillRunsOnceReleased") { h in
            _ = try await h.killOne(key: "k", id: "k1")
            _ = try await h.killOne(key: "k", id: "k2")
            var spec = h.chain(["only"], id: "k3", key: "k")
            spec.queueTimeoutSec = 60
            #expect(try await h.store.enqueue(spec).gated)
            h.clock.advance(by: 3600)
            _ = try await h.store.rescue()
            #expect(try await h.record("k3").state == .gated, "a held job waits for a person, not for its timeout")
            _ = try await h.store.releaseGate(key: "k")
            _ = try await h.store.rescue()
            #expect(try await h.claimOne("node-a").jobID == "k3")
        },

        ConformanceCase("deadLettersOutsideTheGateWindowDoNotHoldIt") { h in
            _ = try await h.killOne(key: "nightly", id: "n1")
            h.clock.advance(by: 86_400 + 1)
            #expect(try await h.killOne(key: "nightly", id: "n2") == .deadLettered(reason: "http_401"))
            #expect(try await h.store.gates().isEmpty)
        },
    ]
}
