import BatonCore
import Foundation
import Yams

/// Reads `baton.yaml` into a validated `BatonConfig`.
///
/// The YAML is first turned into a `JSONValue` tree, then read section by section with
/// `ObjectReader`, so a configuration error reads like an envelope error: the key, the value
/// found and what was expected (`node.capacity: expected an integer from 1 to 1024, got a
/// string "four"`), and an unknown key comes with the nearest valid one.
public enum ConfigLoader {
    /// The file `resolve(path:environment:)` looks for when no path is given.
    public static let defaultPath = "./baton.yaml"

    static let sectionKeys = ["store", "node", "defaults", "logs", "sqlite", "postgres", "gates", "alerts", "lanes",
                              "agents", "sessions", "queue", "messages", "schedules", "api", "providers", "models"]
    static let gatesKeys = ["dead_letters", "window_sec"]
    static let alertsKeys = ["webhook_url"]
    static let nodeKeys = ["id", "region", "tags", "capacity", "poll_interval_ms", "drain_timeout_sec",
                           "rescue_interval_sec", "heartbeat_interval_sec", "dead_after_missed"]
    static let defaultsKeys = ["lane", "dedupe_window_sec", "queue_timeout_sec", "exec_timeout_sec",
                               "lease_ttl_sec", "ttl_sec", "retry"]
    static let logsKeys = ["dir", "capture_bytes", "level", "format"]
    static let sqliteKeys = ["synchronous", "busy_timeout_sec"]
    static let postgresKeys = ["schema", "max_connections", "connect_timeout_sec", "operation_timeout_sec"]
    static let environmentKeys = ["BATON_NODE_ID", "BATON_DB", "BATON_REGION"]

    static let nodeIDWhat = "a node id of letters, digits and - _ . :"
    static let maxFileBytes = 4 * 1024 * 1024

    /// Parses YAML text. `source` names the file in errors. Environment overrides applied
    /// after the file: BATON_NODE_ID → node.id, BATON_DB → store, BATON_REGION → node.region.
    /// A variable set to the empty string counts as unset.
    public static func load(yaml: String, source: String,
                            environment: [String: String] = [:]) throws(BatonError) -> BatonConfig {
        let document = try YAMLTree.parse(yaml, source: source)
        var config = try read(document, source: source)
        try applyEnvironment(environment, to: &config)
        return config
    }

    /// Reads the file at `path` (an `.unreadableInput` error on field `config` when it cannot be
    /// read, `.invalidInput` when it is too large or not UTF-8), then `load(yaml:source:environment:)`.
    public static func load(path: String, environment: [String: String]) throws(BatonError) -> BatonConfig {
        try load(yaml: readFile(path), source: path, environment: environment)
    }

    /// Like `load(path:environment:)`, but with no `path` reads `./baton.yaml` when it exists
    /// and otherwise returns `BatonConfig.standard` with the environment overrides applied.
    public static func resolve(path: String?, environment: [String: String]) throws(BatonError) -> BatonConfig {
        if let path { return try load(path: path, environment: environment) }
        if FileManager.default.fileExists(atPath: defaultPath) {
            return try load(path: defaultPath, environment: environment)
        }
        var config = BatonConfig.standard
        try applyEnvironment(environment, to: &config)
        return config
    }

    // MARK: - Sections

