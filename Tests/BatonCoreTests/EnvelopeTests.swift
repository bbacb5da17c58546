import BatonCore
import Foundation
import Testing

/// An envelope with every field set to a value other than its default.
private let fullEnvelope = Data(#"""
{
  "schema_version": 1,
  "job_id": "job-42.a:b_c",
  "idempotency_key": "order-7781",
  "dedupe_window_sec": 600,
  "lane": "video",
  "session_key": "user-9",
  "region_affinity": "eu-west",
  "priority": -5,
  "stages": [
    {"name": "fetch", "run": {"shell": "curl -fsS \"$URL\" > in.mp4"}, "timeout_sec": 120,
     "transient_exit_codes": [6, 7], "env": {"URL": "https://example.com/a.mp4"}, "workdir": "/tmp/job"},
    {"name": "wait", "run": {"sleep": 1.5}},
    {"name": "done", "run": {"noop": {}}}
  ],
  "queue_timeout_sec": 300,
  "exec_timeout_sec": 900,
  "lease_ttl_sec": 30,
  "ttl_sec": 7200,
  "retry": {"max_attempts": 7, "initial_sec": 0.5, "multiplier": 3, "max_sec": 120, "jitter": 0.1},
  "artifact_uri": "s3://bucket/key",
  "payload": {"user": 9, "flag": true, "tags": ["a", "b"], "ratio": 0.25, "nested": {"none": null}}
}
"""#.utf8)

private let fullSpec = JobSpec(
    id: "job-42.a:b_c", idempotencyKey: "order-7781", dedupeWindowSec: 600, lane: "video",
    sessionKey: "user-9", regionAffinity: "eu-west", priority: -5,
    stages: [
        StageSpec(name: "fetch", run: .shell(#"curl -fsS "$URL" > in.mp4"#), timeoutSec: 120,
                  transientExitCodes: [6, 7], env: ["URL": "https://example.com/a.mp4"], workdir: "/tmp/job"),
        StageSpec(name: "wait", run: .sleep(1.5)),
        StageSpec(name: "done", run: .noop),
    ],
    queueTimeoutSec: 300, execTimeoutSec: 900, leaseTTLSec: 30, ttlSec: 7200,
    retry: RetryPolicy(maxAttempts: 7, initialSec: 0.5, multiplier: 3, maxSec: 120, jitter: 0.1),
    artifactURI: "s3://bucket/key",
    payload: .object([
        "user": .int(9), "flag": .bool(true), "tags": .array([.string("a"), .string("b")]),
        "ratio": .double(0.25), "nested": .object(["none": .null]),
    ]))

@Test func fullEnvelopeReadsEveryField() throws {
    #expect(try readOne(fullEnvelope) == fullSpec)
}

@Test func canonicalEnvelopeDecodesToAnEqualSpec() throws {
    let spec = try readOne(fullEnvelope)
    #expect(try JobSpec.decode(spec.envelope.encoded()) == spec)
}

@Test func canonicalEnvelopeReadsBackToAnEqualSpec() throws {
    let spec = try readOne(fullEnvelope)
    #expect(try readOne(spec.envelope.encoded()) == spec)
}

@Test func storedJSONDecodesToAnEqualSpec() throws {
    let spec = try readOne(fullEnvelope)
    #expect(try JobSpec.decode(Data(spec.storedJSON().utf8)) == spec)
}

@Test func storedEnvelopeFromANewerSchemaIsRefused() throws {
    let spec = try readOne(envelope())
    guard case .object(var fields) = spec.envelope else {
        Issue.record("envelope is not an object")
        return
    }
    fields["schema_version"] = .int(2)
    let error = #expect(throws: BatonError.self) { try JobSpec.decode(JSONValue.object(fields).encoded()) }
    #expect(error?.code == .unsupportedSchema)
}

@Test func absentFieldsTakeTheBuiltInDefaults() throws {
    let spec = try readOne(envelope())
    #expect(spec.lane == "main")
    #expect(spec.leaseTTLSec == 60)
    #expect(spec.ttlSec == 86_400)
    #expect(spec.execTimeoutSec == 3600)
    #expect(spec.dedupeWindowSec == 3600)
    #expect(spec.priority == 0)
    #expect(spec.queueTimeoutSec == nil)
    #expect(spec.idempotencyKey == nil)
    #expect(spec.sessionKey == nil)
    #expect(spec.regionAffinity == nil)
    #expect(spec.artifactURI == nil)
    #expect(spec.payload == .object([:]))
    #expect(spec.retry == RetryPolicy(maxAttempts: 5, initialSec: 1, multiplier: 2, maxSec: 300, jitter: 0.2))
    #expect(spec.retry == .standard)
    #expect(spec.stages == [StageSpec(name: "build", run: .noop)])
}

@Test func explicitNullCountsAsAbsent() throws {
    let spec = try readOne(envelope(#""lane": null, "retry": null, "payload": null, "priority": null"#))
    #expect(spec.lane == "main")
    #expect(spec.retry == .standard)
    #expect(spec.payload == .object([:]))
    #expect(spec.priority == 0)
}

@Test func nullSchemaVersionCountsAsAbsent() throws {
    let spec = try readOne(envelope(#""job_id": "j1", "schema_version": null"#))
    #expect(spec == (try readOne(envelope(#""job_id": "j1""#))))
    guard case .object(var stored) = spec.envelope else {
        Issue.record("envelope is not an object")
        return
    }
    stored["schema_version"] = .null
    #expect(try JobSpec.decode(JSONValue.object(stored).encoded()) == spec)
}

/// JSON has one kind of number: JSONEncoder writes 2.0 as 2, which reads back as an integer.
@Test func wholeDoublesInThePayloadRoundTripAsEqualValues() throws {
    let text = #"{"a": 2.0, "b": 2, "c": 1.5}"#
    let payload = try JSONValue.parse(Data(text.utf8), what: "payload")
    let submitted = JSONValue.object(["a": .double(2.0), "b": .int(2), "c": .double(1.5)])
    #expect(try JSONValue.parse(submitted.encoded(), what: "payload") == submitted)
    #expect(try JSONValue.parse(payload.encoded(), what: "payload") == payload)
    #expect(payload == submitted)
    #expect(Set([payload, submitted]).count == 1)

    let spec = try readOne(envelope(#""payload": \#(text)"#))
    #expect(spec.payload == submitted)
    #expect(try JobSpec.decode(Data(spec.storedJSON().utf8)) == spec)
    #expect(try readOne(spec.envelope.encoded()) == spec)
}

@Test func numbersCompareByValueNotByKind() {
    #expect(JSONValue.int(2) == .double(2.0))
    #expect(JSONValue.double(2.0).hashValue == JSONValue.int(2).hashValue)
    #expect(JSONValue.int(2) != .double(2.5))
    #expect(JSONValue.int(1) != .bool(true))
    #expect(JSONValue.int(9_007_199_254_740_993) != .double(9_007_199_254_740_992))
}

@Test func customDefaultsFillAbsentFields() throws {
    var defaults = JobDefaults()
    defaults.lane = "batch"
    defaults.dedupeWindowSec = 60
    defaults.queueTimeoutSec = 900
    defaults.execTimeoutSec = 120
    defaults.leaseTTLSec = 20
    defaults.ttlSec = 3600
    defaults.retry = RetryPolicy(maxAttempts: 2, initialSec: 5, multiplier: 1.5, maxSec: 60, jitter: 0)
    let spec = try readOne(envelope(), reader: EnvelopeReader(defaults: defaults))
    #expect(spec.lane == "batch")
    #expect(spec.dedupeWindowSec == 60)
    #expect(spec.queueTimeoutSec == 900)
    #expect(spec.execTimeoutSec == 120)
    #expect(spec.leaseTTLSec == 20)
    #expect(spec.ttlSec == 3600)
    #expect(spec.retry == defaults.retry)
}

@Test func explicitFieldsWinOverCustomDefaults() throws {
    var defaults = JobDefaults()
    defaults.lane = "batch"
    defaults.leaseTTLSec = 20
    let spec = try readOne(envelope(#""lane": "urgent", "lease_ttl_sec": 90"#), reader: EnvelopeReader(defaults: defaults))
    #expect(spec.lane == "urgent")
    #expect(spec.leaseTTLSec == 90)
}

@Test func partialRetryObjectKeepsTheDefaultsForTheRest() throws {
    var defaults = JobDefaults()
    defaults.retry = RetryPolicy(maxAttempts: 2, initialSec: 5, multiplier: 1.5, maxSec: 60, jitter: 0)
    let spec = try readOne(envelope(#""retry": {"max_attempts": 9}"#), reader: EnvelopeReader(defaults: defaults))
    #expect(spec.retry == RetryPolicy(maxAttempts: 9, initialSec: 5, multiplier: 1.5, maxSec: 60, jitter: 0))
}

@Test func generatedJobIDIsATwentySixCharacterULID() throws {
    let spec = try readOne(envelope())
    #expect(spec.id.count == 26)
    #expect(spec.id.allSatisfy { "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains($0) })
}

@Test func generatedJobIDsSortByTheirReadTime() throws {
    let clock = ManualClock()
    let first = try readOne(envelope(), now: clock.now)
    clock.advance(by: 0.002)
    let second = try readOne(envelope(), now: clock.now)
    #expect(first.id < second.id)
    #expect(first.id.prefix(10) == JobID.make(at: ManualClock().now).prefix(10))
}

@Test func givenJobIDIsKept() throws {
    #expect(try readOne(envelope(#""job_id": "nightly:2024-01-01""#)).id == "nightly:2024-01-01")
}

@Test func arrayOfEnvelopesGivesOneSpecEach() throws {
    let document = Data(#"""
    [{"stages": [\#(noopStage)], "lane": "a"},
     {"stages": [\#(noopStage)], "lane": "b"},
     {"stages": [\#(noopStage)], "lane": "c"}]
    """#.utf8)
    let specs = try EnvelopeReader().read(document)
    #expect(specs.map(\.lane) == ["a", "b", "c"])
    #expect(Set(specs.map(\.id)).count == 3)
}

@Test func batchErrorNamesTheEnvelopeIndex() {
    let document = Data(#"""
    [{"stages": [\#(noopStage)]}, {"stages": [\#(noopStage)]}, {"stages": [\#(noopStage)]},
     {"stages": [\#(noopStage)], "priority": "high"}]
    """#.utf8)
    let error = readError(document)
    #expect(error?.code == .invalidInput)
    #expect(error?.field == "[3].priority")
}

@Test func batchStageErrorNamesTheEnvelopeAndStageIndex() {
    let document = Data(#"[{"stages": [\#(noopStage)]}, {"stages": [\#(noopStage), {"name": "x"}]}]"#.utf8)
    #expect(readError(document)?.field == "[1].stages[1].run")
}

@Test func batchEntryThatIsNotAnObjectIsNamedByIndex() {
    let error = readError(Data(#"[{"stages": [\#(noopStage)]}, 5]"#.utf8))
    #expect(error?.field == "[1]")
    #expect(error?.message.contains("expected an object, got an integer 5") == true)
}

@Test func emptyBatchIsRefused() {
    let error = readError(Data("[]".utf8))
    #expect(error?.field == "(document)")
    #expect(error?.message.contains("at least one envelope") == true)
}

@Test func batchLargerThanTheLimitIsRefused() {
    var limits = EnvelopeReader.Limits()
    limits.maxBatch = 2
    let one = #"{"stages": [\#(noopStage)]}"#
    let error = readError(Data("[\(one), \(one), \(one)]".utf8), reader: EnvelopeReader(limits: limits))
    #expect(error?.field == "(document)")
    #expect(error?.message.contains("at most 2 envelopes, got 3") == true)
}

@Test func documentLargerThanTheLimitIsRefusedBeforeParsing() {
    var limits = EnvelopeReader.Limits()
    limits.maxDocumentBytes = 10
    let error = readError(Data("not json, but too long anyway".utf8), reader: EnvelopeReader(limits: limits))
    #expect(error?.field == "(document)")
    #expect(error?.message.contains("at most 10 bytes") == true)
}

@Test func payloadExactlyAtTheLimitIsAccepted() throws {
    // `{"b":"…"}` is 8 bytes of JSON around the string.
    let blob = String(repeating: "x", count: 256 * 1024 - 8)
    let spec = try readOne(envelope(#""payload": {"b": "\#(blob)"}"#))
    #expect(spec.payload.encoded().count == 256 * 1024)
}

@Test func newerSchemaIsRefusedAsNewerNotAsUnknownFields() {
    let error = readError(envelope(#""schema_version": 2, "fancy_new_field": true"#))
    #expect(error?.code == .unsupportedSchema)
    #expect(error?.field == "schema_version")
}

@Test func stageTimeoutFallsBackToTheJobExecTimeout() throws {
    let spec = try readOne(fullEnvelope)
    #expect(spec.timeout(ofStage: 0) == 120)
    #expect(spec.timeout(ofStage: 1) == 900)
}

@Test func stageRunsOfEveryKindAreRead() throws {
    let spec = try readOne(envelope(stages: #"""
    [{"name": "a", "run": {"shell": "true"}}, {"name": "b", "run": {"noop": true}},
     {"name": "c", "run": {"noop": {}}}, {"name": "d", "run": {"sleep": 2}}]
    """#))
    #expect(spec.stages.map(\.run) == [.shell("true"), .noop, .noop, .sleep(2)])
    #expect(spec.stages.map(\.run.kind) == ["shell", "noop", "noop", "sleep"])
}
