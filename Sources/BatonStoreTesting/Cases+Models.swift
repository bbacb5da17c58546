import BatonCore
import BatonStore
import Foundation
import Testing

extension StoreHarness {
    func rateLimit(_ model: String, provider: String = "acme", retryAfterSec: Double? = nil, node: String = "n1",
                   policy: CooldownPolicy = CooldownPolicy()) async throws -> ModelCooldown {
        try await store.recordModelFailure(
            ModelFailure(ref: ModelRef(provider: provider, model: model), reason: "rate_limited", retryAfterSec: retryAfterSec,
                         nodeID: node),
            policy: policy)
    }
}

extension JobStoreConformance {
    static let modelCases: [ConformanceCase] = [
        ConformanceCase("aRateLimitedModelRestsOneMinuteThenFiveThenTwentyFiveThenSixty") { h in
            var rests: [Double] = []
            for _ in 0..<5 {
                let start = h.clock.now
                let cooldown = try await h.rateLimit("big")
                rests.append(cooldown.until.timeIntervalSince(start))
                h.clock.set(cooldown.until)
            }
            #expect(rests == [60, 300, 1500, 3600, 3600])
            let stored = try #require(try await h.store.modelCooldowns().first)
            #expect(stored.level == 4 && stored.failures == 5 && stored.reason == "rate_limited" && stored.nodeID == "n1")
        },
        ConformanceCase("failuresDuringACooldownDoNotClimbTheSchedule") { h in
            let first = try await h.rateLimit("big", node: "n1")
            h.clock.advance(by: 10)
            // Another node's call was already in flight: same burst, same step.
            let second = try await h.rateLimit("big", node: "n2")
            #expect(second.level == 1 && second.until == first.until && second.failures == 2 && second.nodeID == "n2")
            let concurrent = try await withThrowingTaskGroup(of: ModelCooldown.self) { group in
                for index in 0..<8 { group.addTask { try await h.rateLimit("small", node: "n\(index)") } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(concurrent.allSatisfy { $0.level == 1 })
            let small = try #require(try await h.store.modelCooldowns().first { $0.model == "small" })
            #expect(small.level == 1 && small.failures == 8)
        },
        ConformanceCase("retryAfterReplacesTheStepAndOnlyLengthensARunningCooldown") { h in
            let start = h.clock.now
            let asked = try await h.rateLimit("big", retryAfterSec: 7)
            #expect(asked.until == start.addingTimeInterval(7) && asked.level == 1)
            let longer = try await h.rateLimit("big", retryAfterSec: 30)
            #expect(longer.until == start.addingTimeInterval(30))
            let shorter = try await h.rateLimit("big", retryAfterSec: 2)
            #expect(shorter.until == start.addingTimeInterval(30))
            h.clock.set(start.addingTimeInterval(31))
            let next = try await h.rateLimit("big")
            #expect(next.level == 2 && next.until == h.clock.now.addingTimeInterval(300))
        },
        ConformanceCase("aCooldownIsPerModelAndAProviderHoldCoversEveryModel") { h in
            _ = try await h.rateLimit("big")
            let now = h.clock.now
            let rows = try await h.store.modelCooldowns()
            #expect(rows.contains { $0.holds(ModelRef(provider: "acme", model: "big"), at: now) })
            #expect(!rows.contains { $0.holds(ModelRef(provider: "acme", model: "small"), at: now) })
            let hold = try await h.store.recordModelFailure(
                ModelFailure(ref: ModelRef(provider: "acme", model: "small"), scope: .provider, reason: "bad_credentials"),
                policy: CooldownPolicy(providerHoldSec: 900))
            #expect(hold.model == ModelCooldown.wholeProvider && hold.until == now.addingTimeInterval(900))
            let held = try await h.store.modelCooldowns()
            #expect(held.contains { $0.holds(ModelRef(provider: "acme", model: "small"), at: now) })
            #expect(!held.contains { $0.holds(ModelRef(provider: "other", model: "small"), at: now) })
            #expect(try await h.store.clearModelCooldowns(provider: "acme", model: ModelCooldown.wholeProvider) == 1)
            #expect(try await h.store.modelCooldowns().map(\.model) == ["big"])
            _ = try await h.rateLimit("small")
            #expect(try await h.store.clearModelCooldowns(provider: "acme", model: nil) == 2)
            #expect(try await h.store.modelCooldowns().isEmpty)
        },
        ConformanceCase("clearingOnlyEndedCooldownsLeavesARunningOne") { h in
            _ = try await h.rateLimit("big")
            h.clock.advance(by: 61)
            _ = try await h.rateLimit("small")
            #expect(try await h.store.clearModelCooldowns(provider: "acme", model: "small", onlyEnded: true) == 0)
            #expect(try await h.store.clearModelCooldowns(provider: "acme", model: nil, onlyEnded: true) == 1)
            #expect(try await h.store.modelCooldowns().map(\.model) == ["small"])
        },
        ConformanceCase("aProviderHoldKeepsTheRefusedKeysDigestAndAStreakEndsAfterAQuietSpell") { h in
            let hold = try await h.store.recordModelFailure(
                ModelFailure(ref: ModelRef(provider: "acme", model: "big"), scope: .provider, reason: "bad_credentials",
                             keyID: ModelCooldown.keyID(of: "sk-old")),
                policy: CooldownPolicy())
            let stored = try #require(try await h.store.modelCooldowns().first)
            #expect(stored == hold && stored.keyID == ModelCooldown.keyID(of: "sk-old"))
            let now = h.clock.now
            #expect(stored.holds(ModelRef(provider: "acme", model: "x"), at: now, keyID: ModelCooldown.keyID(of: "sk-old")))
            #expect(!stored.holds(ModelRef(provider: "acme", model: "x"), at: now, keyID: ModelCooldown.keyID(of: "sk-new")))
            // Level 2, then a quiet spell longer than the last step: the next 429 starts over.
            _ = try await h.rateLimit("big")
            h.clock.advance(by: 60)
            #expect(try await h.rateLimit("big").level == 2)
            h.clock.advance(by: 300 + 3600 + 1)
            let fresh = try await h.rateLimit("big")
            #expect(fresh.level == 1 && fresh.failures == 1 && fresh.until == h.clock.now.addingTimeInterval(60))
        },
        ConformanceCase("llmCallsCountResendsPerStageAndARedriveStartsTheBudgetAgain") { h in
            let id = try await h.enqueue(h.spec(stages: 2))
            var spend = try await h.store.recordLLMCall(jobID: id, stage: "s1", tokens: 100)
            #expect(spend.calls == 1 && spend.tokensSent == 100 && spend.tokensResent == 0)
            spend = try await h.store.recordLLMCall(jobID: id, stage: "s1", tokens: 120)
            #expect(spend.tokensResent == 120 && spend.stages["s1"]?.calls == 2)
            // The first call of another stage is not a resend.
            spend = try await h.store.recordLLMCall(jobID: id, stage: "s2", tokens: 50)
            #expect(spend.calls == 3 && spend.tokensSent == 270 && spend.tokensResent == 120)
            #expect(try await h.store.llmSpend(jobID: id) == spend)
            let lease = try await h.claimOne("n1")
            _ = try await h.store.fail(lease, failure: .fatal("llm_http_400", "bad request"), report: .empty)
            _ = try await h.store.redrive(jobID: id)
            #expect(try await h.store.llmSpend(jobID: id) == .none)
        },
        ConformanceCase("appendedEventsJoinTheJobLogAndUnknownJobsAreIgnored") { h in
            let id = try await h.enqueue(h.spec())
            let lease = try await h.claimOne("n1")
            try await h.store.appendEvents([
                lease.event(.modelFailed, at: h.clock.now, detail: ["model": "acme/big", "reason": "rate_limited"]),
                lease.event(.modelAnswered, at: h.clock.now, detail: ["model": "other/small"]),
                JobEvent(jobID: "no-such-job", at: h.clock.now, kind: .modelSkipped),
            ])
            let events = try await h.store.events(jobID: id)
            let models = events.filter { [.modelFailed, .modelAnswered].contains($0.kind) }
            #expect(models.map(\.kind) == [.modelFailed, .modelAnswered])
            #expect(models.first?.detail == ["model": "acme/big", "reason": "rate_limited"])
            #expect(models.allSatisfy { $0.nodeID == "n1" && $0.fence == lease.fence && $0.stage == "s1" })
            #expect(try await h.store.events(jobID: "no-such-job").isEmpty)
        },
    ]
}
