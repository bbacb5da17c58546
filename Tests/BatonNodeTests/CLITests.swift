import BatonCore
import BatonSQLite
import BatonStore
import Foundation
import Testing

/// The `baton` executable as users run it.
@Suite(.serialized)
struct CLITests {
    /// Twenty malformed submissions: each is refused with a message naming the field, and the
    /// store stays empty (a bad batch stores nothing, not even its valid envelopes).
    static let malformed: [(String, String, String)] = [
        ("unknown field", #"{"stages":[{"name":"a","run":{"noop":true}}],"prioritty":1}"#, "prioritty"),
        ("unknown stage field", #"{"stages":[{"name":"a","run":{"noop":true},"timeout":5}]}"#, "stages[0].timeout"),
        ("unknown retry field", #"{"stages":[{"name":"a","run":{"noop":true}}],"retry":{"attempts":3}}"#, "retry.attempts"),
        ("priority as string", #"{"stages":[{"name":"a","run":{"noop":true}}],"priority":"high"}"#, "priority"),
        ("negative lease ttl", #"{"stages":[{"name":"a","run":{"noop":true}}],"lease_ttl_sec":-5}"#, "lease_ttl_sec"),
        ("zero exec timeout", #"{"stages":[{"name":"a","run":{"noop":true}}],"exec_timeout_sec":0}"#, "exec_timeout_sec"),
        ("negative queue timeout", #"{"stages":[{"name":"a","run":{"noop":true}}],"queue_timeout_sec":-1}"#, "queue_timeout_sec"),
        ("negative stage timeout", #"{"stages":[{"name":"a","run":{"noop":true},"timeout_sec":-3}]}"#, "stages[0].timeout_sec"),
        ("empty stages", #"{"stages":[]}"#, "stages"),
        ("missing stages", #"{"lane":"main"}"#, "stages"),
        ("stage without name", #"{"stages":[{"run":{"noop":true}}]}"#, "stages[0].name"),
        ("two run kinds", #"{"stages":[{"name":"a","run":{"noop":true,"shell":"true"}}]}"#, "stages[0].run"),
        ("duplicate stage names", #"{"stages":[{"name":"a","run":{"noop":true}},{"name":"a","run":{"noop":true}}]}"#, "stages[1].name"),
        ("zero max attempts", #"{"stages":[{"name":"a","run":{"noop":true}}],"retry":{"max_attempts":0}}"#, "retry.max_attempts"),
        ("jitter above 1", #"{"stages":[{"name":"a","run":{"noop":true}}],"retry":{"jitter":1.5}}"#, "retry.jitter"),
        ("huge payload", #"{"stages":[{"name":"a","run":{"noop":true}}],"payload":{"blob":"\#(String(repeating: "x", count: 300_000))"}}"#, "payload"),
        ("schema_version 99", #"{"schema_version":99,"stages":[{"name":"a","run":{"noop":true}}]}"#, "schema_version"),
        ("not JSON", #"{"stages": [}"#, "(document)"),
        ("lane with a slash", #"{"stages":[{"name":"a","run":{"noop":true}}],"lane":"a/b"}"#, "lane"),
        ("bad element in a batch", #"[{"stages":[{"name":"a","run":{"noop":true}}]},{"stages":[{"name":"a","run":{"sleep":-1}}]}]"#, "[1].stages[0].run.sleep"),
    ]

    @Test func malformedEnvelopesAreRefusedByNameAndStoreNothing() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        var cases = Self.malformed.map { ($0.0, Data($0.1.utf8), $0.2) }
        cases.append(("invalid UTF-8", Data([0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x7D]), "(document)"))
        for (name, data, field) in cases {
            let file = h.directory.appendingPathComponent("bad.json")
            try data.write(to: file)
            let (status, output) = try await h.cli(["submit", "--db", h.dbPath, file.path])
            #expect(status == 65, "\(name): exit status \(status), output: \(output)")
            #expect(output.contains("error: \(field):"), "\(name): expected the field \(field) in: \(output)")
        }
        #expect(try await h.store.counts().values.reduce(0, +) == 0)
    }

    @Test func submitListShowAndCancelAJob() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let envelope = #"{"job_id":"build-1","idempotency_key":"repo:acme:commit:9c1b","stages":[{"name":"compile","run":{"shell":"true"}},{"name":"upload","run":{"noop":true}}]}"#
        let first = try await h.cli(["submit", "--db", h.dbPath, "-"], stdin: Data(envelope.utf8))
        #expect(first.status == 0)
        #expect(first.output.contains("build-1  enqueued"))
        let again = try await h.cli(["submit", "--db", h.dbPath, "--json", "-"], stdin: Data(envelope.utf8))
        #expect(again.output.contains("\"deduplicated\" : true"))

        let list = try await h.cli(["jobs", "--db", h.dbPath])
        #expect(list.output.contains("build-1"))
        #expect(list.output.contains("queued"))
        let json = try await h.cli(["jobs", "--db", h.dbPath, "--json", "--state", "queued"])
        let parsed = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [[String: Any]]
        #expect(parsed?.first?["job_id"] as? String == "build-1")

        let show = try await h.cli(["show", "--db", h.dbPath, "build-1"])
        #expect(show.output.contains("compile"))
        #expect(show.output.contains("deduplicated"))

        #expect(try await h.cli(["cancel", "--db", h.dbPath, "build-1"]).status == 0)
        #expect(try await h.store.job(id: "build-1")?.state == .cancelled)
        let twice = try await h.cli(["cancel", "--db", h.dbPath, "build-1"])
        #expect(twice.status == 1)
        #expect(twice.output.contains("already cancelled"))
        let missing = try await h.cli(["show", "--db", h.dbPath, "nope"])
        #expect(missing.status == 1)
    }

    @Test func deadLettersAreListedAndRedriven() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let marker = h.directory.appendingPathComponent("fixed").path
        // Fails fatally until the marker file exists, i.e. until "the cause is fixed".
        let spec = JobSpec(id: "flaky-1", stages: [StageSpec(name: "only", run: .shell("test -f \(marker)"))],
                           retry: RetryPolicy(maxAttempts: 3, initialSec: 0.1, jitter: 0))
        _ = try await h.store.enqueue(spec)
        let worker = try h.startWorker("dlq-a")
        try await h.waitUntil(timeout: 30, "the job to be dead-lettered") {
            try await h.store.job(id: "flaky-1")?.state == .dead
        }
        let list = try await h.cli(["dlq", "list", "--db", h.dbPath])
        #expect(list.output.contains("flaky-1"))
        #expect(list.output.contains("exit_code"))
        _ = FileManager.default.createFile(atPath: marker, contents: nil)
        #expect(try await h.cli(["dlq", "redrive", "--db", h.dbPath, "flaky-1"]).status == 0)
        try await h.waitUntil(timeout: 30, "the redriven job to succeed") {
            try await h.store.job(id: "flaky-1")?.state == .succeeded
        }
        #expect(try await h.cli(["dlq", "redrive", "--db", h.dbPath]).status == 64)
        h.signal(worker, SIGTERM)
    }

    @Test func badStoreIsNamedWhereItWasSet() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let fromOption = try await h.cli(["config", "check", "--db", "baton.db"])
        #expect(fromOption.status == 65)
        #expect(fromOption.output.contains(#"error: --db: expected sqlite:PATH"#), "output: \(fromOption.output)")
        let fromEnvironment = try await h.cli(["config", "check"], environment: ["BATON_DB": "baton.db"])
        #expect(fromEnvironment.status == 65)
        #expect(fromEnvironment.output.contains("error: BATON_DB: expected sqlite:PATH"), "output: \(fromEnvironment.output)")
        let path = h.directory.appendingPathComponent("store.yaml").path
        try "store: baton.db\n".write(toFile: path, atomically: true, encoding: .utf8)
        let fromFile = try await h.cli(["config", "check", "--config", path])
        #expect(fromFile.status == 65)
        #expect(fromFile.output.contains("error: store: expected sqlite:PATH"), "output: \(fromFile.output)")
    }

    @Test func dbOptionReplacesABadBatonDB() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let result = try await h.cli(["jobs", "--db", h.dbPath], environment: ["BATON_DB": "baton.db"])
        #expect(result.status == 0, "output: \(result.output)")
    }

    @Test func storeThatCannotBeOpenedIsNamedWhereItWasSet() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let unopenable = h.directory.appendingPathComponent("missing/dir/baton.db").path
        let fromOption = try await h.cli(["jobs", "--db", unopenable])
        #expect(fromOption.status == 69)
        #expect(fromOption.output.contains("error: --db: cannot open SQLite database"), "output: \(fromOption.output)")
        let fromEnvironment = try await h.cli(["jobs"], environment: ["BATON_DB": unopenable])
        #expect(fromEnvironment.status == 69)
        #expect(fromEnvironment.output.contains("error: BATON_DB: cannot open SQLite database"), "output: \(fromEnvironment.output)")
    }

    /// The help's exit codes: 66 when an input file cannot be read, 65 when its content is invalid.
    @Test func unreadableInputExits66AndInvalidInputExits65() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let help = try await h.cli(["--help"])
        let helpText = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(helpText.contains("65 invalid envelope or configuration; 66 input file unreadable"))

        let missing = try await h.cli(["config", "check", "--config", h.directory.appendingPathComponent("nope.yaml").path])
        #expect(missing.status == 66, "output: \(missing.output)")
        #expect(missing.output.contains("cannot read configuration file"))
        let directory = try await h.cli(["config", "check", "--config", h.directory.path])
        #expect(directory.status == 66, "output: \(directory.output)")
        let missingEnvelope = try await h.cli(["submit", "--db", h.dbPath, h.directory.appendingPathComponent("nope.json").path])
        #expect(missingEnvelope.status == 66, "output: \(missingEnvelope.output)")
        #expect(missingEnvelope.output.contains("nope.json: cannot read the file"))

        let notUTF8 = h.directory.appendingPathComponent("binary.yaml")
        try Data([0x6E, 0x3A, 0xFF]).write(to: notUTF8)
        #expect(try await h.cli(["config", "check", "--config", notUTF8.path]).status == 65)
        let notYAML = h.directory.appendingPathComponent("broken.yaml").path
        try "node: {capacity: 4\n".write(toFile: notYAML, atomically: true, encoding: .utf8)
        #expect(try await h.cli(["config", "check", "--config", notYAML]).status == 65)
    }

    @Test func configCheckNamesUnknownKeysWithASuggestion() async throws {
        let h = try await ProcessHarness()
        defer { h.finish() }
        let path = h.directory.appendingPathComponent("baton.yaml").path
        try "node:\n  capacty: 4\n".write(toFile: path, atomically: true, encoding: .utf8)
        let bad = try await h.cli(["config", "check", "--config", path])
        #expect(bad.status == 65)
        #expect(bad.output.contains("node.capacty"))
        #expect(bad.output.contains("capacity"))
        try "node:\n  capacity: 8\n".write(toFile: path, atomically: true, encoding: .utf8)
        let good = try await h.cli(["config", "check", "--config", path])
        #expect(good.status == 0)
        #expect(good.output.contains("node.capacity"))
    }
}
