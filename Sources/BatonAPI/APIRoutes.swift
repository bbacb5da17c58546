import BatonCore
import BatonNode
import BatonStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The API's routes. Each names the scope it needs; errors of every kind leave as
/// `APIError` JSON.
struct APIRoutes: Sendable {
    let store: any JobStore
    let config: BatonConfig
    let tokens: TokenTable
    let metrics: MetricsExport

    typealias Handler = @Sendable (Request, BasicRequestContext) async throws -> Response

    /// Every route, as `METHOD path` with the scope it needs (nil: open). The OpenAPI
    /// document is checked against this list.
    static let table: [(method: HTTPRequest.Method, path: String, scope: APISettings.Scope?)] = [
        (.get, "/healthz", nil), (.get, "/readyz", nil), (.get, "/openapi.json", nil), (.get, "/metrics", .reader),
        (.post, "/v1/jobs", .producer), (.get, "/v1/jobs", .reader), (.get, "/v1/jobs/{id}", .reader),
        (.post, "/v1/jobs/{id}/cancel", .admin),
        (.get, "/v1/dead-letters", .reader), (.post, "/v1/dead-letters/{id}/redrive", .admin),
        (.get, "/v1/gates", .reader), (.post, "/v1/gates/{key}/release", .admin),
        (.get, "/v1/nodes", .reader), (.get, "/v1/lanes", .reader),
        (.get, "/v1/schedules", .reader), (.post, "/v1/schedules", .admin), (.delete, "/v1/schedules/{id}", .admin),
        (.post, "/v1/schedules/{id}/pause", .admin), (.post, "/v1/schedules/{id}/resume", .admin),
        (.post, "/v1/schedules/{id}/run", .admin),
        (.post, "/v1/inbound", .producer),
        (.get, "/v1/models", .reader), (.post, "/v1/models/{provider}/clear", .admin),
    ]

    func register(on router: Router<BasicRequestContext>) {
        for route in Self.table {
            let handler = self.handler(route.method, route.path)
            let scope = route.scope
            router.on(RouterPath(route.path), method: route.method) { request, context in
                do {
                    if let scope { try authorize(request, needs: scope) }
                    return try await handler(request, context)
                } catch {
                    return Self.failure(error, limit: config.api.maxBodyBytes)
                }
            }
        }
    }

    static func failure(_ error: any Error, limit: Int) -> Response {
        var apiError = APIError(error)
        if error is NIOTooManyBytesError { apiError = .tooLarge(limit) }
        return .json(apiError.json, status: apiError.status)
    }

    func authorize(_ request: Request, needs scope: APISettings.Scope) throws {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              let caller = tokens.match(header.dropFirst("Bearer ".count)) else { throw APIError.unauthorized }
        guard caller.scope >= scope else { throw APIError.forbidden(scope.rawValue) }
    }

    // MARK: Handlers

