import BatonCore
import BatonNode
import Foundation
import Testing

/// baton.yaml: defaults, validation messages, environment overrides and the drift digest.
struct ConfigTests {
    static let fullExample = """
        store: sqlite:./data/queue.db
        node: {id: mini-01, region: eu-west, tags: [mac, xcode], capacity: 8, poll_interval_ms: 500, drain_timeout_sec: 45, rescue_interval_sec: 1.5}
        defaults: {lane: builds, dedupe_window_sec: 7200, queue_timeout_sec: 600, exec_timeout_sec: 1800, lease_ttl_sec: 30, ttl_sec: 3600, retry: {max_attempts: 3, initial_sec: 2, multiplier: 3, max_sec: 120, jitter: 0.1}}
        logs: {dir: /var/log/baton, capture_bytes: 4096, level: debug}
        sqlite: {synchronous: full, busy_timeout_sec: 10}
        """

    func load(_ yaml: String, environment: [String: String] = [:]) throws(BatonError) -> BatonConfig {
        try ConfigLoader.load(yaml: yaml, source: "baton.yaml", environment: environment)
    }

    /// The error loading `yaml` fails with, or `nil` when it loads.
    func failure(_ yaml: String, environment: [String: String] = [:]) -> BatonError? {
        do {
            _ = try load(yaml, environment: environment)
            return nil
        } catch {
            return error
        }
    }

    @Test func emptyFileMeansAllDefaults() throws {
        #expect(try load("") == BatonConfig.standard)
        #expect(try load("# nothing configured yet\n") == BatonConfig.standard)
        let config = BatonConfig.standard
        #expect(config.store == "sqlite:./baton.db")
        #expect(config.node.capacity == 4)
        #expect(config.node.pollIntervalMs == 250)
        #expect(config.logs.level == "info")
        #expect(config.sqlite.synchronous == "normal")
        #expect(config.defaults == JobDefaults.standard)
        #expect(!config.node.id.isEmpty && config.node.id.allSatisfy(Identifier.isAllowed))
        #expect(!config.node.id.contains("."))
    }

    @Test func fullExampleIsRead() throws {
        let config = try load(Self.fullExample)
        #expect(config.store == "sqlite:./data/queue.db")
        #expect(config.node.id == "mini-01")
        #expect(config.node.region == "eu-west")
        #expect(config.node.tags == ["mac", "xcode"])
        #expect(config.node.capacity == 8)
        #expect(config.node.pollIntervalMs == 500)
        #expect(config.node.drainTimeoutSec == 45)
        #expect(config.node.rescueIntervalSec == 1.5)
        #expect(config.defaults.lane == "builds")
        #expect(config.defaults.dedupeWindowSec == 7200)
        #expect(config.defaults.queueTimeoutSec == 600)
        #expect(config.defaults.execTimeoutSec == 1800)
        #expect(config.defaults.leaseTTLSec == 30)
        #expect(config.defaults.ttlSec == 3600)
        #expect(config.defaults.retry == RetryPolicy(maxAttempts: 3, initialSec: 2, multiplier: 3, maxSec: 120, jitter: 0.1))
        #expect(config.logs == { var l = LogSettings(); l.dir = "/var/log/baton"; l.captureBytes = 4096; l.level = "debug"; return l }())
        #expect(config.sqlite.synchronous == "full")
        #expect(config.sqlite.busyTimeoutSec == 10)
    }

    @Test func blockStyleReadsLikeFlowStyle() throws {
        let config = try load("""
            node:
              id: mini-02
              tags:
                - mac
                - arm64
            logs:
              level: warning
            """)
        #expect(config.node.id == "mini-02")
        #expect(config.node.tags == ["mac", "arm64"])
        #expect(config.logs.level == "warning")
    }

    @Test func unknownTopLevelKeyIsRefusedWithSuggestion() {
        #expect(failure("stor: ./x.db")?.description == "stor: unknown field (did you mean 'store'?)")
    }

