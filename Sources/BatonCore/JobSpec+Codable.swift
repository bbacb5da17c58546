import Foundation

/// The stored form of a job: the canonical envelope (every default written out), decoded with
/// typed Codable rather than through the validating reader. Stores only read back what they
/// wrote after validation, so this path skips re-validation; it is the hot path of a claim.
extension JobSpec: Codable {
    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version", id = "job_id", idempotencyKey = "idempotency_key"
        case dedupeWindowSec = "dedupe_window_sec", lane, sessionKey = "session_key"
        case regionAffinity = "region_affinity", regionFallbackAfterSec = "region_fallback_after_sec", priority, stages, queueTimeoutSec = "queue_timeout_sec"
        case execTimeoutSec = "exec_timeout_sec", leaseTTLSec = "lease_ttl_sec", ttlSec = "ttl_sec", retry
        case artifactURI = "artifact_uri", payload
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let version = try c.decodeIfPresent(Int.self, forKey: .schemaVersion) ?? Self.schemaVersion
        guard version <= Self.schemaVersion else {
            throw BatonError(.unsupportedSchema, field: "schema_version",
                             "stored envelope has schema_version \(version), newer than this Baton (\(Self.schemaVersion))")
        }
        self.init(
            id: try c.decode(String.self, forKey: .id),
            idempotencyKey: try c.decodeIfPresent(String.self, forKey: .idempotencyKey),
            dedupeWindowSec: try c.decode(Int.self, forKey: .dedupeWindowSec),
            lane: try c.decode(String.self, forKey: .lane),
            sessionKey: try c.decodeIfPresent(String.self, forKey: .sessionKey),
            regionAffinity: try c.decodeIfPresent(String.self, forKey: .regionAffinity),
            regionFallbackAfterSec: try c.decodeIfPresent(Int.self, forKey: .regionFallbackAfterSec),
            priority: try c.decode(Int.self, forKey: .priority),
            stages: try c.decode([StageSpec].self, forKey: .stages),
            queueTimeoutSec: try c.decodeIfPresent(Int.self, forKey: .queueTimeoutSec),
            execTimeoutSec: try c.decode(Int.self, forKey: .execTimeoutSec),
            leaseTTLSec: try c.decode(Int.self, forKey: .leaseTTLSec),
            ttlSec: try c.decode(Int.self, forKey: .ttlSec),
            retry: try c.decode(RetryPolicy.self, forKey: .retry),
            artifactURI: try c.decodeIfPresent(String.self, forKey: .artifactURI),
            payload: try c.decodeIfPresent(JSONValue.self, forKey: .payload) ?? .object([:]))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.schemaVersion, forKey: .schemaVersion)
        try c.encode(id, forKey: .id)
        try c.encodeIfPresent(idempotencyKey, forKey: .idempotencyKey)
        try c.encode(dedupeWindowSec, forKey: .dedupeWindowSec)
        try c.encode(lane, forKey: .lane)
        try c.encodeIfPresent(sessionKey, forKey: .sessionKey)
        try c.encodeIfPresent(regionAffinity, forKey: .regionAffinity)
        try c.encodeIfPresent(regionFallbackAfterSec, forKey: .regionFallbackAfterSec)
        try c.encode(priority, forKey: .priority)
        try c.encode(stages, forKey: .stages)
        try c.encodeIfPresent(queueTimeoutSec, forKey: .queueTimeoutSec)
        try c.encode(execTimeoutSec, forKey: .execTimeoutSec)
        try c.encode(leaseTTLSec, forKey: .leaseTTLSec)
        try c.encode(ttlSec, forKey: .ttlSec)
        try c.encode(retry, forKey: .retry)
        try c.encodeIfPresent(artifactURI, forKey: .artifactURI)
        try c.encode(payload, forKey: .payload)
    }

    /// The stored form as JSON text.
    public func storedJSON() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every field is a plain JSON value: encoding cannot fail.
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// Reads back what `storedJSON()` wrote.
    public static func decode(_ data: Data) throws(BatonError) -> JobSpec {
        do {
            return try JSONDecoder().decode(JobSpec.self, from: data)
        } catch let error as BatonError {
            throw error
        } catch {
            throw BatonError(.internal, field: "stored envelope", "cannot be read back: \(error)")
        }
    }
}

