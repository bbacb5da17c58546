import BatonCore
import BatonStore
import Foundation
import Prometheus
import Synchronization

/// `/metrics`: what this process measured (through swift-metrics, into `registry`) and the
/// cluster's state read from the store at each scrape: queue depth, running jobs and the
/// oldest ready job's age per lane, and nodes per health.
final class MetricsExport: Sendable {
    let registry: PrometheusCollectorRegistry
    let store: any JobStore
    /// Label values set at an earlier scrape: a lane or state gone since reads 0, not its last value.
    private let seen = Mutex<[String: Set<String>]>([:])

    init(registry: PrometheusCollectorRegistry, store: any JobStore) {
        self.registry = registry
        self.store = store
    }

    func scrape() async throws -> String {
        let lanes = try await store.lanes()
        set("baton_queue_depth", label: "lane", lanes.map { ($0.name, Double($0.waiting)) },
            help: "Jobs waiting in the lane (queued or in backoff), across the cluster.")
        set("baton_jobs_running", label: "lane", lanes.map { ($0.name, Double($0.running)) },
            help: "Jobs running in the lane, across the cluster.")
        set("baton_oldest_job_age_seconds", label: "lane", lanes.map { ($0.name, $0.oldestReadySec ?? 0) },
            help: "How long the lane's oldest ready job has waited.")
        let nodes = NodeReport(nodes: try await store.nodes(), now: Date()).rows
        let states = ["healthy", "late", "dead", "stopped"]
        set("baton_nodes", label: "state", states.map { state in (state, Double(nodes.filter { $0.health.rawValue == state }.count)) },
            help: "Registered nodes by health.")
        let now = Date()
        set("baton_model_cooldown_seconds", label: "model",
            try await store.modelCooldowns().map { ("\($0.provider)/\($0.model)", max(0, $0.until.timeIntervalSince(now))) },
            help: "Seconds until a model (provider/model; provider/* for a held provider) may be called again; 0 when it may.")
        return registry.emitToString()
    }

    private func set(_ name: String, label: String, _ values: [(String, Double)], help: String) {
        let current = Set(values.map(\.0))
        let previous = seen.withLock { seen in
            defer { seen[name, default: []].formUnion(current) }
            return seen[name] ?? []
        }
        let descriptor = MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        for (value, number) in values {
            registry.makeGauge(descriptor: descriptor, labels: [(label, value)]).set(to: number)
        }
        for gone in previous.subtracting(current) {
            registry.makeGauge(descriptor: descriptor, labels: [(label, gone)]).set(to: 0)
        }
    }
}
