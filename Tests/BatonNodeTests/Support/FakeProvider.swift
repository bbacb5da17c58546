import BatonCore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A model provider on 127.0.0.1 that speaks both wire formats the `llm` stage uses: the
/// OpenAI Chat Completions API at `/v1/chat/completions` and the Anthropic Messages API at
/// `/v1/messages`. Each model answers from its own script (then, by default, with a reply
/// naming it); every call is recorded.
final class FakeProvider: Sendable {
    indirect enum Reply: Sendable {
        /// A successful answer in the caller's format.
        case answer(String)
        /// An error answer in the caller's format: its status, error type and headers.
        case error(Int, type: String, headers: [String: String] = [:])
        /// Waits, then replies (a slow model).
        case slow(Double, Reply)
        /// Sends the status line and part of the body, then drops the connection.
        case reset
    }

    struct Call: Sendable {
        /// `openai` or `anthropic`.
        var format: String
        var model: String
        /// The key the call carried (`Authorization: Bearer` or `x-api-key`).
        var apiKey: String?
        var anthropicVersion: String?
        var body: JSONValue
        var at: Date
    }

    private struct State {
        var scripts: [String: [Reply]] = [:]
        var calls: [Call] = []
        /// Calls whose reply is still being worked on (slow replies).
        var inFlight = 0
    }

    let port: Int
    private let state: Mutex<State>
    /// The key each format accepts; a call with another gets 401 with the format's error.
    private let keys: [String: String]
    private let task: Task<Void, any Error>

    var anthropicURL: String { "http://127.0.0.1:\(port)" }
    var openAIURL: String { "http://127.0.0.1:\(port)/v1" }

    var calls: [Call] { state.withLock { $0.calls } }
    func calls(to model: String) -> [Call] { calls.filter { $0.model == model } }
    var inFlight: Int { state.withLock { $0.inFlight } }

    /// Queues replies for `model` (after them, it answers normally again).
    func script(_ model: String, _ replies: Reply...) {
        state.withLock { $0.scripts[model, default: []].append(contentsOf: replies) }
    }

    private init(port: Int, keys: [String: String], task: Task<Void, any Error>) {
        self.port = port
        self.state = Mutex(State())
        self.keys = keys
        self.task = task
    }

    /// - Parameter keys: the key each format accepts (`openai`, `anthropic`); none: any key.
    static func start(keys: [String: String] = [:]) async throws -> FakeProvider {
        let box = Box()
        let (port, task) = try await ScriptedHTTPServer.startLoopbackServer { request in try await box.provider!.answer(request) }
        let provider = FakeProvider(port: port, keys: keys, task: task)
        box.provider = provider
        return provider
    }

    func stop() async {
        task.cancel()
        _ = await task.result
    }

    /// Lets the responder reach the provider object created after the server started.
    private final class Box: @unchecked Sendable {
        // Written once, before the first request can arrive (the port is not known until then).
        var provider: FakeProvider?
    }

    // MARK: Answering

    private func answer(_ request: Request) async throws -> Response {
        let format: String
        switch request.uri.path {
        case "/v1/chat/completions": format = "openai"
        case "/v1/messages": format = "anthropic"
        default: return Response(status: .notFound)
        }
        let bytes = try await request.body.collect(upTo: 8 << 20)
        let body = (try? JSONValue.parse(Data(bytes.readableBytesView), what: "body")) ?? .null
        guard case .object(let fields) = body, case .string(let model)? = fields["model"] else {
            return errorResponse(format, 400, type: "invalid_request_error", headers: [:])
        }
        let key = format == "openai"
            ? request.headers[.authorization].map { String($0.dropFirst("Bearer ".count)) }
            : request.headers[HTTPField.Name("x-api-key")!]
        let call = Call(format: format, model: model, apiKey: key,
                        anthropicVersion: request.headers[HTTPField.Name("anthropic-version")!], body: body, at: Date())
        var reply = state.withLock { state -> Reply in
            state.calls.append(call)
            guard var queue = state.scripts[model], !queue.isEmpty else { return .answer("answer from \(model)") }
            let next = queue.removeFirst()
            state.scripts[model] = queue
            return next
        }
        if let expected = keys[format], key != expected {
            return errorResponse(format, 401, type: format == "openai" ? "invalid_api_key" : "authentication_error", headers: [:])
        }
        while case .slow(let seconds, let then) = reply {
            state.withLock { $0.inFlight += 1 }
            defer { state.withLock { $0.inFlight -= 1 } }
            try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
            reply = then
        }
        switch reply {
        case .answer(let text):
            return json(200, format == "openai" ? openAIAnswer(model, text) : anthropicAnswer(model, text), headers: [:])
        case .error(let status, let type, let headers):
            return errorResponse(format, status, type: type, headers: headers)
        case .reset:
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: ResponseBody(contentLength: 4096) { writer in
                                try await writer.write(ByteBuffer(string: "{\"id\":"))
                                throw CancellationError()
                            })
        case .slow:
            return Response(status: .internalServerError)
        }
    }

    private func openAIAnswer(_ model: String, _ text: String) -> JSONValue {
        .object([
            "id": .string("chatcmpl-\(UUID().uuidString)"), "object": .string("chat.completion"), "model": .string(model + "-2026"),
            "choices": .array([.object(["index": .int(0), "finish_reason": .string("stop"),
                                        "message": .object(["role": .string("assistant"), "content": .string(text)])])]),
            "usage": .object(["prompt_tokens": .int(11), "completion_tokens": .int(7), "total_tokens": .int(18)]),
        ])
    }

    private func anthropicAnswer(_ model: String, _ text: String) -> JSONValue {
        .object([
            "id": .string("msg_\(UUID().uuidString)"), "type": .string("message"), "role": .string("assistant"),
            "model": .string(model), "stop_reason": .string("end_turn"),
            "content": .array([.object(["type": .string("text"), "text": .string(text)])]),
            "usage": .object(["input_tokens": .int(13), "output_tokens": .int(5)]),
        ])
    }

    private func errorResponse(_ format: String, _ status: Int, type: String, headers: [String: String]) -> Response {
        let body: JSONValue = format == "openai"
            ? .object(["error": .object(["message": .string("scripted \(status)"), "type": .string(type), "code": .null])])
            : .object(["type": .string("error"), "error": .object(["type": .string(type), "message": .string("scripted \(status)")])])
        return json(status, body, headers: headers)
    }

    private func json(_ status: Int, _ body: JSONValue, headers: [String: String]) -> Response {
        var fields = HTTPFields()
        fields[.contentType] = "application/json"
        for (name, value) in headers {
            if let name = HTTPField.Name(name) { fields[name] = value }
        }
        return Response(status: HTTPResponse.Status(code: status), headers: fields,
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body.encoded())))
    }
}
