import BatonCore
import BatonStore
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension MultiProcessTests {
/// SIGTERM while a real `baton worker` waits on a slow model: the call finishes within the
/// drain timeout, or it is cut, the attempt released (not failed, not counted) and run once
/// more by another node. Never a retry storm with the whole context.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct LLMShutdownTests {
    static func providers(_ provider: FakeProvider) -> String {
        // A provider with its own base_url needs no key: the fake checks none.
        "providers: [{name: fake, kind: anthropic, base_url: '\(provider.anthropicURL)', timeout_sec: 120}]"
    }

    static func job() -> JobSpec {
        JobSpec(id: JobID.make(), stages: [StageSpec(name: "ask", run: .llm(LLMStageRequest(
            model: ModelChain(primary: ModelRef(provider: "fake", model: "slow")),
            messages: [LLMMessage(role: "user", content: String(repeating: "long context ", count: 200))])))],
            leaseTTLSec: 10)
    }

    @Test func aSlowCallFinishesWithinTheDrainTimeoutAndIsNotSentAgain() async throws {
        let h = try await ProcessHarness()
        let provider = try await FakeProvider.start()
        defer { h.finish(); Task { await provider.stop() } }
        provider.script("slow", .slow(2, .answer("finished during the drain")))
        let worker = try h.startWorker("drainer", drainTimeoutSec: 20, extra: Self.providers(provider))
        let spec = Self.job()
        _ = try await h.store.enqueue(spec)
        try await h.waitUntil(timeout: 30, "the call to be in flight") { provider.inFlight == 1 }
        h.signal(worker, SIGTERM)
        try await h.waitForExit(worker, timeout: 30)
        let job = try #require(try await h.store.job(id: spec.id))
        #expect(job.state == .succeeded)
        #expect(provider.calls(to: "slow").count == 1)
        #expect(job.outputs.values["reply"] == "finished during the drain")
        let events = try await h.store.events(jobID: spec.id)
        #expect(!events.contains { $0.kind == .released || $0.kind == .failed })
        #expect(worker.terminationStatus == 0, "the worker exits cleanly after its drain")
    }

    @Test func aCallCutAtShutdownIsReleasedAndRunsOnceMoreElsewhereNeverFourTimes() async throws {
        let h = try await ProcessHarness()
        let provider = try await FakeProvider.start()
        defer { h.finish(); Task { await provider.stop() } }
        // The first call never ends in time; the second is answered.
        provider.script("slow", .slow(60, .answer("too late")))
        let first = try h.startWorker("cut", drainTimeoutSec: 0.5, extra: Self.providers(provider))
        let spec = Self.job()
        _ = try await h.store.enqueue(spec)
        try await h.waitUntil(timeout: 30, "the call to be in flight") { provider.inFlight == 1 }
        h.signal(first, SIGTERM)
        try await h.waitForExit(first, timeout: 30)
        let released = try #require(try await h.store.job(id: spec.id))
        #expect(released.state == .queued, "released at shutdown, not failed: \(released.state)")
        #expect(released.attempts == 0, "a released attempt is not counted")

        let second = try h.startWorker("other", extra: Self.providers(provider))
        try await h.waitUntil(timeout: 30, "another node to run it") { try await h.store.job(id: spec.id)?.state == .succeeded }
        h.signal(second, SIGTERM)
        #expect(provider.calls(to: "slow").count == 2, "one cut call and one re-run, nothing more")
        let events = try await h.store.events(jobID: spec.id)
        #expect(events.filter { $0.kind == .released }.count == 1)
        #expect(events.filter { $0.kind == .failed || $0.kind == .retried }.isEmpty)
        let claims = events.filter { $0.kind == .claimed }
        #expect(claims.map { $0.nodeID ?? "" } == ["cut", "other"])
        let cut = try #require(events.first { $0.kind == .modelFailed })
        #expect(cut.detail["reason"] == "cut" && cut.nodeID == "cut")
        #expect(events.last { $0.kind == .modelAnswered }?.nodeID == "other")
        let job = try #require(try await h.store.job(id: spec.id))
        #expect(job.attempts == 1)
        // Both sends are on the job's record: the re-run counted as a resend of the context.
        let spend = try await h.store.llmSpend(jobID: spec.id)
        #expect(spend.calls == 2 && spend.tokensResent == spend.stages["ask"]?.firstTokens)
    }
}
}