    func handler(_ method: HTTPRequest.Method, _ path: String) -> Handler {
        switch (method, path) {
        case (.get, "/healthz"):
            return { _, _ in .json(.object(["status": .string("ok")])) }
        case (.get, "/readyz"):
            return { _, _ in
                do {
                    // A small table: probes must not scan the jobs.
                    _ = try await store.nodes()
                    return .json(.object(["status": .string("ready")]))
                } catch {
                    return .json(APIError(error).json, status: .serviceUnavailable)
                }
            }
        case (.get, "/openapi.json"):
            return { _, _ in .json(OpenAPI.document) }
        case (.get, "/metrics"):
            return { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: ResponseBody(byteBuffer: ByteBuffer(string: try await metrics.scrape())))
            }
        case (.post, "/v1/jobs"):
            return { request, _ in
                // Everything is validated before anything is stored: a bad batch stores nothing.
                let specs = try EnvelopeReader(defaults: config.defaults).read(try await bodyData(request))
                let results = try await store.enqueue(specs).map { result -> JSONValue in
                    .object(["job_id": .string(result.jobID), "deduplicated": .bool(result.deduplicated), "gated": .bool(result.gated)])
                }
                return .json(.object(["jobs": .array(results)]), status: .created)
            }
        case (.get, "/v1/jobs"):
            return { request, _ in
                let query = request.uri.queryParameters
                var states: [JobState] = []
                for value in query.getAll("state") { states.append(try JobState.parse(String(value))) }
                let lane = query.get("lane").map { String($0) }
                let jobs = try await store.jobs(matching: JobFilter(states: states, lane: lane, limit: try limit(request)))
                return .json(.object(["jobs": .array(jobs.map(\.json))]))
            }
        case (.get, "/v1/jobs/{id}"):
            return { _, context in
                let id = try context.parameters.require("id")
                guard let detail = try await store.detail(id: id) else {
                    throw BatonError(.notFound, field: "id", "no job with id \"\(id)\"")
                }
                return .json(detail.json)
            }
        case (.post, "/v1/jobs/{id}/cancel"):
            return { request, context in
                let fields = try await optionalObject(request, keys: ["reason"])
                let reason = try fields?.string("reason", maxLength: 1024) ?? "cancelled through the API"
                return .json(try await store.cancel(jobID: try context.parameters.require("id"), reason: reason).json)
            }
        case (.get, "/v1/dead-letters"):
            return { request, _ in
                let jobs = try await store.jobs(matching: JobFilter(states: JobState.deadLetterStates, limit: try limit(request)))
                return .json(.object(["jobs": .array(jobs.map(\.json))]))
            }
        case (.post, "/v1/dead-letters/{id}/redrive"):
            return { request, context in
                let fields = try await optionalObject(request, keys: ["from_start"])
                let fromStart = try fields?.bool("from_start") ?? false
                return .json(try await store.redrive(jobID: try context.parameters.require("id"), fromStart: fromStart).json)
            }
        case (.get, "/v1/gates"):
            return { _, _ in .json(.object(["gates": .array(try await store.gates().map(\.json))])) }
        case (.post, "/v1/gates/{key}/release"):
            return { _, context in
                let release = try await store.releaseGate(key: try context.parameters.require("key"))
                return .json(.object(["gate": release.gate.json, "queued": .array(release.queued.map(JSONValue.string))]))
            }
        case (.get, "/v1/nodes"):
            return { _, _ in .json(.object(["nodes": NodeReport(nodes: try await store.nodes(), now: Date()).json])) }
        case (.get, "/v1/models"):
            return { _, _ in .json(config.models.report(cooldowns: try await store.modelCooldowns(), now: Date())) }
        case (.post, "/v1/models/{provider}/clear"):
            return { request, context in
                let provider = try context.parameters.require("provider")
                guard !provider.isEmpty, provider.count <= 64, provider.allSatisfy(Identifier.isAllowed) else {
                    throw BatonError(.invalidInput, field: "provider",
                                     "expected a provider name of letters, digits and - _ . :, got \(JSONValue.string(provider).preview)")
                }
                let model = request.uri.queryParameters.get("model")
                if let model, model.isEmpty || model.utf8.count > 200 {
                    throw BatonError(.invalidInput, field: "model", "expected a model id of 1 to 200 bytes, or no model parameter")
                }
                let cleared = try await store.clearModelCooldowns(provider: provider, model: model)
                return .json(.object(["provider": .string(provider), "model": model.map(JSONValue.string) ?? .null,
                                      "cleared": .int(Int64(cleared))]))
            }
        case (.get, "/v1/lanes"):
            return { _, _ in .json(.object(["lanes": .array(try await store.lanes().map(\.json))])) }
        case (.get, "/v1/schedules"):
            return { _, _ in
                var listed: [JSONValue] = []
                for record in try await store.schedules() {
                    listed.append(record.json(last: try await store.scheduleRuns(id: record.id, limit: 1).first, now: Date()))
                }
                return .json(.object(["schedules": .array(listed)]))
            }
        case (.post, "/v1/schedules"):
            return { request, _ in
                let spec = try ScheduleSpec.read(try await body(request), path: "", reader: EnvelopeReader(defaults: config.defaults))
                try spec.checkNew(now: Date(), field: "at")
                let record = try await store.putSchedule(spec, source: .api)
                return .json(record.json(last: nil, now: Date()), status: .created)
            }
        case (.delete, "/v1/schedules/{id}"):
            return { _, context in
                try await store.removeSchedule(id: try context.parameters.require("id"))
                return Response(status: .noContent)
            }
        case (.post, "/v1/schedules/{id}/pause"), (.post, "/v1/schedules/{id}/resume"):
            let pause = path.hasSuffix("pause")
            return { request, context in
                let fields = try await optionalObject(request, keys: pause ? ["reason"] : [])
                let reason = try fields?.string("reason", maxLength: 1024) ?? "paused through the API"
                let id = try context.parameters.require("id")
                guard let record = try await store.setSchedulePaused(id: id, paused: pause, reason: pause ? reason : nil,
                                                                     ifVersion: nil) else {
                    throw ScheduleRows.notFound(id)
                }
                return .json(record.json(last: nil, now: Date()))
            }
        case (.post, "/v1/schedules/{id}/run"):
            return { _, context in
                let id = try context.parameters.require("id")
                let result = try await store.runScheduleNow(id: id, reader: EnvelopeReader(defaults: config.defaults))
                return .json(.object(["job_id": .string(result)]), status: .created)
            }
        case (.post, "/v1/inbound"):
            return { request, _ in
                let r = try ObjectReader(try await body(request), path: "",
                                         allowedKeys: ["channel", "account", "peer", "session", "message_id", "text", "agent", "received_at"])
                func required(_ key: String) throws(BatonError) -> String {
                    guard let value = try r.string(key, maxLength: 256) else {
                        throw BatonError(.invalidInput, field: key, "is required: expected a non-empty string")
                    }
                    return value
                }
                let channel = try required("channel")
                let message = InboundMessage(channel: channel, account: try required("account"), peer: try required("peer"),
                                             session: try r.string("session", maxLength: 512), messageID: try required("message_id"),
                                             text: try r.string("text", maxLength: 64 * 1024, nonEmpty: false) ?? "",
                                             receivedAt: Date())
                let policy = try config.inboundPolicy(channel: channel, agent: try r.string("agent", maxLength: 64), agentField: "agent")
                let result = try await store.receive(message, policy: policy)
                let what: String
                switch result {
                case .created: what = "created"
                case .appended: what = "appended"
                case .duplicate: what = "duplicate"
                }
                return .json(.object(["job_id": .string(result.jobID), "result": .string(what)]),
                             status: what == "created" ? .created : .ok)
            }
        default:
            return { request, _ in throw APIError.notFound(request.uri.path) }
        }
    }

    // MARK: Request helpers

    /// The request body, at most `api.max_body_bytes` of it.
    func bodyData(_ request: Request) async throws -> Data {
        Data(try await request.body.collect(upTo: config.api.maxBodyBytes).readableBytesView)
    }

    /// The request body as JSON.
    func body(_ request: Request) async throws -> JSONValue {
        try JSONValue.parse(try await bodyData(request), what: "(body)")
    }

    /// An optional JSON object body with only `keys` (an empty body is none).
    func optionalObject(_ request: Request, keys: [String]) async throws -> ObjectReader? {
        let data = try await bodyData(request)
        guard !data.isEmpty else { return nil }
        return try ObjectReader(try JSONValue.parse(data, what: "(body)"), path: "", allowedKeys: keys)
    }

    func limit(_ request: Request) throws(BatonError) -> Int {
        guard let text = request.uri.queryParameters.get("limit") else { return 50 }
        guard let value = Int(text), (1...10_000).contains(value) else {
            throw BatonError(.invalidInput, field: "limit", "expected an integer from 1 to 10000, got \"\(text)\"")
        }
        return value
    }
}
