import BatonCore
import BatonStore
import Foundation
import Logging

/// One `llm` stage attempt walking its model chain: what it skipped, what failed and why,
/// written to the job's log as it goes (before each call, so a crash keeps what came before).
struct ChainRun {
    let executor: LLMExecutor
    let context: StageContext
    let settings: ModelSettings
    let request: LLMStageRequest
    let prompt: Prompt
    let started = ContinuousClock.now

    /// Events not yet written.
    private var pending: [JobEvent] = []
    /// One line per model for the attempt's failure message.
    private var account: [String] = []
    /// Whether every model given up on was resting (then the attempt returns when a rest ends).
    private var allResting = true
    /// The longest wait a transient answer asked for.
    private var transientAsk: Double?
    /// The model given up on last, and why: the `from` of the next failover.
    private var previous: (ref: ModelRef, reason: String)?

    init(executor: LLMExecutor, context: StageContext, settings: ModelSettings, request: LLMStageRequest, prompt: Prompt) {
        self.executor = executor
        self.context = context
        self.settings = settings
        self.request = request
        self.prompt = prompt
    }

    var lease: Lease { context.lease }
    var now: Date { executor.clock.now() }

    mutating func go(_ chain: ModelChain) async -> StageResult {
        let budget = request.tokenBudget ?? settings.tokenBudget
        var spend: LLMSpend
        var cooldowns: [ModelCooldown]
        do {
            spend = try await executor.store.llmSpend(jobID: lease.jobID)
            cooldowns = try await executor.store.modelCooldowns()
        } catch {
            return .failed(.transient("store_unavailable", "could not read the model cooldowns or the job's token spend: \(error)"), .empty)
        }
        var called = false
        for ref in chain.candidates {
            if let reason = context.abort.reason { return await stop(reason) }
            guard let provider = settings.provider(named: ref.provider) else {
                skip(ref, "provider_not_configured", ["provider": ref.provider])
                continue
            }
            var apiKey: String?
            if let name = provider.apiKeyEnv {
                guard let key = executor.environment(name), !key.isEmpty else {
                    skip(ref, "missing_api_key", ["variable": name])
                    continue
                }
                apiKey = key
            }
            let keyID = apiKey.map(ModelCooldown.keyID(of:))
            if called, let fresh = try? await executor.store.modelCooldowns() {
                // A long call: other nodes may have seen this model fail meanwhile.
                cooldowns = fresh
            }
            if let rest = cooldowns.first(where: { $0.holds(ref, at: now, keyID: keyID) }) {
                skip(ref, rest.isWholeProvider ? "provider_held" : "cooling_down",
                     ["cause": rest.reason, "until": JSONTime.string(rest.until), "level": String(rest.level)],
                     resting: !rest.isWholeProvider)
                continue
            }
            if let over = TokenBudget.refusal(stage: lease.stage.name, tokens: prompt.tokens, spend: spend, budget: budget) {
                pending.append(lease.event(.modelSkipped, at: now, detail: [
                    "model": ref.description, "reason": "token_budget_exceeded", "tokens": String(prompt.tokens),
                    "resent_after": String(over), "budget": String(budget),
                ]))
                await flush()
                return .failed(.fatal("token_budget_exceeded",
                                      "calling \(ref) would resend \(prompt.tokens) tokens, \(over) in all for this job, "
                                          + "over its token budget of \(budget) (run.llm.token_budget or models.token_budget); "
                                          + "earlier calls: \(spend.calls)"),
                               .empty)
            }
            await flush()
            do {
                spend = try await executor.store.recordLLMCall(jobID: lease.jobID, stage: lease.stage.name, tokens: prompt.tokens)
            } catch {
                return .failed(.transient("store_unavailable", "could not record the call to \(ref) before making it: \(error)"), .empty)
            }
            called = true
            if let previous { NodeMetrics.failover(from: previous.ref, to: ref, reason: previous.reason) }
            let wire = LLMWire.request(provider, apiKey: apiKey, model: ref.model, system: prompt.system, messages: prompt.messages,
                                       maxTokens: request.maxTokens, temperature: request.temperature)
            let callStart = ContinuousClock.now
            let outcome = await executor.call(wire, kind: provider.kind, apiKey: apiKey, callTimeoutSec: provider.timeoutSec,
                                              stageLeftSec: stageLeftSec, abort: context.abort)
            let latency = String(NodeMetrics.nanoseconds(since: callStart) / 1_000_000)
            switch outcome {
            case .answered(let answer):
                NodeMetrics.llmCall(ref, outcome: "answered")
                NodeMetrics.tokens(ref, input: answer.inputTokens, output: answer.outputTokens)
                pending.append(lease.event(.modelAnswered, at: now, detail: [
                    "model": ref.description, "provider_model": answer.model, "latency_ms": latency,
                    "input_tokens": answer.inputTokens.map(String.init) ?? "", "output_tokens": answer.outputTokens.map(String.init) ?? "",
                    "finish_reason": answer.finishReason ?? "",
                ].filter { !$0.value.isEmpty }))
                await flush()
                await forgetRests(of: ref, in: cooldowns)
                return .succeeded(report(answer, ref))
            case .aborted(let reason):
                NodeMetrics.llmCall(ref, outcome: "cut")
                pending.append(lease.event(.modelFailed, at: now, detail: [
                    "model": ref.description, "reason": "cut", "why": "\(reason)", "latency_ms": latency,
                ]))
                return await stop(reason)
            case .stageTimedOut:
                NodeMetrics.llmCall(ref, outcome: "stage_timeout")
                pending.append(lease.event(.modelFailed, at: now, detail: [
                    "model": ref.description, "reason": context.lease.stage.timeoutClass.reason, "latency_ms": latency,
                ]))
                await flush()
                return .failed(context.timeoutFailure("; the call to \(ref) was cut"), .empty)
            case .transport(let reason, let detail):
                NodeMetrics.llmCall(ref, outcome: reason)
                fail(ref, reason: reason, ["detail": detail, "latency_ms": latency])
            case .refused(let status, let verdict, let errorType, let message):
                NodeMetrics.llmCall(ref, outcome: "http_\(status)")
                var detail = ["status": String(status), "latency_ms": latency]
                if let errorType { detail["error_type"] = errorType }
                if let message { detail["message"] = message }
                switch verdict {
                case .fatal(let reason):
                    fail(ref, reason: reason, detail, retried: false)
                    await flush()
                    return .failed(.fatal("llm_\(reason)",
                                          "\(ref) answered HTTP \(status)\(errorType.map { " (\($0))" } ?? ""): the request itself "
                                              + "was refused, so no other model is tried\(message.map { ": \($0)" } ?? "")"),
                                   AttemptReport(stdout: message, httpStatus: status))
                case .transient(let reason, let retryAfter):
                    if let retryAfter {
                        detail["retry_after_sec"] = String(format: "%.3f", retryAfter)
                        transientAsk = max(transientAsk ?? 0, retryAfter)
                    }
                    fail(ref, reason: reason, detail)
                case .coolDown(let reason, let retryAfter):
                    let failure = ModelFailure(ref: ref, reason: reason, retryAfterSec: retryAfter, nodeID: lease.nodeID)
                    if let rest = await record(failure, into: &cooldowns) { detail["cooldown_until"] = JSONTime.string(rest.until) }
                    if let retryAfter { detail["retry_after_sec"] = String(format: "%.3f", retryAfter) }
                    fail(ref, reason: reason, detail, resting: true)
                case .blockProvider(let reason):
                    let failure = ModelFailure(ref: ref, scope: .provider, reason: reason, nodeID: lease.nodeID, keyID: keyID)
                    if let hold = await record(failure, into: &cooldowns) {
                        detail["held_until"] = JSONTime.string(hold.until)
                        executor.alerts.providerHeld(hold, job: lease.jobID, nodeID: lease.nodeID, logger: executor.logger)
                    }
                    fail(ref, reason: reason, detail)
                }
            }
        }
        await flush()
        // Come back after the job's own backoff, or later: when the first rest ends (every
        // model was resting), or when a transient answer asked.
        let restLeft = allResting ? chain.candidates.compactMap { ref in
            cooldowns.filter { $0.holds(ref, at: now) && !$0.isWholeProvider }.map(\.until).max()
        }.min().map { max(0, $0.timeIntervalSince(now)) } : nil
        let asked = [restLeft, transientAsk].compactMap(\.self).max()
        let backoff = lease.spec.retry.delay(afterAttempt: lease.attempt, jitterUnit: Double.random(in: -1...1))
        let tried = account.joined(separator: "; ")
        let reason = allResting || transientAsk != nil || account.contains(where: { $0.contains("failed") })
            ? "llm_unavailable" : "llm_no_usable_model"
        return .failed(.transient(reason, "no model of the chain answered: \(tried)", retryAfterSec: asked.map { max($0, backoff) }),
                       .empty)
    }

