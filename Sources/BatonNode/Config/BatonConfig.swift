#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import BatonCore
import Logging

/// Everything `baton.yaml` can set, with every default filled in. Read it with `ConfigLoader`;
/// every section of the file is optional and every absent key keeps the default documented here.
public struct BatonConfig: Sendable, Hashable {
    /// Where jobs live: `sqlite:PATH`, a bare path (`./baton.db`, `../x.db`, `/abs/x.db`) or a
    /// `postgres://` / `postgresql://` URL. Default `sqlite:./baton.db`. Relative paths are
    /// relative to the working directory. Overridden by `BATON_DB`.
    public var store: String
    /// Where `store` was set, so errors about it name what the user wrote: `store` (the file,
    /// or the default), `BATON_DB`, or a command-line option such as `--db`.
    public var storeSource: String
    public var node: NodeSettings
    /// Defaults for envelope fields a job leaves out (`defaults:`).
    public var defaults: JobDefaults
    public var logs: LogSettings
    public var sqlite: SQLiteSettings
    public var postgres: PostgresSettings
    /// Human gates (`gates:`): `dead_letters` (default 2) dead letters of one idempotency key
    /// within `window_sec` (default 86400) hold new jobs with that key until released.
    public var gates: GatePolicy
    /// Where alerts go besides the log (`alerts:`).
    public var alerts: AlertSettings
    /// Lane caps and queue behaviour (`lanes:`, `agents:`, `sessions:`, `queue:`).
    public var lanes: LaneSettings
    /// `agents.list`: each agent's lane.
    public var agents: [AgentSettings]
    /// `messages.inbound`: dedupe and debounce of chat messages.
    public var inbound: InboundSettings
    /// `schedules:`: cron schedules every node keeps in the store (a node that starts or
    /// reloads without one removes it; schedules added with `baton cron add` are not touched).
    public var schedules: [ScheduleSpec]
    /// The HTTP API (`api:`).
    public var api: APISettings
    /// Model providers and `llm` stage settings (`providers:`, `models:`, and the `model`
    /// chains of `agents.defaults` and `agents.list`).
    public var models: ModelSettings

    public init() {
        models = .standard
        api = .standard
        schedules = []
        lanes = .standard
        agents = []
        inbound = .standard
        gates = .standard
        alerts = AlertSettings()
        store = "sqlite:./baton.db"
        storeSource = "store"
        node = NodeSettings()
        defaults = .standard
        logs = LogSettings()
        sqlite = SQLiteSettings()
        postgres = PostgresSettings()
    }

    /// The built-in configuration: what an absent or empty `baton.yaml` means.
    public static let standard = BatonConfig()

    /// The database file for SQLite stores; `nil` for PostgreSQL.
    public var sqlitePath: String? {
        if case .sqlite(let path) = StoreLocation(store) { return path }
        return nil
    }

    /// The connection URL for PostgreSQL stores; `nil` for SQLite.
    public var postgresURL: String? {
        if case .postgres(let url) = StoreLocation(store) { return url }
        return nil
    }

    /// `store` with any password replaced by `***`, for messages and logs.
    public var redactedStore: String { StoreLocation.redacted(store) }

