import BatonCore
import Foundation
import Testing

private let envelopeKeys = [
    "schema_version", "job_id", "idempotency_key", "dedupe_window_sec", "lane", "session_key",
    "region_affinity", "region_fallback_after_sec", "priority", "stages", "queue_timeout_sec", "exec_timeout_sec",
    "lease_ttl_sec", "ttl_sec", "retry", "artifact_uri", "payload",
]

// MARK: - Suggestions

@Test func nearestSuggestsTheKeyOneTypoAway() {
    #expect(ObjectReader.nearest(to: "prioritty", in: envelopeKeys) == "priority")
    #expect(ObjectReader.nearest(to: "lnae", in: envelopeKeys) == "lane")
    #expect(ObjectReader.nearest(to: "paylod", in: envelopeKeys) == "payload")
}

@Test func nearestIgnoresCase() {
    #expect(ObjectReader.nearest(to: "LANE", in: envelopeKeys) == "lane")
    #expect(ObjectReader.nearest(to: "Job_ID", in: envelopeKeys) == "job_id")
}

@Test func nearestSuggestsNothingForAFarKey() {
    #expect(ObjectReader.nearest(to: "color", in: envelopeKeys) == nil)
    #expect(ObjectReader.nearest(to: "x", in: ["name", "run"]) == nil)
}

@Test func nearestSuggestsNothingWithoutCandidates() {
    #expect(ObjectReader.nearest(to: "lane", in: []) == nil)
}

@Test func nearestCountsInsertionsDeletionsAndSubstitutions() {
    // "name" tolerates two edits of any kind.
    #expect(ObjectReader.nearest(to: "nam", in: ["name"]) == "name")      // one deletion
    #expect(ObjectReader.nearest(to: "nameee", in: ["name"]) == "name")   // two insertions
    #expect(ObjectReader.nearest(to: "nbmf", in: ["name"]) == "name")     // two substitutions
    #expect(ObjectReader.nearest(to: "nmae", in: ["name"]) == "name")     // a swap costs two
    #expect(ObjectReader.nearest(to: "nmaex", in: ["name"]) == nil)       // three edits
    #expect(ObjectReader.nearest(to: "n", in: ["name"]) == nil)           // three deletions
}

@Test func nearestToleratesMoreEditsForLongerKeys() {
    // A third of the candidate's length: 16 characters allow five edits.
    #expect(ObjectReader.nearest(to: "exec_timeout", in: ["exec_timeout_sec"]) == "exec_timeout_sec")
    #expect(ObjectReader.nearest(to: "exec_time", in: ["exec_timeout_sec"]) == nil)
}

@Test func nearestPrefersTheClosestCandidate() {
    #expect(ObjectReader.nearest(to: "sleap", in: ["shell", "sleep", "noop"]) == "sleep")
    #expect(ObjectReader.nearest(to: "ttl_se", in: ["lease_ttl_sec", "ttl_sec"]) == "ttl_sec")
}

@Test func nearestPrefersTheFirstOfEquallyCloseCandidates() {
    #expect(ObjectReader.nearest(to: "cat", in: ["bat", "hat"]) == "bat")
    #expect(ObjectReader.nearest(to: "cat", in: ["hat", "bat"]) == "hat")
}

// MARK: - Reading fields

@Test func unknownFieldIsRefusedByName() {
    let error = #expect(throws: BatonError.self) {
        try ObjectReader(.object(["max_atempts": .int(3)]), path: "retry", allowedKeys: ["max_attempts", "jitter"])
    }
    #expect(error?.code == .invalidInput)
    #expect(error?.field == "retry.max_atempts")
    #expect(error?.message == "unknown field (did you mean 'max_attempts'?)")
}

@Test func unknownFieldFarFromEveryKeyHasNoSuggestion() {
    let error = #expect(throws: BatonError.self) {
        try ObjectReader(.object(["colour": .string("red")]), path: "", allowedKeys: ["lane"])
    }
    #expect(error?.field == "colour")
    #expect(error?.message == "unknown field")
}

@Test func nonObjectIsRefusedNamingItsKind() {
    let atRoot = #expect(throws: BatonError.self) { try ObjectReader(.array([]), path: "", allowedKeys: []) }
    #expect(atRoot?.field == "(document)")
    #expect(atRoot?.message == "expected an object, got an empty array")
    let nested = #expect(throws: BatonError.self) { try ObjectReader(.string("x"), path: "retry", allowedKeys: []) }
    #expect(nested?.field == "retry")
}

@Test func fieldNamesJoinThePath() throws {
    #expect(try ObjectReader(.object([:]), path: "", allowedKeys: []).field("lane") == "lane")
    #expect(try ObjectReader(.object([:]), path: "[2].retry", allowedKeys: []).field("jitter") == "[2].retry.jitter")
}

@Test func absentAndNullFieldsReadAsNil() throws {
    let r = try ObjectReader(.object(["a": .null]), path: "", allowedKeys: ["a", "b"])
    #expect(!r.has("a"))
    #expect(try r.int("a", in: 0...1) == nil)
    #expect(try r.string("b") == nil)
    #expect(try r.bool("a") == nil)
    #expect(try r.double("b", in: 0...1) == nil)
}

@Test func intAcceptsWholeNumbersWrittenAsDoubles() throws {
    let r = try ObjectReader(.object(["n": .double(12)]), path: "", allowedKeys: ["n"])
    #expect(try r.int("n", in: 0...100) == 12)
}