    private var stageLeftSec: Double {
        let elapsed = ContinuousClock.now - started
        let used = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return max(0, Double(context.timeoutSec) - used)
    }

    private mutating func skip(_ ref: ModelRef, _ reason: String, _ detail: [String: String], resting: Bool = false) {
        pending.append(lease.event(.modelSkipped, at: now, detail: detail.merging(["model": ref.description, "reason": reason]) { $1 }))
        account.append("\(ref) skipped (\(reason)\(detail["until"].map { " until \($0)" } ?? ""))")
        previous = (ref, reason)
        if !resting { allResting = false }
    }

    private mutating func fail(_ ref: ModelRef, reason: String, _ detail: [String: String], retried: Bool = true,
                               resting: Bool = false) {
        pending.append(lease.event(.modelFailed, at: now, detail: detail.merging(["model": ref.description, "reason": reason]) { $1 }))
        account.append("\(ref) failed (\(reason)\(detail["status"].map { ", HTTP \($0)" } ?? ""))")
        if retried { NodeMetrics.llmRetry(provider: ref.provider, reason: reason) }
        previous = (ref, reason)
        if !resting { allResting = false }
    }

    /// Stores a model's rest (or its provider's hold) so every node sees it, and this run too
    /// (also when the store cannot be written: this run must not call what just refused it).
    private func record(_ failure: ModelFailure, into cooldowns: inout [ModelCooldown]) async -> ModelCooldown? {
        let rest: ModelCooldown
        do {
            rest = try await executor.store.recordModelFailure(failure, policy: settings.cooldown)
        } catch {
            executor.logger.warning("could not store a model cooldown; other nodes may call the model meanwhile", metadata: [
                "model": .string(failure.ref.description), "reason": .string(failure.reason), "error": "\(error)",
            ])
            let current = cooldowns.first { $0.provider == failure.ref.provider && $0.model == failure.model }
            rest = settings.cooldown.next(after: failure, current: current, now: now, jitterUnit: 0)
        }
        cooldowns.removeAll { $0.provider == rest.provider && $0.model == rest.model }
        cooldowns.append(rest)
        return rest
    }