    /// The whole configuration in the `baton.yaml` layout, every default written out.
    /// Note: `store` is included as is, credentials and all.
    public var json: JSONValue {
        var nodeFields: [String: JSONValue] = [
            "id": .string(node.id),
            "tags": .array(node.tags.map { .string($0) }),
            "capacity": .int(Int64(node.capacity)),
            "poll_interval_ms": .int(Int64(node.pollIntervalMs)),
            "drain_timeout_sec": .double(node.drainTimeoutSec),
            "rescue_interval_sec": .double(node.rescueIntervalSec),
            "heartbeat_interval_sec": .double(node.heartbeatIntervalSec),
            "dead_after_missed": .int(Int64(node.deadAfterMissed)),
        ]
        if let region = node.region { nodeFields["region"] = .string(region) }
        var defaultFields: [String: JSONValue] = [
            "lane": .string(defaults.lane),
            "dedupe_window_sec": .int(Int64(defaults.dedupeWindowSec)),
            "exec_timeout_sec": .int(Int64(defaults.execTimeoutSec)),
            "lease_ttl_sec": .int(Int64(defaults.leaseTTLSec)),
            "ttl_sec": .int(Int64(defaults.ttlSec)),
            "retry": defaults.retry.json,
        ]
        if let queueTimeout = defaults.queueTimeoutSec { defaultFields["queue_timeout_sec"] = .int(Int64(queueTimeout)) }
        return .object([
            "store": .string(store),
            "node": .object(nodeFields),
            "defaults": .object(defaultFields),
            "logs": .object([
                "dir": .string(logs.dir),
                "capture_bytes": .int(Int64(logs.captureBytes)),
                "level": .string(logs.level),
                "format": .string(logs.format),
            ]),
            "sqlite": .object([
                "synchronous": .string(sqlite.synchronous),
                "busy_timeout_sec": .double(sqlite.busyTimeoutSec),
            ]),
            "gates": .object(["dead_letters": .int(Int64(gates.deadLetters)), "window_sec": .int(Int64(gates.windowSec))]),
            "alerts": .object(alerts.webhookURL.map { ["webhook_url": .string($0)] } ?? [:]),
            "lanes": .object(lanes.caps.mapValues { .int(Int64($0)) }),
            "agents": .object(["list": .array(agents.map { agent in
                var fields: [String: JSONValue] = ["id": .string(agent.id), "lane": .string(agent.lane)]
                if let cap = agent.laneConcurrency { fields["laneConcurrency"] = .int(Int64(cap)) }
                if let chain = models.agentChains[agent.id] { fields["model"] = chain.json }
                return .object(fields)
            }), "defaults": .object(models.defaultChain.map { ["model": $0.json] } ?? [:])]),
            "providers": .array(models.providers.map(\.json)),
            "models": models.json,
            "sessions": .object(["retry_holds_place": .bool(lanes.retryHoldsPlace)]),
            "queue": .object(["wait_warn_ms": .int(Int64(lanes.waitWarnMs)), "ageing_every_sec": .int(Int64(lanes.ageingEverySec)),
                              "ageing_max_boost": .int(Int64(lanes.ageingMaxBoost))]),
            "messages": .object(["inbound": .object([
                "debounceMs": .int(Int64(inbound.debounceMs)), "dedupeTtlSec": .int(Int64(inbound.dedupeTTLSec)),
                "perChannel": .object(inbound.perChannelDebounceMs.mapValues { .object(["debounceMs": .int(Int64($0))]) }),
            ])]),
            "schedules": .array(schedules.map(\.json)),
            "api": api.json,
            "postgres": .object([
                "schema": .string(postgres.schema),
                "max_connections": .int(Int64(postgres.maxConnections)),
                "connect_timeout_sec": .double(postgres.connectTimeoutSec),
                "operation_timeout_sec": .double(postgres.operationTimeoutSec),
            ]),
        ])
    }

    /// A stable digest (FNV-1a 64-bit, 16 hex digits) of the settings every node of a
    /// deployment should share, so nodes can detect configuration drift between them.
    ///
    /// `node.id`, `node.region` and `node.tags` are left out because they differ per node by
    /// design, and the store's password is left out so the digest never depends on a secret.
    /// The rendering is Baton's own (sorted keys, Swift's shortest number formatting), not
    /// JSONEncoder's, so the same configuration gives the same digest on macOS and Linux.
    public var configHash: String {
        var rendering = json
        if case .object(var fields) = rendering {
            fields["store"] = .string(StoreLocation.redacted(store))
            if case .object(var nodeFields)? = fields["node"] {
                for key in ["id", "region", "tags"] { nodeFields[key] = nil }
                fields["node"] = .object(nodeFields)
            }
            rendering = .object(fields)
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "baton-config-v1 \(Self.canonical(rendering))".utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static func canonical(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.description
        case .string(let s): return quoted(s)
        case .array(let items): return "[" + items.map(canonical).joined(separator: ",") + "]"
        case .object(let fields):
            return "{" + fields.keys.sorted().map { "\(quoted($0)):\(canonical(fields[$0] ?? .null))" }
                .joined(separator: ",") + "}"
        }
    }

    private static func quoted(_ s: String) -> String {
        "\"" + s.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
    }
}

/// How this node takes part in the fleet (`node:`).
public struct NodeSettings: Sendable, Hashable {
    /// This node's name in leases, events and logs: letters, digits and `- _ . :`, at most
    /// 64 bytes. Default: the host name up to its first `.`. Overridden by `BATON_NODE_ID`.
    public var id: String
    /// The region jobs can ask for with `region_affinity`. Default none. Overridden by `BATON_REGION`.
    public var region: String?
    /// Labels describing this node (`mac`, `xcode`, ...). Default none.
    public var tags: [String]
    /// Jobs this node runs at once, 1...1024. Default 4.
    public var capacity: Int
    /// How long an idle node waits before asking the store again, 10...60000 ms. Default 250.
    public var pollIntervalMs: Int
    /// On shutdown, how long running jobs may go on before their leases are released,
    /// 0...86400 s. Default 30.
    public var drainTimeoutSec: Double
    /// How often the node looks for expired leases and overdue jobs, 0.1...3600 s. Default 2.
    public var rescueIntervalSec: Double
    /// How often the node tells the registry it is alive, 0.1...3600 s. Default 10.
    public var heartbeatIntervalSec: Double
    /// Heartbeats a node may miss before the cluster declares it dead and runs its jobs
    /// elsewhere at once, 1...100. Default 3 (30 s of silence with the default interval).
    public var deadAfterMissed: Int