    @Test func unknownNestedKeyIsRefusedWithSuggestion() {
        #expect(failure("node: {capacty: 2}")?.description == "node.capacty: unknown field (did you mean 'capacity'?)")
        #expect(failure("defaults: {retry: {max_attempt: 2}}")?.description
                == "defaults.retry.max_attempt: unknown field (did you mean 'max_attempts'?)")
    }

    @Test func wrongTypeNamesFieldValueAndExpectation() {
        let error = failure("node: {capacity: four}")
        #expect(error?.code == .invalidInput)
        #expect(error?.description == "node.capacity: expected an integer from 1 to 1024, got a string \"four\"")
        #expect(failure("node: [a, b]")?.message.hasPrefix("expected an object, got an array") == true)
        #expect(failure("store: 5")?.description
                == "store: expected sqlite:PATH, a path starting with ./, ../ or /, or a postgres:// or postgresql:// URL, got an integer 5")
    }

    @Test func quotedNumbersStayStrings() throws {
        #expect(try load("node: {id: \"123\"}").node.id == "123")
        #expect(failure("node: {capacity: '4'}")?.description
                == "node.capacity: expected an integer from 1 to 1024, got a string \"4\"")
    }

    @Test func yesAndNoAreStringsNotBooleans() throws {
        #expect(try load("node: {region: no}").node.region == "no")
    }

    @Test(arguments: [0, 1025, -3])
    func capacityOutOfRangeIsRefused(capacity: Int) {
        #expect(failure("node: {capacity: \(capacity)}")?.description
                == "node.capacity: expected an integer from 1 to 1024, got an integer \(capacity)")
    }

    @Test func retryMaxBelowInitialIsRefused() {
        let error = failure("defaults: {retry: {initial_sec: 10, max_sec: 5}}")
        #expect(error?.field == "defaults.retry.max_sec")
        #expect(error?.message.contains("no smaller than initial_sec (10)") == true)
    }

    @Test func invalidYAMLReportsLineAndColumn() throws {
        let error = try #require(failure("node:\n  capacity: 4\n  tags: [mac, xcode\nlogs: {}\n"))
        #expect(error.field == "baton.yaml")
        #expect(error.message.hasPrefix("is not valid YAML: line 4, column"))
        let tabs = try #require(failure("node:\n\tcapacity: 4\n"))
        #expect(tabs.message.hasPrefix("is not valid YAML: line 2, column 1:"))
        #expect(tabs.message.hasSuffix("indent with spaces, YAML does not allow tabs there"))
    }

    @Test func duplicateKeysAreRefused() throws {
        let error = try #require(failure("node:\n  capacity: 4\n  capacity: 8\n"))
        #expect(error.field == "baton.yaml")
        #expect(error.message.contains("duplicate key 'capacity'"))
    }

    @Test func nullValueMeansDefault() throws {
        let config = try load("store: ~\nnode:\n  capacity: null\n  region:\nlogs: ~\ndefaults: {queue_timeout_sec: null}\n")
        #expect(config == BatonConfig.standard)
    }

    @Test func logLevelAndSynchronousAreChecked() {
        #expect(failure("logs: {level: warn}")?.description
                == "logs.level: expected one of trace, debug, info, notice, warning, error, critical, got a string \"warn\" (did you mean 'warning'?)")
        #expect(failure("sqlite: {synchronous: off}")?.description
                == "sqlite.synchronous: expected one of normal, full, got a string \"off\"")
    }

    @Test func tagsMustBeDistinctNames() {
        #expect(failure("node: {tags: [mac, 3]}")?.field == "node.tags[1]")
        #expect(failure("node: {tags: [mac, mac]}")?.description == "node.tags[1]: expected each tag once, got \"mac\" twice")
        #expect(failure("node: {tags: [\"has space\"]}")?.field == "node.tags[0]")
    }

    @Test func environmentOverridesWinOverFile() throws {
        let config = try load("store: ./file.db\nnode: {id: from-file, region: eu-west}",
                              environment: ["BATON_NODE_ID": "from-env", "BATON_DB": "/srv/env.db",
                                            "BATON_REGION": "us-east", "UNRELATED": "x y"])
        #expect(config.node.id == "from-env")
        #expect(config.store == "/srv/env.db")
        #expect(config.node.region == "us-east")
    }

    @Test func emptyEnvironmentVariableCountsAsUnset() throws {
        #expect(try load("node: {id: from-file}", environment: ["BATON_NODE_ID": ""]).node.id == "from-file")
    }

    @Test func badNodeIDFromEnvironmentIsRefused() {
        let error = failure("", environment: ["BATON_NODE_ID": "mini 01"])
        #expect(error?.field == "BATON_NODE_ID")
        #expect(error?.message.contains("character ' ' is not allowed") == true)
        #expect(failure("", environment: ["BATON_DB": "baton.db"])?.field == "BATON_DB")
    }

    @Test func storeSourceNamesWhereTheStoreWasSet() throws {
        #expect(BatonConfig.standard.storeSource == "store")
        #expect(try load("store: ./file.db").storeSource == "store")
        #expect(try load("store: ./file.db", environment: ["BATON_DB": "/srv/env.db"]).storeSource == "BATON_DB")
        var config = try load("store: ./file.db")
        try ConfigLoader.overrideStore("sqlite:/srv/cli.db", source: "--db", in: &config)
        #expect(config.store == "sqlite:/srv/cli.db")
        #expect(config.storeSource == "--db")
    }

    @Test func badStoreOverrideIsNamedByItsSource() throws {
        var config = BatonConfig.standard
        let error = #expect(throws: BatonError.self) {
            try ConfigLoader.overrideStore("baton.db", source: "--db", in: &config)
        }
        #expect(error?.field == "--db")
        #expect(error?.message.contains(#"got "baton.db""#) == true)
        #expect(config == BatonConfig.standard)
    }

    @Test(arguments: ["sqlite:./baton.db", "sqlite:/var/lib/baton.db", "./x.db", "../x.db", "/abs/x.db",
                      "postgres://baton@db.internal/baton", "postgresql://u:p@localhost:5432/baton"])
    func acceptedStoreForms(store: String) throws {
        #expect(try load("store: '\(store)'").store == store)
    }

    @Test(arguments: ["", "baton.db", "sqlite:", "postgres://", "mysql://db/baton", " ./x.db"])
    func refusedStoreForms(store: String) throws {
        let error = try #require(failure("store: '\(store)'"))
        #expect(error.field == "store")
        #expect(error.message.contains("expected sqlite:PATH"))
        #expect(error.message.contains("\"\(store)\""))
    }

    @Test func storeErrorsHideThePassword() throws {
        let error = try #require(failure("store: 'mysql://admin:hunter2@db/baton'"))
        #expect(!error.message.contains("hunter2"))
        #expect(error.message.contains("mysql://admin:***@db/baton"))
    }

    @Test func sqlitePathFollowsStore() throws {
        #expect(BatonConfig.standard.sqlitePath == "./baton.db")
        #expect(try load("store: sqlite:/srv/q.db").sqlitePath == "/srv/q.db")
        #expect(try load("store: ../q.db").sqlitePath == "../q.db")
        #expect(try load("store: postgres://db/baton").sqlitePath == nil)
    }

    @Test func configHashTracksSharedSettingsOnly() throws {
        let base = try load(Self.fullExample)
        #expect(base.configHash == (try load(Self.fullExample)).configHash)
        #expect(base.configHash.count == 16 && base.configHash.allSatisfy(\.isHexDigit))

        var otherCapacity = base
        otherCapacity.node.capacity = 2
        #expect(otherCapacity.configHash != base.configHash)

        var otherNode = base
        otherNode.node.id = "mini-02"
        otherNode.node.region = "us-east"
        otherNode.node.tags = ["linux"]
        #expect(otherNode.configHash == base.configHash)

        var otherRetry = base
        otherRetry.defaults.retry.maxAttempts = 9
        #expect(otherRetry.configHash != base.configHash)
    }

    @Test func loadPathReadsFileAndNamesItInErrors() throws {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("baton-config-\(UUID().uuidString.prefix(8)).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "node: {capacity: 6}\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try ConfigLoader.load(path: path, environment: [:]).node.capacity == 6)
        #expect(try ConfigLoader.resolve(path: path, environment: [:]).node.capacity == 6)

        try "node: {capacity: 6\n".write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try ConfigLoader.load(path: path, environment: [:])
            Issue.record("expected invalid YAML to be refused")
        } catch {
            #expect(error.field == path)
        }
    }

    @Test func missingFileIsReportedOnConfig() {
        do {
            _ = try ConfigLoader.load(path: "/nonexistent/baton.yaml", environment: [:])
            Issue.record("expected a missing file to be refused")
        } catch {
            #expect(error.code == .unreadableInput)
            #expect(error.description == "config: cannot read configuration file /nonexistent/baton.yaml: no such file")
        }
    }

    @Test func directoryIsUnreadableButBadBytesAreInvalid() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("baton-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let asDirectory = #expect(throws: BatonError.self) {
            try ConfigLoader.load(path: directory.path, environment: [:])
        }
        #expect(asDirectory?.code == .unreadableInput)
        let binary = directory.appendingPathComponent("baton.yaml")
        try Data([0x6E, 0x3A, 0xFF]).write(to: binary)
        let notUTF8 = #expect(throws: BatonError.self) {
            try ConfigLoader.load(path: binary.path, environment: [:])
        }
        #expect(notUTF8?.code == .invalidInput)
    }

    @Test func schedulesAreReadWithTheirJobsCheckedAndEnterTheConfigHash() throws {
        let yaml = """
            schedules:
              - id: nightly-build
                cron: "0 3 * * 1-5"
                timezone: Europe/Berlin
                job: {stages: [{name: build, run: {shell: make}}]}
              - id: pulse
                every: 30s
                overlap: queue
                job: {stages: [{name: ping, run: {noop: {}}}]}
            """
        let config = try load(yaml)
        #expect(config.schedules.map(\.id) == ["nightly-build", "pulse"])
        #expect(config.schedules[0].trigger.summary == "cron 0 3 * * 1-5 (Europe/Berlin)")
        #expect(config.schedules[1].overlap == .queue && config.schedules[1].lane == "cron")
        #expect(config.configHash != BatonConfig.standard.configHash, "nodes with different schedules show drift")
    }

    @Test func badSchedulesNameTheField() {
        #expect(failure("schedules: [{id: a, every: 1m, job: {stages: [{name: s, run: {noop: {}}}]}}, {id: a, every: 2m, job: {stages: [{name: s, run: {noop: {}}}]}}]")?
            .description == "schedules[1].id: expected an id unique among the schedules, got \"a\" twice")
        #expect(failure("schedules: [{id: a, cron: '61 * * * *', job: {stages: [{name: s, run: {noop: {}}}]}}]")?
            .description == "schedules[0].cron: minute field \"61\": 61 is outside 0-59")
        #expect(failure("schedules: [{id: a, every: 1m, job: {stages: [{name: s, run: {nope: {}}}]}}]")?.field?
            .hasPrefix("schedules[0].job.stages[0].run") == true)
    }
}
