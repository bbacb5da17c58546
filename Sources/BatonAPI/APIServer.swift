import BatonCore
import BatonNode
import BatonStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle

/// Baton's HTTP API over one store: producers enqueue jobs and inbound messages, operators
/// read jobs, dead letters, gates, nodes, lanes and schedules and act on them. Every route
/// but `/healthz`, `/readyz` and `/openapi.json` needs a bearer token (`api.tokens`) whose
/// scope allows it. Several servers may run against one PostgreSQL store: they keep no state.
public struct APIServer: Service {
    let application: Application<CallbackResponder<BasicRequestContext>>

    /// - Parameters:
    ///   - environment: where the tokens' secrets are read (`api.tokens[].token_env`).
    ///   - onServerRunning: called with the port once the server listens (port 0 picks one).
    ///   - registry: where this process's metrics are (`/metrics` exports it, with the
    ///     cluster's state from the store).
    public init(store: any JobStore, config: BatonConfig, environment: [String: String], logger: Logger,
                registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
                onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws(BatonError) {
        guard let host = config.api.host else {
            throw BatonError(.invalidInput, field: "api.listen", "the API is off: expected HOST:PORT to serve it")
        }
        let tokens = try TokenTable(config.api, environment: environment)
        let routes = APIRoutes(store: store, config: config, tokens: tokens, metrics: MetricsExport(registry: registry, store: store))
        let router = Router(context: BasicRequestContext.self)
        routes.register(on: router)
        Dashboard(store: store, tokens: tokens).register(on: router)
        // What the router refuses (no such path, or no such method on it) leaves as JSON too.
        let responder = router.buildResponder()
        let limit = config.api.maxBodyBytes
        application = Application(
            responder: CallbackResponder { request, context in
                do {
                    let response = try await responder.respond(to: request, context: context)
                    // The router's own 404 has no body; every answer of ours is JSON.
                    if response.status == .notFound && response.headers[.contentType] == nil {
                        return APIRoutes.failure(APIError.notFound(request.uri.path), limit: limit)
                    }
                    return response
                } catch {
                    return APIRoutes.failure(error is HTTPError ? APIError.notFound(request.uri.path) : error, limit: limit)
                }
            },
            configuration: ApplicationConfiguration(address: .hostname(host, port: config.api.port), serverName: "baton"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    public func run() async throws {
        try await application.run()
    }
}

/// The configured tokens with their secrets, compared in constant time.
struct TokenTable: Sendable {
    struct Entry: Sendable {
        let name: String
        let scope: APISettings.Scope
        let secret: [UInt8]
    }

    let entries: [Entry]

    init(_ settings: APISettings, environment: [String: String]) throws(BatonError) {
        var entries: [Entry] = []
        for (index, token) in settings.tokens.enumerated() {
            let field = "api.tokens[\(index)].token_env"
            guard let secret = environment[token.env], !secret.isEmpty else {
                throw BatonError(.invalidInput, field: field, "environment variable \(token.env) is not set: expected the token \(token.name)")
            }
            guard secret.utf8.count >= 16 else {
                throw BatonError(.invalidInput, field: field,
                                 "the token in \(token.env) has \(secret.utf8.count) characters: expected at least 16")
            }
            // It travels in an Authorization header and a cookie: printable ASCII, no separators.
            guard secret.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ";") && $0 != UInt8(ascii: ",") }) else {
                throw BatonError(.invalidInput, field: field,
                                 "the token in \(token.env) has a space, a control character, ; or ,: expected printable ASCII without them")
            }
            if let same = entries.first(where: { $0.secret == Array(secret.utf8) }) {
                throw BatonError(.invalidInput, field: field,
                                 "the token in \(token.env) is the same as token \(same.name)'s: expected one secret per token")
            }
            entries.append(Entry(name: token.name, scope: token.scope, secret: Array(secret.utf8)))
        }
        self.entries = entries
    }

    /// The token `presented` matches, comparing it with every entry in full (no early exit
    /// on the first differing byte, nor on the first match).
    func match(_ presented: Substring) -> Entry? {
        let bytes = Array(presented.utf8)
        var found: Entry?
        for entry in entries {
            var difference: UInt8 = entry.secret.count == bytes.count ? 0 : 1
            for index in 0..<entry.secret.count {
                difference |= entry.secret[index] ^ (index < bytes.count ? bytes[index] : 0)
            }
            if difference == 0 { found = entry }
        }
        return found
    }
}
