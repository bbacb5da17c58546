import ArgumentParser
import BatonAPI
import BatonCore
import BatonNode
import BatonStore
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals

/// Builds and runs a worker node and its scheduler until SIGTERM/SIGINT.
enum NodeRunner {
    /// - Parameter reload: reads the configuration again (SIGHUP); lane caps apply at once.
    static func run(_ config: BatonConfig, banner: Bool, serveAPI: Bool = false, logLevel: String?,
                    reload: @escaping @Sendable () throws -> BatonConfig) async throws {
        bootstrapLogging(logLevel ?? config.logs.level, format: config.logs.format)
        let logger = Logger(label: "baton")
        let store = try await openStore(config)
        let node = config.node
        let llm = LLMExecutor(store: store, settings: config.models, alerts: .webhook(config.alerts.webhookURL), logger: logger)
        let worker = WorkerNode(
            store: store,
            options: WorkerOptions(nodeID: node.id, region: node.region, tags: node.tags, capacity: node.capacity,
                                   pollIntervalSec: Double(node.pollIntervalMs) / 1000, drainTimeoutSec: node.drainTimeoutSec,
                                   rescueIntervalSec: node.rescueIntervalSec, logDirectory: config.logs.dir,
                                   captureBytes: config.logs.captureBytes, heartbeatIntervalSec: node.heartbeatIntervalSec,
                                   deadAfterMissed: node.deadAfterMissed, configHash: config.configHash,
                                   laneCaps: config.lanes.caps, waitWarnMs: config.lanes.waitWarnMs),
            executors: ExecutorRegistry(llm: llm),
            alerts: .webhook(config.alerts.webhookURL),
            logger: logger)
        if banner {
            logger.info("baton is up", metadata: [
                "store": .string(config.redactedStore), "node.id": .string(node.id),
                "capacity": .stringConvertible(node.capacity),
                "api": .string(config.api.host.map { "http://\($0):\(config.api.port)" } ?? "off"),
                "submit": "baton submit job.json", "list": "baton jobs",
            ])
        }
        let scheduler = Scheduler(store: store, schedules: config.schedules, reader: EnvelopeReader(defaults: config.defaults),
                                  nodeID: node.id, alerts: .webhook(config.alerts.webhookURL), logger: logger)
        let reloader = ConfigReloader(worker: worker, scheduler: scheduler, llm: llm, current: config, load: reload, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: worker), .init(service: scheduler),
                                                                        .init(service: reloader)]
        if serveAPI, let api = try apiServer(config, store: store, logger: logger) { services.append(.init(service: api)) }
        let group = ServiceGroup(configuration: .init(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        try await store.close()
    }
}

/// The API server for `config`, or nil when `api.listen` is off. Without tokens it still
/// serves `/healthz`, `/readyz` and `/openapi.json`, and says so.
func apiServer(_ config: BatonConfig, store: any JobStore, logger: Logger) throws -> APIServer? {
    guard let host = config.api.host else { return nil }
    if config.api.tokens.isEmpty {
        logger.warning("the API has no tokens (api.tokens): every /v1 route and /metrics answer 401")
    }
    // This process's measurements (the worker's, in `baton up`) go to the registry /metrics exports.
    let registry = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(BatonMetricsFactory(registry: registry))
    return try APIServer(store: store, config: config, environment: ProcessInfo.processInfo.environment, logger: logger,
                         registry: registry) { port in
        logger.info("API listening", metadata: ["url": .string("http://\(host):\(port)"), "openapi": "/openapi.json"])
    }
}

/// `baton server`: the HTTP API alone (no worker, no scheduler). It keeps no state, so several
/// may serve one PostgreSQL store.
struct Server: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the HTTP API (api:) against the configured store.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await reporting {
            let config = try global.loadConfig()
            bootstrapLogging(global.logLevel ?? config.logs.level, format: config.logs.format)
            let logger = Logger(label: "baton")
            let store = try await openStore(config)
            guard let api = try apiServer(config, store: store, logger: logger) else {
                try await store.close()
                throw BatonError(.invalidInput, field: "api.listen", "the API is off: expected HOST:PORT to serve it")
            }
            let group = ServiceGroup(configuration: .init(services: [.init(service: api)],
                                                          gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            try await store.close()
        }
    }
}

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an all-in-one node (worker, scheduler and HTTP API) on ./baton.db.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await reporting {
            let global = self.global
            try await NodeRunner.run(try global.loadConfig(), banner: true, serveAPI: true, logLevel: global.logLevel) {
                try global.loadConfig()
            }
        }
    }
}

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a worker node (with its scheduler) against the configured store.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Node id (overrides node.id and BATON_NODE_ID).") var nodeID: String?
    @Option(help: "Jobs run at once (overrides node.capacity).") var capacity: Int?
    @Option(help: "Seconds in-flight jobs may finish after SIGTERM before their leases are released.")
    var drainTimeout: Double?

    func run() async throws {
        try await reporting {
            let config = try loadConfig()
            try await NodeRunner.run(config, banner: false, logLevel: global.logLevel) { try self.loadConfig() }
        }
    }

    /// The configuration with this command's overrides applied (also on reload).
    func loadConfig() throws(BatonError) -> BatonConfig {
        var config = try global.loadConfig()
        if let nodeID {
            guard !nodeID.isEmpty, nodeID.count <= 64, nodeID.allSatisfy(Identifier.isAllowed) else {
                throw BatonError(.invalidInput, field: "--node-id",
                                 "expected letters, digits and - _ . : (at most 64), got \(JSONValue.string(nodeID).preview)")
            }
            config.node.id = nodeID
        }
        if let capacity {
            guard (1...1024).contains(capacity) else {
                throw BatonError(.invalidInput, field: "--capacity", "expected an integer from 1 to 1024, got \(capacity)")
            }
            config.node.capacity = capacity
        }
        if let drainTimeout {
            guard drainTimeout >= 0, drainTimeout <= 86_400 else {
                throw BatonError(.invalidInput, field: "--drain-timeout", "expected seconds from 0 to 86400, got \(drainTimeout)")
            }
            config.node.drainTimeoutSec = drainTimeout
        }
        return config
    }
}

