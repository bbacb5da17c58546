import Foundation

/// Reads job envelopes (schema v1) into validated `JobSpec`s and writes them back.
///
/// Validation happens here, once, for every entry point (CLI, API, cron): an unknown field is
/// refused by name, a wrong type or range names the field, the value and what was expected,
/// and an envelope newer than this Baton is refused rather than half-run.
public struct EnvelopeReader: Sendable {
    public struct Limits: Sendable, Hashable {
        /// Size of one submitted document (a single envelope or an array of them).
        public var maxDocumentBytes = 16 * 1024 * 1024
        /// Size of one envelope's `payload`, encoded as JSON.
        public var maxPayloadBytes = 256 * 1024
        /// Envelopes in one batch.
        public var maxBatch = 10_000
        /// Stages in one job.
        public var maxStages = 64
        public init() {}
    }

    public var defaults: JobDefaults
    public var limits: Limits

    public init(defaults: JobDefaults = .standard, limits: Limits = Limits()) {
        self.defaults = defaults
        self.limits = limits
    }

    static let keys = [
        "schema_version", "job_id", "idempotency_key", "dedupe_window_sec", "lane", "session_key",
        "region_affinity", "region_fallback_after_sec", "priority", "stages", "queue_timeout_sec", "exec_timeout_sec",
        "lease_ttl_sec", "ttl_sec", "retry", "artifact_uri", "payload",
    ]
    static let stageKeys = ["name", "run", "timeout_sec", "timeout_class", "transient_exit_codes", "env", "workdir",
                            "region_affinity", "node_tags"]
    static let runKeys = ["shell", "noop", "sleep", "http", "llm"]

    /// Reads a document holding one envelope or an array of envelopes.
    public func read(_ data: Data, now: Date = Date()) throws(BatonError) -> [JobSpec] {
        guard data.count <= limits.maxDocumentBytes else {
            throw BatonError(.invalidInput, field: "(document)",
                             "expected at most \(limits.maxDocumentBytes) bytes, got \(data.count)")
        }
        let value = try JSONValue.parse(data, what: "(document)")
        if case .array(let items) = value {
            guard !items.isEmpty else {
                throw BatonError(.invalidInput, field: "(document)", "expected at least one envelope, got an empty array")
            }
            guard items.count <= limits.maxBatch else {
                throw BatonError(.invalidInput, field: "(document)",
                                 "expected at most \(limits.maxBatch) envelopes, got \(items.count)")
            }
            var specs: [JobSpec] = []
            specs.reserveCapacity(items.count)
            for (index, item) in items.enumerated() {
                specs.append(try read(item, path: "[\(index)]", now: now))
            }
            return specs
        }
        return [try read(value, path: "", now: now)]
    }

