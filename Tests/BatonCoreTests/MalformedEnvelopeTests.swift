import BatonCore
import Foundation
import Testing

/// One envelope that must be refused, and how.
struct MalformedCase: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: Data
    let field: String
    let code: BatonError.Code
    /// Text the message must hold: the offending value or what was expected.
    let mentions: [String]

    init(_ name: String, _ bytes: Data, field: String, code: BatonError.Code = .invalidInput, mentions: String...) {
        self.name = name
        self.bytes = bytes
        self.field = field
        self.code = code
        self.mentions = mentions
    }

    var testDescription: String { name }
}

private let tooLargePayload = String(repeating: "x", count: 300_000)
private let tooManyStages = "[" + (0...64).map { #"{"name": "s\#($0)", "run": {"noop": true}}"# }.joined(separator: ",") + "]"

private let malformedCases: [MalformedCase] = [
    MalformedCase("unknown top-level field", envelope(#""prioritty": 3"#),
                  field: "prioritty", mentions: "unknown field", "did you mean 'priority'?"),
    MalformedCase("unknown stage field", envelope(stages: #"[{"name": "a", "run": {"noop": true}, "nmae": "b"}]"#),
                  field: "stages[0].nmae", mentions: "unknown field", "did you mean 'name'?"),
    MalformedCase("unknown retry field", envelope(#""retry": {"max_attempt": 3}"#),
                  field: "retry.max_attempt", mentions: "did you mean 'max_attempts'?"),
    MalformedCase("unknown run kind", envelope(stages: #"[{"name": "a", "run": {"shel": "ls"}}]"#),
                  field: "stages[0].run.shel", mentions: "did you mean 'shell'?"),
    MalformedCase("priority as a string", envelope(#""priority": "high""#),
                  field: "priority", mentions: "expected an integer from -1000 to 1000", #"got a string "high""#),
    MalformedCase("priority out of range", envelope(#""priority": 5000"#),
                  field: "priority", mentions: "got an integer 5000"),
    MalformedCase("priority with a fraction", envelope(#""priority": 1.5"#),
                  field: "priority", mentions: "got a number 1.5"),
    MalformedCase("negative lease_ttl_sec", envelope(#""lease_ttl_sec": -5"#),
                  field: "lease_ttl_sec", mentions: "expected an integer from 1 to 86400", "got an integer -5"),
    MalformedCase("zero exec_timeout_sec", envelope(#""exec_timeout_sec": 0"#),
                  field: "exec_timeout_sec", mentions: "expected an integer from 1 to 604800", "got an integer 0"),
    MalformedCase("negative queue_timeout_sec", envelope(#""queue_timeout_sec": -1"#),
                  field: "queue_timeout_sec", mentions: "got an integer -1"),
    MalformedCase("ttl_sec as a boolean", envelope(#""ttl_sec": true"#),
                  field: "ttl_sec", mentions: "got a boolean true"),
    MalformedCase("empty stages array", envelope(stages: "[]"),
                  field: "stages", mentions: "expected 1 to 64 stages, got an empty array"),
    MalformedCase("missing stages", Data(#"{"lane": "main"}"#.utf8),
                  field: "stages", mentions: "is required"),
    MalformedCase("stages as an object", envelope(stages: noopStage),
                  field: "stages", mentions: "expected an array, got an object with 2 keys"),
    MalformedCase("too many stages", envelope(stages: tooManyStages),
                  field: "stages", mentions: "expected an array of at most 64 items, got an array of 65 items"),
    MalformedCase("stage without a name", envelope(stages: #"[{"run": {"noop": true}}]"#),
                  field: "stages[0].name", mentions: "is required"),
    MalformedCase("stage name with a space", envelope(stages: #"[{"name": "my stage", "run": {"noop": true}}]"#),
                  field: "stages[0].name", mentions: "character ' ' is not allowed", #""my stage""#),
    MalformedCase("stage without run", envelope(stages: #"[{"name": "a"}]"#),
                  field: "stages[0].run", mentions: "is required", "shell, noop, sleep"),
    MalformedCase("stage with two run kinds", envelope(stages: #"[{"name": "a", "run": {"shell": "ls", "noop": true}}]"#),
                  field: "stages[0].run", mentions: "expected exactly one of shell, noop, sleep", "got shell and noop"),
    MalformedCase("stage with no run kind", envelope(stages: #"[{"name": "a", "run": {}}]"#),
                  field: "stages[0].run", mentions: "expected exactly one of shell, noop, sleep", "got none"),
    MalformedCase("noop run set to false", envelope(stages: #"[{"name": "a", "run": {"noop": false}}]"#),
                  field: "stages[0].run.noop", mentions: "expected true or {}", "got a boolean false"),
    MalformedCase("empty shell command", envelope(stages: #"[{"name": "a", "run": {"shell": ""}}]"#),
                  field: "stages[0].run.shell", mentions: "expected a command line, got an empty string"),
    MalformedCase("negative sleep", envelope(stages: #"[{"name": "a", "run": {"sleep": -1}}]"#),
                  field: "stages[0].run.sleep", mentions: "expected a number from 0 to 86400", "got an integer -1"),
    MalformedCase("duplicate stage names", envelope(stages: "[\(noopStage), \(noopStage)]"),
                  field: "stages[1].name", mentions: #""build" twice"#),
    MalformedCase("transient exit code out of range",
                  envelope(stages: #"[{"name": "a", "run": {"noop": true}, "transient_exit_codes": [75, 300]}]"#),
                  field: "stages[0].transient_exit_codes[1]", mentions: "expected an exit code from 1 to 255", "got an integer 300"),
    MalformedCase("env value not a string", envelope(stages: #"[{"name": "a", "run": {"noop": true}, "env": {"N": 1}}]"#),
                  field: "stages[0].env.N", mentions: "expected a string, got an integer 1"),
    MalformedCase("env name with an equals sign", envelope(stages: #"[{"name": "a", "run": {"noop": true}, "env": {"A=B": "c"}}]"#),
                  field: "stages[0].env.A=B", mentions: "without '='"),
    MalformedCase("retry.max_attempts zero", envelope(#""retry": {"max_attempts": 0}"#),
                  field: "retry.max_attempts", mentions: "expected an integer from 1 to 1000", "got an integer 0"),
    MalformedCase("retry.jitter above one", envelope(#""retry": {"jitter": 1.5}"#),
                  field: "retry.jitter", mentions: "expected a number from 0 to 1", "got a number 1.5"),
    MalformedCase("retry.max_sec below initial_sec", envelope(#""retry": {"initial_sec": 10, "max_sec": 5}"#),
                  field: "retry.max_sec", mentions: "no smaller than initial_sec (10)", "got 5"),
    MalformedCase("retry as a number", envelope(#""retry": 3"#),
                  field: "retry", mentions: "expected an object, got an integer 3"),
    MalformedCase("payload larger than 256 KiB", envelope(#""payload": {"blob": "\#(tooLargePayload)"}"#),
                  field: "payload", mentions: "expected at most 262144 bytes of JSON", "got 300011"),
    MalformedCase("invalid UTF-8", Data([0x7B, 0xFF, 0xFE, 0x7D]),
                  field: "(document)", mentions: "is not valid UTF-8", "offset 1"),
    MalformedCase("schema_version from the future", envelope(#""schema_version": 99"#),
                  field: "schema_version", code: .unsupportedSchema, mentions: "schema_version 99", "upgrade Baton"),
    MalformedCase("schema_version zero", envelope(#""schema_version": 0"#),
                  field: "schema_version", mentions: "expected the integer 1, got an integer 0"),
    MalformedCase("schema_version as a string", envelope(#""schema_version": "1""#),
                  field: "schema_version", mentions: "expected the integer 1", #"got a string "1""#),
    MalformedCase("schema_version as an array", envelope(#""schema_version": [1]"#),
                  field: "schema_version", mentions: "expected the integer 1, got an array of 1 item"),
    MalformedCase("lane as an object", envelope(#""lane": {}"#),
                  field: "lane", mentions: "expected a lane name of letters, digits and - _ . :, got an empty object"),
    MalformedCase("stage env as an array", envelope(stages: #"[{"name": "a", "run": {"noop": true}, "env": ["A", "B"]}]"#),
                  field: "stages[0].env", mentions: "expected an object of strings, got an array of 2 items"),
    MalformedCase("not JSON at all", Data("stages: [build]".utf8),
                  field: "(document)", mentions: "is not valid JSON"),
    MalformedCase("truncated JSON", Data(#"{"stages": ["#.utf8),
                  field: "(document)", mentions: "is not valid JSON"),
    MalformedCase("job_id with a space", envelope(#""job_id": "bad id""#),
                  field: "job_id", mentions: "character ' ' is not allowed", #"got a string "bad id""#),
    MalformedCase("job_id too long", envelope(#""job_id": "\#(String(repeating: "a", count: 129))""#),
                  field: "job_id", mentions: #"expected at most 128 bytes, got 129 bytes ("aaaa"#),
    MalformedCase("empty idempotency_key", envelope(#""idempotency_key": """#),
                  field: "idempotency_key", mentions: "expected a non-empty string, got an empty string"),
    MalformedCase("top-level value a number", Data("42".utf8),
                  field: "(document)", mentions: "expected an object, got an integer 42"),
    MalformedCase("top-level value a string", Data(#""job""#.utf8),
                  field: "(document)", mentions: #"expected an object, got a string "job""#),
    MalformedCase("lane with a slash", envelope(#""lane": "a/b""#),
                  field: "lane", mentions: "character '/' is not allowed", #"got a string "a/b""#),
    MalformedCase("unknown timeout class", envelope(stages: #"[{"name": "a", "run": {"noop": true}, "timeout_class": "network"}]"#),
                  field: "stages[0].timeout_class", mentions: "expected one of exec, upload", #"got a string "network""#),
    MalformedCase("node tag with a comma", envelope(stages: #"[{"name": "a", "run": {"noop": true}, "node_tags": ["mac,gpu"]}]"#),
                  field: "stages[0].node_tags[0]", mentions: "expected a tag"),
    MalformedCase("http stage without a url", envelope(stages: #"[{"name": "a", "run": {"http": {"method": "POST"}}}]"#),
                  field: "stages[0].run.http.url", mentions: "is required"),
    MalformedCase("http url that is not http", envelope(stages: #"[{"name": "a", "run": {"http": {"url": "ftp://x"}}}]"#),
                  field: "stages[0].run.http.url", mentions: "expected an http:// or https:// URL", "ftp://x"),
    MalformedCase("http method unknown", envelope(stages: #"[{"name": "a", "run": {"http": {"url": "http://x", "method": "FETCH"}}}]"#),
                  field: "stages[0].run.http.method", mentions: "expected one of GET, POST"),
    MalformedCase("secret placeholder in a body", envelope(stages: #"[{"name": "a", "run": {"http": {"url": "http://x", "body": "{{env.TOKEN}}"}}}]"#),
                  field: "stages[0].run.http.body", mentions: "only allowed in headers"),
    MalformedCase("unclosed placeholder", envelope(stages: #"[{"name": "a", "run": {"http": {"url": "http://x/{{output.id"}}}]"#),
                  field: "stages[0].run.http.url", mentions: "expected \"}}\""),
    MalformedCase("unknown placeholder", envelope(stages: #"[{"name": "a", "run": {"http": {"url": "http://x/{{job.secret}}"}}}]"#),
                  field: "stages[0].run.http.url", mentions: "{{job.secret}}"),
    MalformedCase("header name with a space", envelope(stages: #"[{"name": "a", "run": {"http": {"url": "http://x", "headers": {"X Y": "1"}}}}]"#),
                  field: "stages[0].run.http.headers.X Y", mentions: "expected a header name"),
]

@Test(arguments: malformedCases)
func malformedEnvelopeIsRefusedNamingFieldAndProblem(_ malformed: MalformedCase) throws {
    let error = try #require(readError(malformed.bytes), "\(malformed.name) was accepted")
    #expect(error.code == malformed.code)
    #expect(error.field == malformed.field)
    for text in malformed.mentions {
        #expect(error.message.contains(text), "message was: \(error.message)")
    }
    // Each thing is said once: one "got", and no word twice in a row ("null null").
    let words = error.message.split(separator: " ")
    #expect(words.filter { $0 == "got" }.count <= 1, "message was: \(error.message)")
    #expect(!zip(words, words.dropFirst()).contains { $0 == $1 && $0.contains(where: \.isLetter) },
            "message was: \(error.message)")
}

@Test func malformedCasesCoverAtLeastTwenty() {
    #expect(malformedCases.count >= 20)
    #expect(Set(malformedCases.map(\.name)).count == malformedCases.count)
}

@Test func errorDescriptionLeadsWithTheField() throws {
    let error = try #require(readError(envelope(#""lease_ttl_sec": -5"#)))
    #expect(error.description == "lease_ttl_sec: expected an integer from 1 to 86400, got an integer -5")
}