    /// A model that answered starts its schedule again (and its provider's hold, run out, goes);
    /// a rest another node set since the snapshot stays.
    private func forgetRests(of ref: ModelRef, in cooldowns: [ModelCooldown]) async {
        for rest in cooldowns where rest.provider == ref.provider && (rest.model == ref.model || rest.isWholeProvider) {
            do {
                _ = try await executor.store.clearModelCooldowns(provider: rest.provider, model: rest.model, onlyEnded: true)
            } catch {
                executor.logger.warning("could not clear a model cooldown", metadata: ["model": .string(ref.description), "error": "\(error)"])
            }
        }
    }

    private mutating func flush() async {
        guard !pending.isEmpty else { return }
        let events = pending
        pending = []
        do {
            try await executor.store.appendEvents(events)
        } catch {
            executor.logger.warning("could not write the models tried to the job log", metadata: [
                "job.id": .string(lease.jobID), "events": .stringConvertible(events.count), "error": "\(error)",
            ])
        }
    }

    private mutating func stop(_ reason: AbortReason) async -> StageResult {
        await flush()
        return .aborted(reason, .empty)
    }

    private func report(_ answer: LLMWire.Answer, _ ref: ModelRef) -> AttemptReport {
        var values = ["reply": answer.text, "model": ref.description, "provider": ref.provider,
                      "provider_model": answer.model.isEmpty ? ref.model : answer.model]
        if let input = answer.inputTokens { values["input_tokens"] = String(input) }
        if let output = answer.outputTokens { values["output_tokens"] = String(output) }
        if let finish = answer.finishReason { values["finish_reason"] = finish }
        let excerpt = HTTPResponsePolicy.excerpt(Array(answer.text.utf8), limit: max(0, context.captureBytes))
        return AttemptReport(stdout: excerpt, httpStatus: 200, output: StageOutput(stage: lease.stage.name, values: values))
    }
}