extension StageSpec: Codable {
    enum CodingKeys: String, CodingKey {
        case name, run, timeoutSec = "timeout_sec", transientExitCodes = "transient_exit_codes", env, workdir
        case timeoutClass = "timeout_class", regionAffinity = "region_affinity", nodeTags = "node_tags"
    }

    enum RunKeys: String, CodingKey { case shell, noop, sleep, http, llm }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let r = try c.nestedContainer(keyedBy: RunKeys.self, forKey: .run)
        let run: StageRun
        if let command = try r.decodeIfPresent(String.self, forKey: .shell) {
            run = .shell(command)
        } else if let seconds = try r.decodeIfPresent(Double.self, forKey: .sleep) {
            run = .sleep(seconds)
        } else if let request = try r.decodeIfPresent(HTTPStageRequest.self, forKey: .http) {
            run = .http(request)
        } else if let request = try r.decodeIfPresent(LLMStageRequest.self, forKey: .llm) {
            run = .llm(request)
        } else {
            run = .noop
        }
        self.init(name: try c.decode(String.self, forKey: .name), run: run,
                  timeoutSec: try c.decodeIfPresent(Int.self, forKey: .timeoutSec),
                  transientExitCodes: try c.decodeIfPresent([Int32].self, forKey: .transientExitCodes) ?? [],
                  env: try c.decodeIfPresent([String: String].self, forKey: .env) ?? [:],
                  workdir: try c.decodeIfPresent(String.self, forKey: .workdir),
                  timeoutClass: try c.decodeIfPresent(TimeoutClass.self, forKey: .timeoutClass) ?? .exec,
                  regionAffinity: try c.decodeIfPresent(String.self, forKey: .regionAffinity),
                  nodeTags: try c.decodeIfPresent([String].self, forKey: .nodeTags) ?? [])
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        var r = c.nestedContainer(keyedBy: RunKeys.self, forKey: .run)
        switch run {
        case .shell(let command): try r.encode(command, forKey: .shell)
        case .noop: try r.encode(true, forKey: .noop)
        case .sleep(let seconds): try r.encode(seconds, forKey: .sleep)
        case .http(let request): try r.encode(request, forKey: .http)
        case .llm(let request): try r.encode(request, forKey: .llm)
        }
        try c.encodeIfPresent(timeoutSec, forKey: .timeoutSec)
        if !transientExitCodes.isEmpty { try c.encode(transientExitCodes, forKey: .transientExitCodes) }
        if !env.isEmpty { try c.encode(env, forKey: .env) }
        try c.encodeIfPresent(workdir, forKey: .workdir)
        if timeoutClass != .exec { try c.encode(timeoutClass, forKey: .timeoutClass) }
        try c.encodeIfPresent(regionAffinity, forKey: .regionAffinity)
        if !nodeTags.isEmpty { try c.encode(nodeTags, forKey: .nodeTags) }
    }
}

extension RetryPolicy: Codable {
    enum CodingKeys: String, CodingKey {
        case maxAttempts = "max_attempts", initialSec = "initial_sec", multiplier, maxSec = "max_sec", jitter
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(maxAttempts: try c.decode(Int.self, forKey: .maxAttempts), initialSec: try c.decode(Double.self, forKey: .initialSec),
                  multiplier: try c.decode(Double.self, forKey: .multiplier), maxSec: try c.decode(Double.self, forKey: .maxSec),
                  jitter: try c.decode(Double.self, forKey: .jitter))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(maxAttempts, forKey: .maxAttempts)
        try c.encode(initialSec, forKey: .initialSec)
        try c.encode(multiplier, forKey: .multiplier)
        try c.encode(maxSec, forKey: .maxSec)
        try c.encode(jitter, forKey: .jitter)
    }
}