/// Reloads the configuration on SIGHUP: lane caps are published to the cluster at once
/// (running jobs untouched), schedules are written at the scheduler's next pass, providers and
/// model chains apply to the next `llm` call (a call in flight is never cut by a reload). A file that
/// no longer reads is reported and the running configuration kept; settings that need a
/// restart are named.
struct ConfigReloader: Service {
    let worker: WorkerNode
    let scheduler: Scheduler
    let llm: LLMExecutor
    let current: BatonConfig
    let load: @Sendable () throws -> BatonConfig
    let logger: Logger

    func run() async throws {
        var current = self.current
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            let next: BatonConfig
            do {
                next = try load()
            } catch {
                logger.error("configuration reload failed; keeping the running configuration", metadata: ["error": "\(error)"])
                continue
            }
            if next.lanes.caps != current.lanes.caps {
                do {
                    try await worker.publish(laneCaps: next.lanes.caps)
                } catch {
                    logger.error("could not publish the reloaded lane caps", metadata: ["error": "\(error)"])
                    continue
                }
            }
            if next.schedules != current.schedules || next.defaults != current.defaults {
                scheduler.reload(schedules: next.schedules, reader: EnvelopeReader(defaults: next.defaults))
            }
            if next.models != current.models {
                // Calls in flight finish with the settings they began with.
                llm.reload(next.models)
            }
            var needsRestart: [String] = []
            if next.store != current.store { needsRestart.append("store") }
            if next.node != current.node { needsRestart.append("node") }
            if next.logs != current.logs { needsRestart.append("logs") }
            if next.gates != current.gates { needsRestart.append("gates") }
            if next.alerts != current.alerts { needsRestart.append("alerts") }
            if next.lanes.retryHoldsPlace != current.lanes.retryHoldsPlace { needsRestart.append("sessions") }
            if next.lanes.waitWarnMs != current.lanes.waitWarnMs || next.lanes.ageingEverySec != current.lanes.ageingEverySec
                || next.lanes.ageingMaxBoost != current.lanes.ageingMaxBoost { needsRestart.append("queue") }
            if !needsRestart.isEmpty {
                logger.warning("these settings changed but apply only after a restart",
                               metadata: ["sections": .string(needsRestart.joined(separator: ", "))])
            }
            logger.notice("configuration reloaded", metadata: ["config_hash": .string(next.configHash)])
            current = next
        }
    }
}
