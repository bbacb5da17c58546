import BatonNode
import CoreMetrics
import Prometheus

/// swift-metrics into swift-prometheus, with the help text and buckets Baton's own metrics
/// declare (`NodeMetrics.catalog`): Prometheus's linter (`promtool check metrics`) wants help
/// on every metric, and the stock factory registers none. Anything else goes to the stock
/// factory unchanged.
public struct BatonMetricsFactory: CoreMetrics.MetricsFactory {
    let base: PrometheusMetricsFactory

    public init(registry: PrometheusCollectorRegistry) {
        base = PrometheusMetricsFactory(registry: registry)
    }

    var registry: PrometheusCollectorRegistry { base.registry }

    func descriptor(_ label: String) -> MetricNameDescriptor? {
        NodeMetrics.catalog[label].map { MetricNameDescriptor(metricName: label, unitName: "", helpText: $0.help) }
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        guard let descriptor = descriptor(label) else { return base.makeCounter(label: label, dimensions: dimensions) }
        return registry.makeCounter(descriptor: descriptor, labels: dimensions)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        guard let descriptor = descriptor(label), let buckets = NodeMetrics.catalog[label]?.bucketsSec else {
            return base.makeTimer(label: label, dimensions: dimensions)
        }
        return registry.makeDurationHistogram(descriptor: descriptor, labels: dimensions,
                                              buckets: buckets.map { .nanoseconds(Int64($0 * 1e9)) })
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        base.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        base.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate)
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        base.makeMeter(label: label, dimensions: dimensions)
    }

    public func destroyCounter(_ handler: any CounterHandler) { base.destroyCounter(handler) }
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { base.destroyFloatingPointCounter(handler) }
    public func destroyRecorder(_ handler: any RecorderHandler) { base.destroyRecorder(handler) }
    public func destroyMeter(_ handler: any MeterHandler) { base.destroyMeter(handler) }
    public func destroyTimer(_ handler: any TimerHandler) { base.destroyTimer(handler) }
}
