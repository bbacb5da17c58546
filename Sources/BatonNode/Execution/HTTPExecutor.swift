import AsyncHTTPClient
import BatonCore
import BatonStore
import Foundation
import NIOCore
import NIOHTTP1

/// Runs an `http` stage: renders its URL, headers and body templates, sends one request and
/// classifies the answer (see `HTTPResponsePolicy`).
///
/// - a template that names an output no earlier stage wrote fails fatally (`missing_output`),
///   and so does a header naming an environment variable the node does not have
///   (`missing_secret`, naming the variable, never a value);
/// - the request has the stage timeout as its deadline and is cancelled when the stage is
///   aborted; a transport failure (refused, reset, read timeout) is transient;
/// - the attempt keeps the status and the first `excerpt_bytes` of the body; the body is read
///   to its end, but at most `maxBodyBytes` of it are held in memory;
/// - values rendered from `{{env.…}}` are secrets: they reach the server and nothing else (no
///   report, failure message or log line; a response that echoes one has it redacted).
public struct HTTPExecutor: StageExecutor {
    /// Response bytes held in memory at most; the rest is read and dropped.
    public static let maxBodyBytes = 1 << 20

    /// The client of every executor built without one: created on first use, for the life of
    /// the process. Redirects are not followed: one to another origin would carry the stage's
    /// headers, secrets included, to a server the job never named.
    public static let sharedClient: HTTPClient = {
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(90))
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    let client: HTTPClient?
    let environment: @Sendable (String) -> String?
    let clock: BatonClock

    /// - Parameters:
    ///   - client: the client to send with; nil uses `sharedClient`.
    ///   - environment: reads the variables `{{env.NAME}}` names (the process environment by default).
    ///   - clock: the time a `Retry-After` date is counted from.
    public init(client: HTTPClient? = nil,
                environment: @escaping @Sendable (String) -> String? = { ProcessInfo.processInfo.environment[$0] },
                clock: BatonClock = .system) {
        self.client = client
        self.environment = environment
        self.clock = clock
    }

    public func execute(_ context: StageContext) async -> StageResult {
        guard case .http(let stage) = context.lease.stage.run else {
            return .failed(.fatal("wrong_executor", "http executor given a \(context.lease.stage.run.kind) stage"), .empty)
        }
        let request: RenderedRequest
        do {
            request = try render(stage, lease: context.lease)
        } catch {
            return .failed(error.failure, .empty)
        }

        let client = self.client ?? Self.sharedClient
        let timeout = context.timeoutSec
        let outcome: Outcome = await withTaskGroup(of: Outcome?.self) { group in
            group.addTask { await Self.send(request, with: client, timeoutSec: timeout) }
            group.addTask {
                do { try await Task.sleep(for: .seconds(timeout)) } catch { return nil }
                return .timedOut
            }
            group.addTask { await context.abort.wait().map(Outcome.aborted) }
            // The first outcome wins; cancelling the rest cancels the request in flight.
            while let next = await group.next() {
                guard let next else { continue }
                group.cancelAll()
                return next
            }
            return .transport(reason: "connection_error", detail: "the request was cancelled")
        }

        switch outcome {
        case .response(let status, let headers, let body, let total, let bodyError):
            let cutShort = total > body.count
            let text = request.secrets.isEmpty ? nil
                : HTTPResponsePolicy.redact(String(decoding: body, as: UTF8.self), secrets: request.secrets, cutShort: cutShort)
            let report = AttemptReport(
                stdout: HTTPResponsePolicy.excerpt(text.map { Array($0.utf8) } ?? body, limit: stage.excerptBytes,
                                                   truncated: cutShort),
                httpStatus: status)
            if let failure = HTTPResponsePolicy.failure(status: status, header: { headers.first(name: $0) },
                                                        retryableHeader: stage.retryableHeader,
                                                        method: request.method, url: request.url, now: clock.now()) {
                return .failed(failure, report)
            }
            if let bodyError {
                return .failed(.transient("connection_error", "\(request.method) \(request.url) answered HTTP \(status), "
                                          + "but its body was cut short: \(request.redact(bodyError))"),
                               report)
            }
            var succeeded = report
            succeeded.output = StageOutput(stage: context.lease.stage.name, values: ["http_status": String(status)])
            return .succeeded(succeeded)
        case .transport(let reason, let detail):
            let failure = Failure.transient(
                reason, "\(request.method) \(request.url) failed before an answer: \(request.redact(detail))")
            return .failed(failure, .empty)
        case .timedOut:
            return .failed(context.timeoutFailure("; the request was cancelled"), .empty)
        case .aborted(let reason):
            return .aborted(reason, .empty)
        }
    }

    // MARK: Rendering

    /// A request ready to send, and the values that must not leave it.
    struct RenderedRequest: Sendable {
        var method: String
        var url: String
        /// By name, in name order.
        var headers: [(name: String, value: String)]
        var body: String?
        /// Values rendered from `{{env.…}}`, and whole header values built with them.
        var secrets: [String]

        func redact(_ text: String) -> String { HTTPResponsePolicy.redact(text, secrets: secrets) }
    }

    struct RenderFailure: Error {
        var failure: Failure
    }