    /// Reads one envelope. `path` prefixes field names in errors (e.g. `[3]` in a batch).
    public func read(_ value: JSONValue, path: String = "", now: Date = Date()) throws(BatonError) -> JobSpec {
        // The schema version is checked before anything else: a newer envelope may use fields
        // this Baton does not know, and must be refused as newer, not as malformed.
        // An explicit null counts as absent (version 1), as it does for every optional field.
        if case .object(let fields) = value, let version = fields["schema_version"], version != .null {
            guard case .int(let v) = version, v >= 1 else {
                throw BatonError(.invalidInput, field: join(path, "schema_version"),
                                 "expected the integer 1, got \(version.summary)")
            }
            guard v <= JobSpec.schemaVersion else {
                throw BatonError(.unsupportedSchema, field: join(path, "schema_version"),
                                 "envelope schema_version \(v) is newer than this Baton understands (\(JobSpec.schemaVersion)); upgrade Baton on this node")
            }
        }
        let r = try ObjectReader(value, path: path, allowedKeys: Self.keys)
        let id = try r.string("job_id", maxLength: 128, allowed: Identifier.isAllowed,
                              what: "an id of letters, digits and - _ . :") ?? JobID.make(at: now)
        let idempotencyKey = try r.string("idempotency_key", maxLength: 512)
        let dedupeWindow = try r.int("dedupe_window_sec", in: 1...31_536_000) ?? defaults.dedupeWindowSec
        let lane = try r.string("lane", maxLength: 64, allowed: Identifier.isAllowed,
                                what: "a lane name of letters, digits and - _ . :") ?? defaults.lane
        let sessionKey = try r.string("session_key", maxLength: 512)
        let region = try r.string("region_affinity", maxLength: 64)
        let regionFallback = try r.int("region_fallback_after_sec", in: 0...31_536_000)
        if regionFallback != nil && region == nil {
            throw BatonError(.invalidInput, field: r.field("region_fallback_after_sec"),
                             "only applies with region_affinity: expected region_affinity to be set as well")
        }
        let priority = try r.int("priority", in: -1000...1000) ?? 0
        guard let rawStages = try r.array("stages", maxCount: limits.maxStages) else {
            throw BatonError(.invalidInput, field: r.field("stages"), "is required: expected an array of 1 to \(limits.maxStages) stages")
        }
        guard !rawStages.isEmpty else {
            throw BatonError(.invalidInput, field: r.field("stages"), "expected 1 to \(limits.maxStages) stages, got an empty array")
        }
        var stages: [StageSpec] = []
        for (index, raw) in rawStages.enumerated() {
            let stage = try readStage(raw, path: "\(r.field("stages"))[\(index)]")
            if stages.contains(where: { $0.name == stage.name }) {
                throw BatonError(.invalidInput, field: "\(r.field("stages"))[\(index)].name",
                                 "expected a name unique within the job, got \"\(stage.name)\" twice")
            }
            stages.append(stage)
        }
        let queueTimeout = try r.int("queue_timeout_sec", in: 1...31_536_000) ?? defaults.queueTimeoutSec
        let execTimeout = try r.int("exec_timeout_sec", in: 1...604_800) ?? defaults.execTimeoutSec
        let leaseTTL = try r.int("lease_ttl_sec", in: 1...86_400) ?? defaults.leaseTTLSec
        let ttl = try r.int("ttl_sec", in: 1...31_536_000) ?? defaults.ttlSec
        let retry = try r.value("retry").map { v throws(BatonError) in
            try RetryPolicy.read(v, path: r.field("retry"), defaults: defaults.retry)
        } ?? defaults.retry
        let artifactURI = try r.string("artifact_uri", maxLength: 2048)
        let payload = r.value("payload") ?? .object([:])
        let payloadBytes = payload.encoded().count
        guard payloadBytes <= limits.maxPayloadBytes else {
            throw BatonError(.invalidInput, field: r.field("payload"),
                             "expected at most \(limits.maxPayloadBytes) bytes of JSON, got \(payloadBytes); keep large data in artifact_uri")
        }
        return JobSpec(id: id, idempotencyKey: idempotencyKey, dedupeWindowSec: dedupeWindow, lane: lane,
                       sessionKey: sessionKey, regionAffinity: region, regionFallbackAfterSec: regionFallback,
                       priority: priority, stages: stages,
                       queueTimeoutSec: queueTimeout, execTimeoutSec: execTimeout, leaseTTLSec: leaseTTL,
                       ttlSec: ttl, retry: retry, artifactURI: artifactURI, payload: payload)
    }