    static func read(_ document: JSONValue, source: String) throws(BatonError) -> BatonConfig {
        var config = BatonConfig()
        if document == .null { return config }
        guard case .object = document else {
            throw BatonError(.invalidInput, field: source,
                             "expected a mapping of \(sectionKeys.joined(separator: ", ")) at the top level, got \(document.summary)")
        }
        let r = try ObjectReader(document, path: "", allowedKeys: sectionKeys)
        // Emptiness is left to validatedStore, whose message lists the accepted forms.
        if let store = try r.string("store", maxLength: 4096, nonEmpty: false, what: StoreLocation.acceptedForms) {
            config.store = try validatedStore(store, field: r.field("store"))
        }
        if let node = r.value("node") { config.node = try readNode(node, path: r.field("node"), base: config.node) }
        if let defaults = r.value("defaults") { config.defaults = try readDefaults(defaults, path: r.field("defaults")) }
        if let logs = r.value("logs") { config.logs = try readLogs(logs, path: r.field("logs")) }
        if let sqlite = r.value("sqlite") { config.sqlite = try readSQLite(sqlite, path: r.field("sqlite")) }
        if let postgres = r.value("postgres") { config.postgres = try readPostgres(postgres, path: r.field("postgres")) }
        if let gates = r.value("gates") {
            let g = try ObjectReader(gates, path: r.field("gates"), allowedKeys: gatesKeys)
            config.gates.deadLetters = try g.int("dead_letters", in: 1...1000) ?? config.gates.deadLetters
            config.gates.windowSec = try g.int("window_sec", in: 1...31_536_000) ?? config.gates.windowSec
        }
        try readLanes(r, into: &config)
        if let schedules = try r.array("schedules", maxCount: 1000) {
            // Read after `defaults`: a schedule's job is checked as this node will enqueue it.
            let reader = EnvelopeReader(defaults: config.defaults)
            for (index, item) in schedules.enumerated() {
                let spec = try ScheduleSpec.read(item, path: "\(r.field("schedules"))[\(index)]", reader: reader)
                if config.schedules.contains(where: { $0.id == spec.id }) {
                    throw BatonError(.invalidInput, field: "\(r.field("schedules"))[\(index)].id",
                                     "expected an id unique among the schedules, got \"\(spec.id)\" twice")
                }
                config.schedules.append(spec)
            }
        }
        if let api = r.value("api") { config.api = try APISettings.read(api, path: r.field("api")) }
        try readModels(r, into: &config)
        if let alerts = r.value("alerts") {
            let a = try ObjectReader(alerts, path: r.field("alerts"), allowedKeys: alertsKeys)
            if let url = try a.string("webhook_url", maxLength: 4096) {
                guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                    throw a.invalid("webhook_url", .string(url), "expected an http:// or https:// URL")
                }
                config.alerts.webhookURL = url
            }
        }
        return config
    }

    static let laneWhat = "a lane name of letters, digits and - _ . :"

    /// `providers`, `models`, and the model chains of `agents.defaults` and `agents.list`
    /// (read after the agents, each chain checked against the providers).
    static func readModels(_ r: ObjectReader, into config: inout BatonConfig) throws(BatonError) {
        var models = ModelSettings.standard
        for (index, item) in (try r.array("providers", maxCount: 64) ?? []).enumerated() {
            let provider = try ProviderSettings.read(item, path: "\(r.field("providers"))[\(index)]")
            guard models.provider(named: provider.name) == nil else {
                throw BatonError(.invalidInput, field: "\(r.field("providers"))[\(index)].name",
                                 "expected a name unique among the providers, got \"\(provider.name)\" twice")
            }
            models.providers.append(provider)
        }
        if let section = r.value("models") { try models.read(section, path: r.field("models")) }
        if let agents = r.value("agents"), case .object(let fields) = agents {
            if case .object(let defaults)? = fields["defaults"], let chain = defaults["model"] {
                let field = "\(r.field("agents")).defaults.model"
                models.defaultChain = try ModelChain.read(chain, path: field)
                try models.check(chain: models.defaultChain!, field: field)
            }
            if case .array(let list)? = fields["list"] {
                for (index, item) in list.enumerated() {
                    guard case .object(let entry) = item, let chain = entry["model"], case .string(let id)? = entry["id"] else { continue }
                    let field = "\(r.field("agents")).list[\(index)].model"
                    let read = try ModelChain.read(chain, path: field)
                    try models.check(chain: read, field: field)
                    models.agentChains[id] = read
                }
            }
        }
        config.models = models
    }

    /// `lanes`, `agents`, `sessions`, `queue` and `messages`: lane caps, agents' lanes,
    /// session ordering, queue visibility and inbound messages.
    static func readLanes(_ r: ObjectReader, into config: inout BatonConfig) throws(BatonError) {
        var caps = LaneSettings.builtIn
        if let agents = r.value("agents") {
            let a = try ObjectReader(agents, path: r.field("agents"), allowedKeys: ["defaults", "list"])
            if let defaults = a.value("defaults") {
                let d = try ObjectReader(defaults, path: a.field("defaults"), allowedKeys: ["maxConcurrent", "subagents", "cron", "model"])
                caps["main"] = try d.int("maxConcurrent", in: 1...100_000) ?? caps["main"]
                for (key, lane) in [("subagents", "subagent"), ("cron", "cron")] {
                    guard let section = d.value(key) else { continue }
                    let s = try ObjectReader(section, path: d.field(key), allowedKeys: ["maxConcurrent"])
                    caps[lane] = try s.int("maxConcurrent", in: 1...100_000) ?? caps[lane]
                }
            }
            var agentsList: [AgentSettings] = []
            for (index, item) in (try a.array("list", maxCount: 1000) ?? []).enumerated() {
                let e = try ObjectReader(item, path: "\(a.field("list"))[\(index)]", allowedKeys: ["id", "lane", "laneConcurrency", "model"])
                guard let id = try e.string("id", maxLength: 64) else {
                    throw BatonError(.invalidInput, field: e.field("id"), "is required: expected the agent's id")
                }
                let lane = try e.string("lane", maxLength: 64, allowed: Identifier.isAllowed, what: laneWhat) ?? "main"
                let cap = try e.int("laneConcurrency", in: 1...100_000)
                if let cap { caps[lane] = cap }
                agentsList.append(AgentSettings(id: id, lane: lane, laneConcurrency: cap))
            }
            config.agents = agentsList
        }
        if let lanes = r.value("lanes") {
            guard case .object(let fields) = lanes else {
                throw BatonError(.invalidInput, field: r.field("lanes"), "expected a mapping of lane names to caps, got \(lanes.summary)")
            }
            for (name, value) in fields {
                let field = "\(r.field("lanes")).\(name)"
                guard !name.isEmpty, name.count <= 64, name.allSatisfy(Identifier.isAllowed) else {
                    throw BatonError(.invalidInput, field: field, "expected \(laneWhat)")
                }
                switch value {
                case .int(let cap) where (1...100_000).contains(cap): caps[name] = Int(cap)
                case .null: caps[name] = nil
                default: throw BatonError(.invalidInput, field: field,
                                          "expected a cap from 1 to 100000, or null for no cap, got \(value.summary)")
                }
            }
        }
        config.lanes.caps = caps
        if let sessions = r.value("sessions") {
            let s = try ObjectReader(sessions, path: r.field("sessions"), allowedKeys: ["retry_holds_place"])
            config.lanes.retryHoldsPlace = try s.bool("retry_holds_place") ?? config.lanes.retryHoldsPlace
        }
        if let queue = r.value("queue") {
            let q = try ObjectReader(queue, path: r.field("queue"), allowedKeys: ["wait_warn_ms", "ageing_every_sec", "ageing_max_boost"])
            config.lanes.waitWarnMs = try q.int("wait_warn_ms", in: 0...86_400_000) ?? config.lanes.waitWarnMs
            config.lanes.ageingEverySec = try q.int("ageing_every_sec", in: 1...86_400) ?? config.lanes.ageingEverySec
            config.lanes.ageingMaxBoost = try q.int("ageing_max_boost", in: 0...1000) ?? config.lanes.ageingMaxBoost
        }
        if let messages = r.value("messages") {
            let m = try ObjectReader(messages, path: r.field("messages"), allowedKeys: ["inbound"])
            if let inbound = m.value("inbound") {
                let i = try ObjectReader(inbound, path: m.field("inbound"),
                                         allowedKeys: ["debounceMs", "perChannel", "dedupeTtlSec", "lane", "run"])
                config.inbound.lane = try i.string("lane", maxLength: 64, allowed: Identifier.isAllowed, what: laneWhat)
                    ?? config.inbound.lane
                if let run = i.value("run") { config.inbound.run = try EnvelopeReader().readRun(run, path: i.field("run")) }
                config.inbound.debounceMs = try i.int("debounceMs", in: 0...600_000) ?? config.inbound.debounceMs
                config.inbound.dedupeTTLSec = try i.int("dedupeTtlSec", in: 1...604_800) ?? config.inbound.dedupeTTLSec
                if let perChannel = i.value("perChannel") {
                    guard case .object(let channels) = perChannel else {
                        throw BatonError(.invalidInput, field: i.field("perChannel"),
                                         "expected a mapping of channel names to {debounceMs}, got \(perChannel.summary)")
                    }
                    for (channel, value) in channels {
                        let c = try ObjectReader(value, path: "\(i.field("perChannel")).\(channel)", allowedKeys: ["debounceMs"])
                        if let ms = try c.int("debounceMs", in: 0...600_000) { config.inbound.perChannelDebounceMs[channel] = ms }
                    }
                }
            }
        }
    }

    static func readNode(_ value: JSONValue, path: String, base: NodeSettings) throws(BatonError) -> NodeSettings {
        let r = try ObjectReader(value, path: path, allowedKeys: nodeKeys)
        var node = base
        node.id = try r.string("id", maxLength: 64, allowed: Identifier.isAllowed, what: nodeIDWhat) ?? node.id
        node.region = try r.string("region", maxLength: 64, what: "a region name") ?? node.region
        if let tags = try r.stringArray("tags", maxCount: 64) {
            for (index, tag) in tags.enumerated() {
                let field = "\(r.field("tags"))[\(index)]"
                if tag.utf8.count > 64 || tag.contains(where: { !Identifier.isAllowed($0) }) {
                    throw BatonError(.invalidInput, field: field,
                                     "expected a tag of at most 64 letters, digits and - _ . :, got \(JSONValue.string(tag).preview)")
                }
                if tags[..<index].contains(tag) {
                    throw BatonError(.invalidInput, field: field, "expected each tag once, got \"\(tag)\" twice")
                }
            }
            node.tags = tags
        }
        node.capacity = try r.int("capacity", in: 1...1024) ?? node.capacity
        node.pollIntervalMs = try r.int("poll_interval_ms", in: 10...60_000) ?? node.pollIntervalMs
        node.drainTimeoutSec = try r.double("drain_timeout_sec", in: 0...86_400) ?? node.drainTimeoutSec
        node.rescueIntervalSec = try r.double("rescue_interval_sec", in: 0.1...3600) ?? node.rescueIntervalSec
        node.heartbeatIntervalSec = try r.double("heartbeat_interval_sec", in: 0.1...3600) ?? node.heartbeatIntervalSec
        node.deadAfterMissed = try r.int("dead_after_missed", in: 1...100) ?? node.deadAfterMissed
        return node
    }

    /// Ranges match the envelope fields these values stand in for (see `EnvelopeReader`).
    static func readDefaults(_ value: JSONValue, path: String) throws(BatonError) -> JobDefaults {
        let r = try ObjectReader(value, path: path, allowedKeys: defaultsKeys)
        var defaults = JobDefaults.standard
        defaults.lane = try r.string("lane", maxLength: 64, allowed: Identifier.isAllowed,
                                     what: "a lane name of letters, digits and - _ . :") ?? defaults.lane
        defaults.dedupeWindowSec = try r.int("dedupe_window_sec", in: 1...31_536_000) ?? defaults.dedupeWindowSec
        defaults.queueTimeoutSec = try r.int("queue_timeout_sec", in: 1...31_536_000) ?? defaults.queueTimeoutSec
        defaults.execTimeoutSec = try r.int("exec_timeout_sec", in: 1...604_800) ?? defaults.execTimeoutSec
        defaults.leaseTTLSec = try r.int("lease_ttl_sec", in: 1...86_400) ?? defaults.leaseTTLSec
        defaults.ttlSec = try r.int("ttl_sec", in: 1...31_536_000) ?? defaults.ttlSec
        if let retry = r.value("retry") {
            defaults.retry = try RetryPolicy.read(retry, path: r.field("retry"), defaults: JobDefaults.standard.retry)
        }
        return defaults
    }

    static func readLogs(_ value: JSONValue, path: String) throws(BatonError) -> LogSettings {
        let r = try ObjectReader(value, path: path, allowedKeys: logsKeys)
        var logs = LogSettings()
        logs.dir = try r.string("dir", maxLength: 4096, what: "a directory path") ?? logs.dir
        logs.captureBytes = try r.int("capture_bytes", in: 0...(16 * 1024 * 1024)) ?? logs.captureBytes
        logs.level = try oneOf(r, "level", LogSettings.levels) ?? logs.level
        logs.format = try oneOf(r, "format", LogSettings.formats) ?? logs.format
        return logs
    }

    static func readSQLite(_ value: JSONValue, path: String) throws(BatonError) -> SQLiteSettings {
        let r = try ObjectReader(value, path: path, allowedKeys: sqliteKeys)
        var sqlite = SQLiteSettings()
        sqlite.synchronous = try oneOf(r, "synchronous", SQLiteSettings.synchronousModes) ?? sqlite.synchronous
        sqlite.busyTimeoutSec = try r.double("busy_timeout_sec", in: 0...3600) ?? sqlite.busyTimeoutSec
        return sqlite
    }

    static func readPostgres(_ value: JSONValue, path: String) throws(BatonError) -> PostgresSettings {
        let r = try ObjectReader(value, path: path, allowedKeys: postgresKeys)
        var postgres = PostgresSettings()
        postgres.schema = try r.string("schema", maxLength: 48, allowed: { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") },
                                       what: "a schema name of lower-case letters, digits and _") ?? postgres.schema
        if !PostgresSettings.isSchemaName(postgres.schema) {
            throw BatonError(.invalidInput, field: r.field("schema"),
                             "expected a schema name starting with a letter or _, got \(JSONValue.string(postgres.schema).preview)")
        }
        postgres.maxConnections = try r.int("max_connections", in: 1...256) ?? postgres.maxConnections
        postgres.connectTimeoutSec = try r.double("connect_timeout_sec", in: 0.1...600) ?? postgres.connectTimeoutSec
        postgres.operationTimeoutSec = try r.double("operation_timeout_sec", in: 1...3600) ?? postgres.operationTimeoutSec
        return postgres
    }

    /// A string that must be one of `allowed`, with a suggestion for a near miss (`warn` → `warning`).
    static func oneOf(_ r: ObjectReader, _ key: String, _ allowed: [String]) throws(BatonError) -> String? {
        guard let value = r.value(key) else { return nil }
        let expectation = "expected one of \(allowed.joined(separator: ", "))"
        guard case .string(let s) = value else { throw r.invalid(key, value, expectation) }
        if allowed.contains(s) { return s }
        var message = "\(expectation), got \(value.summary)"
        let lowered = s.lowercased()
        if let near = ObjectReader.nearest(to: s, in: allowed)
            ?? allowed.first(where: { !lowered.isEmpty && $0.hasPrefix(lowered) }) {
            message += " (did you mean '\(near)'?)"
        }
        throw BatonError(.invalidInput, field: r.field(key), message)
    }

    /// Replaces `config.store` with `store`, set by `source` (a command-line option such as
    /// `--db`): errors, then and when the store is opened, name `source`.
    public static func overrideStore(_ store: String, source: String, in config: inout BatonConfig) throws(BatonError) {
        config.store = try validatedStore(store, field: source)
        config.storeSource = source
    }

    static func validatedStore(_ store: String, field: String) throws(BatonError) -> String {
        guard StoreLocation(store) != nil else {
            throw BatonError(.invalidInput, field: field,
                             "expected \(StoreLocation.acceptedForms), got \(JSONValue.string(StoreLocation.redacted(store)).preview)")
        }
        return store
    }

    // MARK: - Environment

    static func applyEnvironment(_ environment: [String: String], to config: inout BatonConfig) throws(BatonError) {
        var present: [String: JSONValue] = [:]
        for key in environmentKeys {
            if let value = environment[key], !value.isEmpty { present[key] = .string(value) }
        }
        if present.isEmpty { return }
        // The variables are read like a YAML section, so their errors name the variable.
        let r = try ObjectReader(.object(present), path: "", allowedKeys: environmentKeys)
        if let id = try r.string("BATON_NODE_ID", maxLength: 64, allowed: Identifier.isAllowed, what: nodeIDWhat) {
            config.node.id = id
        }
        if let store = try r.string("BATON_DB", maxLength: 4096) {
            config.store = try validatedStore(store, field: "BATON_DB")
            config.storeSource = "BATON_DB"
        }
        if let region = try r.string("BATON_REGION", maxLength: 64, what: "a region name") {
            config.node.region = region
        }
    }

    // MARK: - Files

    static func readFile(_ path: String) throws(BatonError) -> String {
        func unreadable(_ reason: String, code: BatonError.Code = .unreadableInput) -> BatonError {
            BatonError(code, field: "config", "cannot read configuration file \(path): \(reason)")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw unreadable("no such file")
        }
        guard !isDirectory.boolValue else { throw unreadable("it is a directory") }
        guard FileManager.default.isReadableFile(atPath: path) else { throw unreadable("permission denied") }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw unreadable(error.localizedDescription)
        }
        guard data.count <= maxFileBytes else {
            throw unreadable("it is \(data.count) bytes; a configuration file holds at most \(maxFileBytes)",
                             code: .invalidInput)
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw unreadable("it is not valid UTF-8", code: .invalidInput)
        }
        return text
    }
}

