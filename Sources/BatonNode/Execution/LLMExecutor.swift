import AsyncHTTPClient
import BatonCore
import BatonStore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Runs an `llm` stage: one model call through the configured providers, trying the stage's
/// chain (`model.primary`, then `model.fallbacks`) until a model answers.
///
/// - a model resting in the store (a 429, 529 or overload seen by any node) is skipped without
///   a call; so is every model of a provider held for bad credentials or a used-up quota;
/// - each answer is classified by `ProviderVerdict` (status, error type, rate-limit headers):
///   rest the model and try the next, hold the provider and try the next (with an alert),
///   try the next without a rest (503, reset, timeout), or stop: a request no model can
///   answer (400, 413, 422, a plain 500) dead-letters the job;
/// - before a call resends the stage's context (a fallback, a retry, a re-run after a
///   release) the job's token budget is checked, and the call is recorded in the store first,
///   so a call cut by a crash still counts;
/// - when no model answered, the attempt fails as transient: it runs again after its backoff,
///   or when the first model of the chain comes out of its rest, whichever is later;
/// - an abort (shutdown past the drain timeout, lease lost, cancel) cuts the call in flight:
///   at shutdown the attempt is released, not failed, so it runs once more elsewhere;
/// - every model tried, skipped or failed, and why, is written to the job's event log.
public final class LLMExecutor: StageExecutor {
    let store: any JobStore
    private let settings: Mutex<ModelSettings>
    let client: HTTPClient?
    let environment: @Sendable (String) -> String?
    let clock: BatonClock
    let alerts: Alerts
    let logger: Logger

    /// - Parameters:
    ///   - client: the client to call providers with; nil uses `HTTPExecutor.sharedClient`.
    ///   - environment: where API keys are read (`api_key_env`), on each call.
    ///   - clock: the time cooldowns are compared with (the store keeps its own for writing them).
    public init(store: any JobStore, settings: ModelSettings, client: HTTPClient? = nil,
                environment: @escaping @Sendable (String) -> String? = { ProcessInfo.processInfo.environment[$0] },
                clock: BatonClock = .system, alerts: Alerts = .logOnly, logger: Logger = Logger(label: "baton.llm")) {
        self.store = store
        self.settings = Mutex(settings)
        self.client = client
        self.environment = environment
        self.clock = clock
        self.alerts = alerts
        self.logger = logger
    }

    /// The client of every executor built without one. No read timeout: a non-streaming
    /// answer sends nothing until the model is done, so the provider's `timeout_sec` (and the
    /// stage's timeout) bound a call instead. Redirects are not followed (they would carry
    /// the key elsewhere).
    public static let sharedClient: HTTPClient = {
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(10), read: nil)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// Answer bytes read at most (a longer answer is a `bad_response`).
    public static let maxAnswerBytes = 16 << 20

    /// Takes the settings of a reloaded configuration; calls in flight keep the ones they began with.
    public func reload(_ settings: ModelSettings) { self.settings.withLock { $0 = settings } }

    public var currentSettings: ModelSettings { settings.withLock { $0 } }

    public func execute(_ context: StageContext) async -> StageResult {
        guard case .llm(let request) = context.lease.stage.run else {
            return .failed(.fatal("wrong_executor", "llm executor given a \(context.lease.stage.run.kind) stage"), .empty)
        }
        let settings = currentSettings
        guard let chain = settings.chain(for: request) else {
            let what = request.agent.map { "its agent \"\($0)\" has no model (agents.list[].model)" } ?? "it names no model (run.llm.model)"
            return .failed(.fatal("no_model", "the llm stage has no model to call: \(what), and agents.defaults.model is not set"), .empty)
        }
        let prompt: Prompt
        switch Prompt.render(request, lease: context.lease) {
        case .success(let rendered): prompt = rendered
        case .failure(let error): return .failed(error.failure, .empty)
        }
        var run = ChainRun(executor: self, context: context, settings: settings, request: request, prompt: prompt)
        return await run.go(chain)
    }

    // MARK: One call

    enum CallOutcome: Sendable {
        case answered(LLMWire.Answer)
        /// A status other than 2xx: its verdict, and text for the event log.
        case refused(status: Int, verdict: ProviderVerdict, errorType: String?, message: String?)
        /// A 2xx the format could not read, or a failure before (or while) the answer arrived.
        case transport(reason: String, detail: String)
        case stageTimedOut
        case aborted(AbortReason)
    }