    /// Renders the stage's templates against the lease (outputs, job, stage) and this node's
    /// environment, checking every reference before anything is sent.
    func render(_ stage: HTTPStageRequest, lease: Lease) throws(RenderFailure) -> RenderedRequest {
        let outputs = lease.outputs.values
        var secrets: [String] = []

        func parse(_ text: String, field: String, allowEnv: Bool) throws(RenderFailure) -> Template {
            do {
                return try Template.parse(text, field: field, allowEnv: allowEnv)
            } catch {
                throw RenderFailure(failure: .fatal("invalid_template", error.description))
            }
        }

        func render(_ template: Template, field: String) throws(RenderFailure) -> String {
            for reference in template.references {
                switch reference.namespace {
                case .output where outputs[reference.name] == nil:
                    throw RenderFailure(failure: StageTemplates.missingOutput(reference.name, field: field, outputs: outputs))
                case .env:
                    guard let value = environment(reference.name), !value.isEmpty else {
                        throw RenderFailure(failure: .fatal(
                            "missing_secret",
                            "\(field) uses {{env.\(reference.name)}}, but the variable \(reference.name) is not set "
                                + "(or is empty) on node \(lease.nodeID)"))
                    }
                    secrets.append(value)
                default:
                    break
                }
            }
            let rendered: String
            do {
                rendered = try template.render { reference in
                    reference.namespace == .env ? environment(reference.name) ?? ""
                                                : StageTemplates.value(reference, lease: lease, outputs: outputs)
                }
            } catch {
                throw RenderFailure(failure: .fatal("invalid_template", error.description))
            }
            if template.references.contains(where: { $0.namespace == .env }) { secrets.append(rendered) }
            return rendered
        }

        let url = try render(try parse(stage.url, field: "run.http.url", allowEnv: false), field: "run.http.url")
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = parsed.host, !host.isEmpty else {
            throw RenderFailure(failure: .fatal("invalid_url", "run.http.url rendered to \"\(url)\": expected an http:// or https:// URL with a host"))
        }
        var headers: [(name: String, value: String)] = []
        for name in stage.headers.keys.sorted() {
            let field = "run.http.headers.\(name)"
            let value = try render(try parse(stage.headers[name] ?? "", field: field, allowEnv: true), field: field)
            guard !value.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
                throw RenderFailure(failure: .fatal("invalid_header", "\(field) rendered to a value with a line break or NUL"))
            }
            headers.append((name, value))
        }
        var body: String?
        if let text = stage.body {
            body = try render(try parse(text, field: "run.http.body", allowEnv: false), field: "run.http.body")
        }
        return RenderedRequest(method: stage.method, url: url, headers: headers, body: body,
                               secrets: Array(Set(secrets.filter { !$0.isEmpty })).sorted { $0.count > $1.count })
    }

    // MARK: Sending

    enum Outcome: Sendable {
        /// The status, the headers, the body bytes held (at most the cap), the body's full
        /// length, and why reading the body stopped early, if it did.
        case response(status: Int, headers: HTTPHeaders, body: [UInt8], total: Int, bodyError: String?)
        case transport(reason: String, detail: String)
        case timedOut
        case aborted(AbortReason)
    }

    /// Sends the request and reads its body. Nil when cancelled (the stage stopped).
    static func send(_ rendered: RenderedRequest, with client: HTTPClient, timeoutSec: Int,
                     maxBytes: Int = maxBodyBytes) async -> Outcome? {
        var request = HTTPClientRequest(url: rendered.url)
        request.method = HTTPMethod(rawValue: rendered.method)
        for header in rendered.headers { request.headers.add(name: header.name, value: header.value) }
        if !request.headers.contains(name: "user-agent") {
            request.headers.add(name: "user-agent", value: "baton/\(BatonVersion.current)")
        }
        if let body = rendered.body { request.body = .bytes(ByteBuffer(string: body)) }

        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, deadline: .now() + .seconds(Int64(timeoutSec)))
        } catch {
            if Task.isCancelled { return nil }
            return classifyTransport(error)
        }
        // Hold enough past the cap that a secret the server echoes across it is still redacted whole.
        let hold = maxBytes + (rendered.secrets.map(\.utf8.count).max() ?? 0)
        var body: [UInt8] = []
        var total = 0
        var bodyError: String?
        do {
            for try await chunk in response.body {
                total += chunk.readableBytes
                let room = hold - body.count
                if room > 0 { body.append(contentsOf: chunk.readableBytesView.prefix(room)) }
            }
        } catch {
            if Task.isCancelled { return nil }
            bodyError = "\(error)"
        }
        return .response(status: Int(response.status.code), headers: response.headers, body: body, total: total,
                         bodyError: bodyError)
    }

    /// A failure before (or while) the answer arrived: the deadline is the stage timeout; a
    /// read timeout and everything else (refused, reset, TLS) are transient.
    static func classifyTransport(_ error: any Error) -> Outcome {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded: return .timedOut
            case .readTimeout: return .transport(reason: "read_timeout", detail: "no data arrived within the read timeout")
            case .connectTimeout: return .transport(reason: "connection_error", detail: "connect timeout")
            case .remoteConnectionClosed: return .transport(reason: "connection_error", detail: "the server closed the connection")
            default: break
            }
        }
        return .transport(reason: "connection_error", detail: "\(error)")
    }
}