@Test func intOutOfRangeNamesTheRangeAndTheValue() throws {
    let r = try ObjectReader(.object(["n": .int(-2)]), path: "retry", allowedKeys: ["n"])
    let error = #expect(throws: BatonError.self) { try r.int("n", in: 1...100) }
    #expect(error?.description == "retry.n: expected an integer from 1 to 100, got an integer -2")
}

@Test func doubleRangeIsFormattedWithoutNeedlessDecimals() throws {
    let r = try ObjectReader(.object(["x": .string("fast")]), path: "", allowedKeys: ["x"])
    let error = #expect(throws: BatonError.self) { try r.double("x", in: 0.5...2) }
    #expect(error?.message == #"expected a number from 0.5 to 2, got a string "fast""#)
}

@Test func boolRefusesOtherKinds() throws {
    let r = try ObjectReader(.object(["b": .int(1)]), path: "", allowedKeys: ["b"])
    let error = #expect(throws: BatonError.self) { try r.bool("b") }
    #expect(error?.message == "expected true or false, got an integer 1")
}

@Test func stringLongerThanItsLimitIsRefusedInBytes() throws {
    let r = try ObjectReader(.object(["s": .string("ééé")]), path: "", allowedKeys: ["s"])
    let error = #expect(throws: BatonError.self) { try r.string("s", maxLength: 5) }
    #expect(error?.message == #"expected at most 5 bytes, got 6 bytes ("ééé")"#)
}

@Test func stringArrayErrorNamesTheIndex() throws {
    let r = try ObjectReader(.object(["tags": .array([.string("a"), .int(3)])]), path: "job", allowedKeys: ["tags"])
    let error = #expect(throws: BatonError.self) { try r.stringArray("tags") }
    #expect(error?.field == "job.tags[1]")
    #expect(error?.message == "expected a non-empty string, got an integer 3")
}

@Test func stringMapErrorNamesTheEntry() throws {
    let r = try ObjectReader(.object(["env": .object(["HOME": .bool(false)])]), path: "", allowedKeys: ["env"])
    let error = #expect(throws: BatonError.self) { try r.stringMap("env") }
    #expect(error?.field == "env.HOME")
    #expect(error?.message == "expected a string, got a boolean false")
}

@Test func stringMapWithTooManyEntriesIsRefused() throws {
    let env = JSONValue.object(["A": .string("1"), "B": .string("2"), "C": .string("3")])
    let r = try ObjectReader(.object(["env": env]), path: "", allowedKeys: ["env"])
    let error = #expect(throws: BatonError.self) { try r.stringMap("env", maxCount: 2) }
    #expect(error?.message == "expected an object with at most 2 keys, got an object with 3 keys")
}

@Test func emptyStringIsNamedOnce() throws {
    let r = try ObjectReader(.object(["s": .string(""), "tags": .array([.string("")])]), path: "", allowedKeys: ["s", "tags"])
    let plain = #expect(throws: BatonError.self) { try r.string("s") }
    #expect(plain?.message == "expected a non-empty string, got an empty string")
    let described = #expect(throws: BatonError.self) { try r.string("s", what: "a command line") }
    #expect(described?.message == "expected a command line, got an empty string")
    let item = #expect(throws: BatonError.self) { try r.stringArray("tags") }
    #expect(item?.message == "expected a non-empty string, got an empty string")
}

@Test func disallowedCharacterNamesTheValueOnce() throws {
    let r = try ObjectReader(.object(["lane": .string("a/b")]), path: "", allowedKeys: ["lane"])
    let error = #expect(throws: BatonError.self) { try r.string("lane", allowed: Identifier.isAllowed, what: "a lane name") }
    #expect(error?.message == #"expected a lane name, got a string "a/b" (character '/' is not allowed)"#)
}

/// Every kind of value as an error names it: the kind once, then a bounded preview.
@Test(arguments: [
    (JSONValue.null, "expected true or false, got null"),
    (.int(3), "expected true or false, got an integer 3"),
    (.bool(false), "expected true or false, got a boolean false"),
    (.double(1.5), "expected true or false, got a number 1.5"),
    (.string("yes"), #"expected true or false, got a string "yes""#),
    (.string(""), "expected true or false, got an empty string"),
    (.array([]), "expected true or false, got an empty array"),
    (.array([.int(1)]), "expected true or false, got an array of 1 item"),
    (.array([.int(1), .int(2)]), "expected true or false, got an array of 2 items"),
    (.object([:]), "expected true or false, got an empty object"),
    (.object(["a": .int(1)]), "expected true or false, got an object with 1 key"),
    (.object(["a": .int(1), "b": .int(2)]), "expected true or false, got an object with 2 keys"),
])
func invalidValueIsDescribedOnce(_ value: JSONValue, _ message: String) throws {
    let r = try ObjectReader(.object([:]), path: "", allowedKeys: [])
    #expect(r.invalid("b", value, "expected true or false").message == message)
}

@Test func arrayLongerThanItsLimitIsRefused() throws {
    let r = try ObjectReader(.object(["a": .array([.int(1), .int(2), .int(3)])]), path: "", allowedKeys: ["a"])
    let error = #expect(throws: BatonError.self) { try r.array("a", maxCount: 2) }
    #expect(error?.message == "expected an array of at most 2 items, got an array of 3 items")
}

@Test func previewShortensLongValues() {
    let preview = JSONValue.string(String(repeating: "y", count: 500)).preview
    #expect(preview.count == 60)
    #expect(preview.hasSuffix("..."))
}

@Test func identifiersAllowLettersDigitsAndFourPunctuationMarks() {
    #expect("Ab9-_.:".allSatisfy(Identifier.isAllowed))
    #expect(!" /é@".contains(where: Identifier.isAllowed))
}