    func readStage(_ value: JSONValue, path: String) throws(BatonError) -> StageSpec {
        let r = try ObjectReader(value, path: path, allowedKeys: Self.stageKeys)
        guard let name = try r.string("name", maxLength: 64, allowed: Identifier.isAllowed,
                                      what: "a stage name of letters, digits and - _ . :") else {
            throw BatonError(.invalidInput, field: r.field("name"), "is required: expected a stage name")
        }
        guard let runValue = r.value("run") else {
            throw BatonError(.invalidInput, field: r.field("run"),
                             "is required: expected an object with one of \(Self.runKeys.joined(separator: ", "))")
        }
        let run = try readRun(runValue, path: r.field("run"))
        let timeout = try r.int("timeout_sec", in: 1...604_800)
        let codes = try r.array("transient_exit_codes", maxCount: 255) ?? []
        var transient: [Int32] = []
        for (index, code) in codes.enumerated() {
            guard case .int(let c) = code, (1...255).contains(c) else {
                throw BatonError(.invalidInput, field: "\(r.field("transient_exit_codes"))[\(index)]",
                                 "expected an exit code from 1 to 255, got \(code.summary)")
            }
            transient.append(Int32(c))
        }
        let env = try r.stringMap("env") ?? [:]
        for name in env.keys where name.isEmpty || name.contains("=") {
            throw BatonError(.invalidInput, field: "\(r.field("env")).\(name)", "expected a variable name without '='")
        }
        let workdir = try r.string("workdir", maxLength: 4096)
        let timeoutClass = try r.string("timeout_class", maxLength: 16).map { text throws(BatonError) in
            guard let value = TimeoutClass(rawValue: text) else {
                throw r.invalid("timeout_class", .string(text),
                                "expected one of \(TimeoutClass.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return value
        } ?? .exec
        let region = try r.string("region_affinity", maxLength: 64)
        let tags = try r.stringArray("node_tags", maxCount: 32) ?? []
        for (index, tag) in tags.enumerated() where tag.count > 64 || !tag.allSatisfy(Identifier.isAllowed) {
            throw BatonError(.invalidInput, field: "\(r.field("node_tags"))[\(index)]",
                             "expected a tag of up to 64 letters, digits and - _ . :, got \"\(tag.prefix(80))\"")
        }
        return StageSpec(name: name, run: run, timeoutSec: timeout, transientExitCodes: transient,
                         env: env, workdir: workdir, timeoutClass: timeoutClass, regionAffinity: region,
                         nodeTags: Array(Set(tags)).sorted())
    }

    /// Reads a stage's `run` object (also used by configuration that names what to run).
    public func readRun(_ value: JSONValue, path: String) throws(BatonError) -> StageRun {
        let r = try ObjectReader(value, path: path, allowedKeys: Self.runKeys)
        let present = Self.runKeys.filter { r.has($0) }
        guard present.count == 1 else {
            throw BatonError(.invalidInput, field: path,
                             "expected exactly one of \(Self.runKeys.joined(separator: ", ")), got \(present.isEmpty ? "none" : present.joined(separator: " and "))")
        }
        switch present[0] {
        case "shell":
            guard let command = try r.string("shell", maxLength: 65_536, what: "a command line") else { break }
            return .shell(command)
        case "http":
            if let request = r.value("http") { return .http(try HTTPStageRequest.read(request, path: r.field("http"))) }
        case "llm":
            if let request = r.value("llm") { return .llm(try LLMStageRequest.read(request, path: r.field("llm"))) }
        case "noop":
            switch r.value("noop") {
            case .bool(true), .object([:]): return .noop
            case let other?: throw r.invalid("noop", other, "expected true or {}")
            case nil: break
            }
        default:
            if let seconds = try r.double("sleep", in: 0...86_400) { return .sleep(seconds) }
        }
        throw BatonError(.internal, field: path, "run could not be read")
    }

    private func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

extension JobSpec {
    /// The envelope with every default written out: what `baton show` prints and stores keep.
    public var envelope: JSONValue {
        var fields: [String: JSONValue] = [
            "schema_version": .int(Int64(Self.schemaVersion)),
            "job_id": .string(id),
            "dedupe_window_sec": .int(Int64(dedupeWindowSec)),
            "lane": .string(lane),
            "priority": .int(Int64(priority)),
            "stages": .array(stages.map(\.json)),
            "exec_timeout_sec": .int(Int64(execTimeoutSec)),
            "lease_ttl_sec": .int(Int64(leaseTTLSec)),
            "ttl_sec": .int(Int64(ttlSec)),
            "retry": retry.json,
            "payload": payload,
        ]
        if let idempotencyKey { fields["idempotency_key"] = .string(idempotencyKey) }
        if let sessionKey { fields["session_key"] = .string(sessionKey) }
        if let regionAffinity { fields["region_affinity"] = .string(regionAffinity) }
        if let regionFallbackAfterSec { fields["region_fallback_after_sec"] = .int(Int64(regionFallbackAfterSec)) }
        if let queueTimeoutSec { fields["queue_timeout_sec"] = .int(Int64(queueTimeoutSec)) }
        if let artifactURI { fields["artifact_uri"] = .string(artifactURI) }
        return .object(fields)
    }
}

extension StageSpec {
    var json: JSONValue {
        var fields: [String: JSONValue] = ["name": .string(name)]
        switch run {
        case .shell(let command): fields["run"] = .object(["shell": .string(command)])
        case .noop: fields["run"] = .object(["noop": .bool(true)])
        case .sleep(let seconds): fields["run"] = .object(["sleep": .double(seconds)])
        case .http(let request): fields["run"] = .object(["http": request.json])
        case .llm(let request): fields["run"] = .object(["llm": request.json])
        }
        if let timeoutSec { fields["timeout_sec"] = .int(Int64(timeoutSec)) }
        if !transientExitCodes.isEmpty { fields["transient_exit_codes"] = .array(transientExitCodes.map { .int(Int64($0)) }) }
        if !env.isEmpty { fields["env"] = .object(env.mapValues { .string($0) }) }
        if let workdir { fields["workdir"] = .string(workdir) }
        if timeoutClass != .exec { fields["timeout_class"] = .string(timeoutClass.rawValue) }
        if let regionAffinity { fields["region_affinity"] = .string(regionAffinity) }
        if !nodeTags.isEmpty { fields["node_tags"] = .array(nodeTags.map { .string($0) }) }
        return .object(fields)
    }
}