    public init() {
        id = Self.hostNodeID
        region = nil
        tags = []
        capacity = 4
        pollIntervalMs = 250
        drainTimeoutSec = 30
        rescueIntervalSec = 2
        heartbeatIntervalSec = 10
        deadAfterMissed = 3
    }

    /// The host name, shortened at its first `.` and made a valid node id.
    ///
    /// `gethostname` rather than `ProcessInfo.hostName`: on macOS the latter may wait on a
    /// DNS lookup for seconds, and this runs for every default configuration.
    static let hostNodeID: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "node" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return sanitizedNodeID(String(decoding: bytes, as: UTF8.self))
    }()

    static func sanitizedNodeID(_ hostName: String) -> String {
        let short = hostName.prefix { $0 != "." }
        // Every character left is ASCII, so 64 characters are 64 bytes.
        let id = String(short.map { Identifier.isAllowed($0) ? $0 : "-" }.prefix(64))
        return id.isEmpty ? "node" : id
    }
}

/// Where stage output goes (`logs:`).
public struct LogSettings: Sendable, Hashable {
    public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Directory for the full output of every stage. Default `./baton-logs`.
    public var dir: String
    /// Bytes of stdout/stderr kept with each attempt in the store, 0...16 MiB. Default 16384.
    public var captureBytes: Int
    /// One of `levels`. Default `info`.
    public var level: String
    public static let formats = ["text", "json"]
    /// `text` (one line a message, for people) or `json` (one JSON object a line, with
    /// node.id, job.id, job.stage and lane as fields, for log shippers). Default `text`.
    public var format: String

    public init() {
        dir = "./baton-logs"
        captureBytes = 16_384
        level = "info"
        format = "text"
    }

    /// `level` as a swift-log level (`.info` should it hold anything else).
    public var loggerLevel: Logger.Level { Logger.Level(rawValue: level) ?? .info }
}

/// Where alerts go besides an error-level log line (`alerts:`).
public struct AlertSettings: Sendable, Hashable {
    /// Each alert (a human gate starting to hold jobs) is POSTed here as JSON. Optional.
    public var webhookURL: String?

    public init(webhookURL: String? = nil) { self.webhookURL = webhookURL }
}

/// Settings of the embedded SQLite engine (`sqlite:`).
public struct SQLiteSettings: Sendable, Hashable {
    public static let synchronousModes = ["normal", "full"]

    /// `normal` (default: durable across process crashes, in WAL mode) or `full` (also across
    /// power loss, at the cost of an fsync per commit).
    public var synchronous: String
    /// How long a writer waits for the database lock, 0...3600 s. Default 30.
    public var busyTimeoutSec: Double

    public init() {
        synchronous = "normal"
        busyTimeoutSec = 30
    }
}

/// Settings of the PostgreSQL engine (`postgres:`), used when `store` is a postgres:// URL.
public struct PostgresSettings: Sendable, Hashable {
    /// The schema holding Baton's tables: lower-case letters, digits and `_`, at most 48.
    /// Several clusters can share one database under different schemas. Default `baton`.
    public var schema: String
    /// Connections in each process's pool, 1...256. Default 8.
    public var maxConnections: Int
    /// How long opening a connection may take, 0.1...600 s. Default 10.
    public var connectTimeoutSec: Double
    /// How long one store operation may take before it is abandoned as failed, 1...3600 s.
    /// Default 30.
    public var operationTimeoutSec: Double

    public init() {
        schema = "baton"
        maxConnections = 8
        connectTimeoutSec = 10
        operationTimeoutSec = 30
    }

    static func isSchemaName(_ s: String) -> Bool {
        guard let first = s.first, first.isASCII, first.isLetter || first == "_", s.utf8.count <= 48 else { return false }
        return s.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "_" }
    }
}

/// The accepted forms of `store`.
enum StoreLocation: Equatable {
    case sqlite(path: String)
    case postgres(url: String)

    static let acceptedForms = "sqlite:PATH, a path starting with ./, ../ or /, or a postgres:// or postgresql:// URL"

    init?(_ store: String) {
        if store.hasPrefix("sqlite:") {
            let path = String(store.dropFirst("sqlite:".count))
            guard !path.isEmpty else { return nil }
            self = .sqlite(path: path)
        } else if store.hasPrefix("/") || store.hasPrefix("./") || store.hasPrefix("../") {
            self = .sqlite(path: store)
        } else if let scheme = ["postgres://", "postgresql://"].first(where: store.hasPrefix),
                  store.count > scheme.count {
            self = .postgres(url: store)
        } else {
            return nil
        }
    }

    /// `store` with the password of a URL replaced by `***`, for messages and digests.
    static func redacted(_ store: String) -> String {
        guard let scheme = store.firstRange(of: "://"),
              let at = store[scheme.upperBound...].lastIndex(of: "@") else { return store }
        guard let colon = store[scheme.upperBound..<at].firstIndex(of: ":") else { return store }
        var redacted = store
        redacted.replaceSubrange(colon..<at, with: ":***")
        return redacted
    }
}
