import ArgumentParser
import BatonCore
import BatonNode
import BatonStore
import Foundation

struct Models: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Model providers, the chains of the agents, and the cooldowns every node shares.",
        subcommands: [ModelsList.self, ModelsClear.self], defaultSubcommand: ModelsList.self)
}

struct ModelsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Show providers (and whether this host has their key), model chains and cooldowns.")

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await reporting {
            let config = try global.loadConfig()
            let cooldowns = try await global.withStore { store in try await store.modelCooldowns() }
            let now = Date()
            let environment = ProcessInfo.processInfo.environment
            let models = config.models
            func keyState(_ provider: ProviderSettings) -> String {
                guard let name = provider.apiKeyEnv else { return "none needed" }
                return environment[name].map { $0.isEmpty ? "\(name) empty" : "\(name) set" } ?? "\(name) missing"
            }
            var chains: [(String, ModelChain)] = models.defaultChain.map { [("agents.defaults", $0)] } ?? []
            chains += models.agentChains.sorted { $0.key < $1.key }.map { ("agent \($0.key)", $0.value) }
            if json { return printJSON(models.report(cooldowns: cooldowns, now: now, keyState: keyState)) }
            var providers = Table("PROVIDER", "KIND", "BASE URL", "API KEY ON THIS HOST")
            for provider in models.providers {
                providers.add(provider.name, provider.kind.rawValue, provider.baseURL, keyState(provider))
            }
            print(models.providers.isEmpty ? "no providers (providers: in baton.yaml)" : providers.render())
            if !chains.isEmpty {
                var table = Table("CHAIN", "PRIMARY", "FALLBACKS")
                for (name, chain) in chains {
                    table.add(name, chain.primary.description, chain.fallbacks.map(\.description).joined(separator: ", "))
                }
                print("\n" + table.render())
            }
            var rests = Table("MODEL", "STATE", "REASON", "LEVEL", "UNTIL", "LEFT", "FAILURES", "LAST NODE")
            for rest in cooldowns {
                rests.add("\(rest.provider)/\(rest.model)", rest.isActive(at: now) ? "cooling down" : "ended", rest.reason,
                          String(rest.level), Format.time(rest.until),
                          rest.isActive(at: now) ? Format.duration(rest.until.timeIntervalSince(now)) : "-",
                          String(rest.failures), rest.nodeID ?? "-")
            }
            print("\n" + (cooldowns.isEmpty ? "no cooldowns" : rests.render()))
        }
    }
}

struct ModelsClear: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clear",
        abstract: "Lift cooldowns now: PROVIDER (every model and the provider hold) or PROVIDER/MODEL (PROVIDER/* is the hold).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "PROVIDER or PROVIDER/MODEL.") var target: String

    func run() async throws {
        try await reporting {
            let (provider, model): (String, String?)
            if target.contains("/") {
                let ref = try ModelRef.parse(target, field: "target")
                (provider, model) = (ref.provider, ref.model)
            } else {
                guard !target.isEmpty, target.allSatisfy(Identifier.isAllowed) else {
                    throw BatonError(.invalidInput, field: "target",
                                     "expected PROVIDER or PROVIDER/MODEL, got \(JSONValue.string(target).preview)")
                }
                (provider, model) = (target, nil)
            }
            let cleared = try await global.withStore { store in
                try await store.clearModelCooldowns(provider: provider, model: model)
            }
            print(cleared == 0 ? "nothing to clear for \(target)" : "cleared \(cleared) cooldown\(cleared == 1 ? "" : "s") of \(target)")
        }
    }
}