    func call(_ wire: LLMWire.Request, kind: ProviderSettings.Kind, apiKey: String?, callTimeoutSec: Int,
              stageLeftSec: Double, abort: AbortSignal) async -> CallOutcome {
        let secrets = apiKey.map { [$0] } ?? []
        let rendered = HTTPExecutor.RenderedRequest(method: "POST", url: wire.url, headers: wire.headers,
                                                    body: String(decoding: wire.body, as: UTF8.self), secrets: secrets)
        let client = self.client ?? Self.sharedClient
        let stageEndsFirst = stageLeftSec < Double(callTimeoutSec)
        let limitSec = max(0.001, min(Double(callTimeoutSec), stageLeftSec))
        enum Raced: Sendable { case sent(HTTPExecutor.Outcome), limit, aborted(AbortReason) }
        let raced: Raced = await withTaskGroup(of: Raced?.self) { group in
            group.addTask {
                await HTTPExecutor.send(rendered, with: client, timeoutSec: Int(limitSec.rounded(.up)), maxBytes: Self.maxAnswerBytes)
                    .map(Raced.sent)
            }
            group.addTask {
                do { try await Task.sleep(for: .milliseconds(Int64(limitSec * 1000))) } catch { return nil }
                return .limit
            }
            group.addTask { await abort.wait().map(Raced.aborted) }
            while let next = await group.next() {
                guard let next else { continue }
                group.cancelAll()
                return next
            }
            return .aborted(.shutdown)
        }
        switch raced {
        case .aborted(let reason):
            return .aborted(reason)
        case .limit, .sent(.timedOut):
            return stageEndsFirst ? .stageTimedOut
                                  : .transport(reason: "timeout", detail: "no answer within the provider's timeout_sec of \(callTimeoutSec) s")
        case .sent(.aborted(let reason)):
            return .aborted(reason)
        case .sent(.transport(let reason, let detail)):
            return .transport(reason: reason, detail: HTTPResponsePolicy.redact(detail, secrets: secrets))
        case .sent(.response(let status, let headers, let body, let total, let bodyError)):
            if let bodyError {
                return .transport(reason: "connection_error",
                                  detail: "HTTP \(status), but the body was cut short: \(HTTPResponsePolicy.redact(bodyError, secrets: secrets))")
            }
            if (200..<300).contains(status) {
                guard total == body.count, let answer = LLMWire.answer(kind, body: body) else {
                    return .transport(reason: "bad_response",
                                      detail: "HTTP \(status) with a body that is not a \(kind.rawValue) answer (\(total) bytes)")
                }
                return .answered(answer)
            }
            let errorType = LLMWire.errorType(body: body)
            let retryable = headers.first(name: HTTPStageRequest.defaultRetryableHeader)?.lowercased() == "true"
            let verdict = ProviderVerdict.classify(
                status: status, errorType: errorType,
                retryAfterSec: LLMWire.retryAfter({ headers.first(name: $0) }, now: clock.now()), retryable: retryable)
            let message = LLMWire.errorMessage(body: body).map { HTTPResponsePolicy.redact($0, secrets: secrets) }
            return .refused(status: status, verdict: verdict, errorType: errorType, message: message)
        }
    }
}

/// The rendered texts of a stage, and what they cost in tokens.
struct Prompt: Sendable {
    var system: String?
    var messages: [LLMMessage]
    var tokens: Int

    static func render(_ request: LLMStageRequest, lease: Lease) -> Result<Prompt, StageTemplates.TemplateFailure> {
        var system: String?
        if let text = request.system {
            switch StageTemplates.render(text, field: "run.llm.system", lease: lease) {
            case .success(let rendered): system = rendered
            case .failure(let error): return .failure(error)
            }
        }
        var messages: [LLMMessage] = []
        for (index, message) in request.messages.enumerated() {
            switch StageTemplates.render(message.content, field: "run.llm.messages[\(index)].content", lease: lease) {
            case .success(let rendered): messages.append(LLMMessage(role: message.role, content: rendered))
            case .failure(let error): return .failure(error)
            }
        }
        return .success(Prompt(system: system, messages: messages,
                               tokens: TokenBudget.estimate((system.map { [$0] } ?? []) + messages.map(\.content))))
    }
}
