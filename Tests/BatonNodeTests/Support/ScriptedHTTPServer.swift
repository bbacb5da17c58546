import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A real Hummingbird server on 127.0.0.1 (an ephemeral port) that answers each call from a
/// script and records what it received. The last scripted reply repeats.
final class ScriptedHTTPServer: Sendable {
    struct Reply: Sendable {
        var status: Int
        var headers: [String: String] = [:]
        var body: String = ""
        /// Answer only once the server stops (for timeouts and aborts).
        var hang = false
        /// Answer with the request's headers, one `name: value` line each, as the body.
        var echoHeaders = false
    }

    struct Call: Sendable {
        var method: String
        var path: String
        /// Lower-cased names.
        var headers: [String: String]
        var body: String
        var at: ContinuousClock.Instant
    }

    private struct State {
        var replies: [Reply]
        var calls: [Call] = []
    }

    let port: Int
    private let script: Script
    private let task: Task<Void, any Error>

    var url: String { "http://127.0.0.1:\(port)" }
    var calls: [Call] { script.state.withLock { $0.calls } }
    var callCount: Int { script.state.withLock { $0.calls.count } }

    private init(port: Int, script: Script, task: Task<Void, any Error>) {
        self.port = port
        self.script = script
        self.task = task
    }

    static func start(_ replies: [Reply]) async throws -> ScriptedHTTPServer {
        precondition(!replies.isEmpty, "a script needs at least one reply")
        let script = Script(replies)
        let (port, task) = try await startLoopbackServer { request in try await script.answer(request) }
        return ScriptedHTTPServer(port: port, script: script, task: task)
    }

    /// Runs a Hummingbird server on 127.0.0.1 (an ephemeral port) answering with `respond`;
    /// returns its port once it listens, and the task to cancel to stop it.
    static func startLoopbackServer(_ respond: @escaping @Sendable (Request) async throws -> Response) async throws
        -> (port: Int, task: Task<Void, any Error>) {
        let (ports, announce) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            responder: CallbackResponder<BasicRequestContext> { request, _ in try await respond(request) },
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                announce.yield(channel.localAddress?.port ?? 0)
                announce.finish()
            },
            logger: Logger(label: "test-http-server", factory: { _ in SwiftLogNoOpLogHandler() }))
        let task = Task {
            defer { announce.finish() }
            try await app.run()
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            task.cancel()
            _ = await task.result
            throw TestServerError.didNotStart
        }
        return (port, task)
    }

    /// Stops the server (cancelling any call still hanging) and waits until it has.
    func stop() async {
        task.cancel()
        _ = await task.result
    }

    enum TestServerError: Error { case didNotStart }

    /// The responder's side: shares the state with the server object.
    private final class Script: Sendable {
        let state: Mutex<State>

        init(_ replies: [Reply]) { state = Mutex(State(replies: replies)) }

        func answer(_ request: Request) async throws -> Response {
            let body = try await request.body.collect(upTo: 1 << 20)
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            let call = Call(method: request.method.rawValue, path: request.uri.path, headers: headers,
                            body: String(buffer: body), at: .now)
            let reply = state.withLock { state -> Reply in
                state.calls.append(call)
                return state.replies.count > 1 ? state.replies.removeFirst() : state.replies[0]
            }
            if reply.hang { try await Task.sleep(for: .seconds(600)) }
            var fields = HTTPFields()
            for (name, value) in reply.headers {
                if let name = HTTPField.Name(name) { fields[name] = value }
            }
            let text = reply.echoHeaders
                ? headers.keys.sorted().map { "\($0): \(headers[$0] ?? "")" }.joined(separator: "\n")
                : reply.body
            return Response(status: HTTPResponse.Status(code: reply.status), headers: fields,
                            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
    }
}