/// YAML text to a `JSONValue` tree.
enum YAMLTree {
    /// YAML 1.2 booleans: only true/false. The YAML 1.1 yes/no/on/off stay strings, so
    /// `region: no` means the region "no", not `false`.
    static let resolver: Resolver =
        (try? Resolver.default.replacing(.bool, with: "^(?:true|True|TRUE|false|False|FALSE)$")) ?? .default

    static func parse(_ yaml: String, source: String) throws(BatonError) -> JSONValue {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml, resolver)
        } catch let error as YamlError {
            throw BatonError(.invalidInput, field: source, "is not valid YAML: \(describe(error, in: yaml))")
        } catch {
            throw BatonError(.invalidInput, field: source, "is not valid YAML: \(error)")
        }
        guard let root else { return .null }
        return try value(of: root, source: source)
    }

    static func value(of node: Node, source: String) throws(BatonError) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            return scalarValue(node, scalar)
        case .sequence(let sequence):
            var items: [JSONValue] = []
            items.reserveCapacity(sequence.count)
            for item in sequence { items.append(try value(of: item, source: source)) }
            return .array(items)
        case .mapping(let mapping):
            var fields: [String: JSONValue] = [:]
            for (key, item) in mapping {
                guard case .scalar(let keyScalar) = key else {
                    throw BatonError(.invalidInput, field: source,
                                     "\(position(key.mark))expected a plain key name, got \(key.sequence != nil ? "a list" : "a mapping") as a key")
                }
                guard fields[keyScalar.string] == nil else {
                    throw BatonError(.invalidInput, field: source,
                                     "is not valid YAML: \(position(key.mark))duplicate key '\(keyScalar.string)'")
                }
                fields[keyScalar.string] = try value(of: item, source: source)
            }
            return .object(fields)
        case .alias:
            // Yams resolves aliases while composing; this is only a guard.
            throw BatonError(.invalidInput, field: source, "\(position(node.mark))unresolved YAML alias")
        }
    }

    /// Quoted scalars resolve to strings (the parser tags them `str`); plain ones by content.
    static func scalarValue(_ node: Node, _ scalar: Node.Scalar) -> JSONValue {
        switch node.tag.rawValue {
        case Tag.Name.null.rawValue:
            return .null
        case Tag.Name.bool.rawValue:
            if let b = node.bool { return .bool(b) }
        case Tag.Name.int.rawValue:
            if let i = node.int { return .int(Int64(i)) }
            // Too large for an integer: keep it a number so range errors show it as one.
            if let d = node.float { return .double(d) }
        case Tag.Name.float.rawValue:
            if let d = node.float { return .double(d) }
        default:
            break
        }
        return .string(scalar.string)
    }

    static func position(_ mark: Mark?) -> String {
        guard let mark else { return "" }
        return "line \(mark.line), column \(mark.column): "
    }

    /// The character a parser mark points at (libyaml counts columns in Unicode scalars).
    static func character(at mark: Mark, in yaml: String) -> Unicode.Scalar? {
        guard mark.line >= 1, mark.column >= 1 else { return nil }
        let line = yaml.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(mark.line - 1).first
        return line?.unicodeScalars.dropFirst(mark.column - 1).first
    }

    static func describe(_ error: YamlError, in yaml: String) -> String {
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            guard let context else { return position(mark) + problem }
            if context.text == "expected a single document in the stream" {
                return position(mark) + "found a second document; a configuration file holds one"
            }
            var message = position(mark) + "\(problem) (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
            if character(at: mark, in: yaml) == "\t" { message += "; indent with spaces, YAML does not allow tabs there" }
            return message
        case .reader(let problem, let offset, _, _):
            guard let offset else { return problem }
            var line = 1, column = 1
            for character in yaml.prefix(offset) {
                if character == "\n" { line += 1; column = 1 } else { column += 1 }
            }
            return "line \(line), column \(column): \(problem)"
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")
            return position(context.mark) + "duplicate key \(keys)"
        default:
            return "\(error)"
        }
    }
}
