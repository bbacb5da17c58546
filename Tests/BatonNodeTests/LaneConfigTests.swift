import BatonCore
import BatonNode
import Foundation
import Testing

/// Lane, agent, session, queue, gate, alert and inbound settings in baton.yaml.
struct LaneConfigTests {
    func load(_ yaml: String) throws(BatonError) -> BatonConfig { try loadYAML(yaml) }

    func failure(_ yaml: String) -> BatonError? { yamlFailure(yaml) }

    @Test func builtInLaneCapsApplyWhenNothingIsConfigured() throws {
        #expect(try load("").lanes.caps == ["main": 4, "cron": 2, "subagent": 8, "nested": 4])
    }

    @Test func agentDefaultsAgentListsAndLanesSetTheCapsWithLanesWinning() throws {
        let config = try load("""
            agents:
              defaults:
                maxConcurrent: 12
                subagents: {maxConcurrent: 16}
                cron: {maxConcurrent: 1}
              list:
                - {id: agent-one, lane: lane-one, laneConcurrency: 10}
                - {id: agent-two, lane: lane-two}
            lanes: {builds: 3, nested: null, lane-one: 5}
            sessions: {retry_holds_place: false}
            queue: {wait_warn_ms: 500, ageing_every_sec: 30, ageing_max_boost: 4}
            messages:
              inbound: {debounceMs: 1500, perChannel: {telegram: {debounceMs: 800}}, dedupeTtlSec: 600, lane: chat,
                        run: {shell: ./turn.sh}}
            gates: {dead_letters: 3, window_sec: 3600}
            alerts: {webhook_url: 'https://hooks.example.com/baton'}
            """)
        #expect(config.lanes.caps == ["main": 12, "subagent": 16, "cron": 1, "lane-one": 5, "builds": 3])
        #expect(config.agents == [AgentSettings(id: "agent-one", lane: "lane-one", laneConcurrency: 10),
                                  AgentSettings(id: "agent-two", lane: "lane-two")])
        #expect(config.lanes.retryHoldsPlace == false)
        #expect(config.lanes.waitWarnMs == 500)
        #expect(config.lanes.ageingEverySec == 30 && config.lanes.ageingMaxBoost == 4)
        #expect(config.inbound.debounceMs(channel: "telegram") == 800)
        #expect(config.inbound.debounceMs(channel: "discord") == 1500)
        #expect(config.inbound.dedupeTTLSec == 600)
        #expect(config.inbound.lane == "chat")
        #expect(config.inbound.run == .shell("./turn.sh"))
        #expect(config.gates == GatePolicy(deadLetters: 3, windowSec: 3600))
        #expect(config.alerts.webhookURL == "https://hooks.example.com/baton")
    }

    @Test func laneCapsAreSharedSettingsSoTheyChangeTheConfigHash() throws {
        #expect(try load("lanes: {main: 4}").configHash == load("").configHash)
        #expect(try load("lanes: {main: 10}").configHash != load("").configHash)
    }

    @Test func badLaneSettingsNameTheFieldAndTheValue() {
        let cases: [(String, String, String)] = [
            ("lanes: {main: 0}", "lanes.main", "expected a cap from 1 to 100000"),
            ("lanes: {main: four}", "lanes.main", #"got a string "four""#),
            ("lanes: [main]", "lanes", "expected a mapping of lane names to caps"),
            ("agents: {defaults: {maxConcurent: 4}}", "agents.defaults.maxConcurent", "did you mean 'maxConcurrent'?"),
            ("agents: {list: [{lane: x}]}", "agents.list[0].id", "is required"),
            ("agents: {list: [{id: a, lane: 'bad lane'}]}", "agents.list[0].lane", "a lane name"),
            ("messages: {inbound: {debounceMs: -1}}", "messages.inbound.debounceMs", "expected an integer"),
            ("messages: {inbound: {run: {shel: x}}}", "messages.inbound.run.shel", "did you mean 'shell'?"),
            ("alerts: {webhook_url: 'ftp://x'}", "alerts.webhook_url", "expected an http:// or https:// URL"),
            ("gates: {window: 3}", "gates.window", "unknown field"),
        ]
        for (yaml, field, mention) in cases {
            let error = failure(yaml)
            #expect(error?.field == field, "\(yaml): \(String(describing: error))")
            #expect(error?.message.contains(mention) == true, "\(yaml): \(error?.message ?? "no error")")
        }
    }
}

/// Loads `yaml` as `baton.yaml` (no environment overrides).
func loadYAML(_ yaml: String) throws(BatonError) -> BatonConfig {
    try ConfigLoader.load(yaml: yaml, source: "baton.yaml", environment: [:])
}

/// The error loading `yaml` fails with, or nil when it loads.
func yamlFailure(_ yaml: String) -> BatonError? {
    do {
        _ = try loadYAML(yaml)
        return nil
    } catch {
        return error
    }
}
