import BatonCore
import BatonStore

/// The HTTP API (`api:`), served by `baton up` and `baton server`.
public struct APISettings: Sendable, Hashable {
    /// What a token may do: `reader` reads; `producer` also enqueues (jobs, inbound
    /// messages); `admin` also changes the cluster (cancel, redrive, gates, schedules).
    public enum Scope: String, Sendable, Hashable, CaseIterable, Comparable {
        case reader, producer, admin

        var rank: Int { Self.allCases.firstIndex(of: self)! }
        public static func < (a: Scope, b: Scope) -> Bool { a.rank < b.rank }
    }

    /// A bearer token: its secret comes from an environment variable when the server starts,
    /// so it is never written in the configuration (nor in its hash).
    public struct Token: Sendable, Hashable {
        public var name: String
        public var scope: Scope
        public var env: String

        public init(name: String, scope: Scope, env: String) {
            self.name = name
            self.scope = scope
            self.env = env
        }
    }

    /// `HOST:PORT` to listen on (default 127.0.0.1:7420), or nil (`off`) for no API.
    public var host: String?
    public var port: Int
    /// The largest request body accepted (default 1 MiB); a larger one is answered 413.
    public var maxBodyBytes: Int
    public var tokens: [Token]

    public init(host: String? = "127.0.0.1", port: Int = 7420, maxBodyBytes: Int = 1 << 20, tokens: [Token] = []) {
        self.host = host
        self.port = port
        self.maxBodyBytes = maxBodyBytes
        self.tokens = tokens
    }

    public static let standard = APISettings()

    static let keys = ["listen", "max_body_bytes", "tokens"]

    static func read(_ value: JSONValue, path: String) throws(BatonError) -> APISettings {
        let r = try ObjectReader(value, path: path, allowedKeys: keys)
        var settings = APISettings.standard
        if let listen = try r.string("listen", maxLength: 256) {
            if listen == "off" {
                settings.host = nil
            } else {
                guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                      (0...65_535).contains(port), colon != listen.startIndex else {
                    throw r.invalid("listen", .string(listen), "expected HOST:PORT (such as 127.0.0.1:7420 or 0.0.0.0:7420) or off")
                }
                settings.host = String(listen[..<colon])
                settings.port = port
            }
        }
        settings.maxBodyBytes = try r.int("max_body_bytes", in: 1024...(64 << 20)) ?? settings.maxBodyBytes
        for (index, item) in (try r.array("tokens", maxCount: 100) ?? []).enumerated() {
            let t = try ObjectReader(item, path: "\(r.field("tokens"))[\(index)]", allowedKeys: ["name", "scope", "token_env"])
            guard let name = try t.string("name", maxLength: 64, allowed: Identifier.isAllowed, what: "a token name of letters, digits and - _ . :") else {
                throw BatonError(.invalidInput, field: t.field("name"), "is required: expected the token's name (logged instead of the token)")
            }
            guard let scopeText = try t.string("scope", maxLength: 16) else {
                throw BatonError(.invalidInput, field: t.field("scope"), "is required: expected one of reader, producer, admin")
            }
            guard let scope = Scope(rawValue: scopeText) else {
                throw t.invalid("scope", .string(scopeText), "expected one of reader, producer, admin")
            }
            guard let env = try t.string("token_env", maxLength: 128) else {
                throw BatonError(.invalidInput, field: t.field("token_env"),
                                 "is required: expected the name of the environment variable holding the token")
            }
            if settings.tokens.contains(where: { $0.name == name }) {
                throw BatonError(.invalidInput, field: t.field("name"), "expected a name unique among the tokens, got \"\(name)\" twice")
            }
            settings.tokens.append(Token(name: name, scope: scope, env: env))
        }
        return settings
    }

    var json: JSONValue {
        .object([
            "listen": .string(host.map { "\($0):\(port)" } ?? "off"),
            "max_body_bytes": .int(Int64(maxBodyBytes)),
            "tokens": .array(tokens.map { .object(["name": .string($0.name), "scope": .string($0.scope.rawValue), "token_env": .string($0.env)]) }),
        ])
    }
}

extension BatonConfig {
    /// How an inbound message of `channel` becomes a job (`messages.inbound`): in `agent`'s
    /// lane (`agents.list`) when one is named, else `messages.inbound.lane`. `agentField`
    /// names the input that gave the agent, for the error when it is unknown.
    public func inboundPolicy(channel: String, agent: String?, agentField: String) throws(BatonError) -> InboundPolicy {
        var lane = inbound.lane
        if let agent {
            guard let entry = agents.first(where: { $0.id == agent }) else {
                throw BatonError(.invalidInput, field: agentField,
                                 "no agent \"\(agent)\" in agents.list (known: \(agents.map(\.id).joined(separator: ", ")))")
            }
            lane = entry.lane
        }
        let template = JobSpec(id: "inbound", lane: lane, stages: [StageSpec(name: "agent", run: inbound.run)],
                               execTimeoutSec: defaults.execTimeoutSec, leaseTTLSec: defaults.leaseTTLSec,
                               ttlSec: defaults.ttlSec, retry: defaults.retry)
        return InboundPolicy(dedupeTTLSec: inbound.dedupeTTLSec, debounceMs: inbound.debounceMs(channel: channel), template: template)
    }
}
