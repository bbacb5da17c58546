import ArgumentParser
import BatonCore
import BatonNode
import BatonStore
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// Builds and runs a worker node until SIGTERM/SIGINT.
enum NodeRunner {
    static func run(_ config: BatonConfig, banner: Bool, logLevel: String?) async throws {
        bootstrapLogging(logLevel ?? config.logs.level)
        let logger = Logger(label: "baton")
        let store = try await openStore(config)
        let node = config.node
        let worker = WorkerNode(
            store: store,
            options: WorkerOptions(nodeID: node.id, region: node.region, tags: node.tags, capacity: node.capacity,
                                   pollIntervalSec: Double(node.pollIntervalMs) / 1000, drainTimeoutSec: node.drainTimeoutSec,
                                   rescueIntervalSec: node.rescueIntervalSec, logDirectory: config.logs.dir,
                                   captureBytes: config.logs.captureBytes, heartbeatIntervalSec: node.heartbeatIntervalSec,
                                   deadAfterMissed: node.deadAfterMissed, configHash: config.configHash),
            alerts: .webhook(config.alerts.webhookURL),
            logger: logger)
        if banner {
            logger.info("baton is up", metadata: [
                "store": .string(config.redactedStore), "node.id": .string(node.id),
                "capacity": .stringConvertible(node.capacity),
                "submit": "baton submit job.json", "list": "baton jobs",
            ])
        }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: worker)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        try await store.close()
    }
}

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an all-in-one node (worker and, as they land, API and scheduler) on ./baton.db.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await reporting {
            try await NodeRunner.run(try global.loadConfig(), banner: true, logLevel: global.logLevel)
        }
    }
}

struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a worker node against the configured store.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Node id (overrides node.id and BATON_NODE_ID).") var nodeID: String?
    @Option(help: "Jobs run at once (overrides node.capacity).") var capacity: Int?
    @Option(help: "Seconds in-flight jobs may finish after SIGTERM before their leases are released.")
    var drainTimeout: Double?

    func run() async throws {
        try await reporting {
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
            try await NodeRunner.run(config, banner: false, logLevel: global.logLevel)
        }
    }
}
