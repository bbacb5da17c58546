import BatonCore
import BatonStore
import Foundation
import Testing

/// Short-hands the cases share, so each case reads as the promise it checks.
extension StoreHarness {
    /// A job of `stages` no-op stages with short, explicit timings, id sortable by the clock.
    func spec(stages: Int = 1, id: String? = nil, key: String? = nil, dedupeWindowSec: Int = 3600, lane: String = "main",
              region: String? = nil, regionFallbackAfterSec: Int? = nil, priority: Int = 0, queueTimeoutSec: Int? = nil, leaseTTLSec: Int = 30,
              ttlSec: Int = 86_400, retry: RetryPolicy = .standard) -> JobSpec {
        JobSpec(id: id ?? JobID.make(at: clock.now), idempotencyKey: key, dedupeWindowSec: dedupeWindowSec, lane: lane,
                regionAffinity: region, regionFallbackAfterSec: regionFallbackAfterSec, priority: priority,
                stages: (1...stages).map { StageSpec(name: "s\($0)", run: .noop) },
                queueTimeoutSec: queueTimeoutSec, leaseTTLSec: leaseTTLSec, ttlSec: ttlSec, retry: retry)
    }

    /// Enqueues one job and returns its id.
    @discardableResult
    func enqueue(_ spec: JobSpec) async throws -> String {
        let result = try await store.enqueue(spec)
        #expect(result.deduplicated == false)
        return result.jobID
    }

    /// Claims exactly one job for `node`, failing the case when there is none.
    func claimOne(_ node: String, region: String? = nil,
                  sourceLocation: SourceLocation = #_sourceLocation) async throws -> Lease {
        let leases = try await store.claim(ClaimRequest(nodeID: node, region: region, limit: 1))
        return try #require(leases.first, "expected \(node) to claim a job", sourceLocation: sourceLocation)
    }

    /// The stored job, failing the case when it is missing.
    func record(_ id: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> JobRecord {
        try #require(try await store.job(id: id), "job \(id) should exist", sourceLocation: sourceLocation)
    }

    func detail(_ id: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> JobDetail {
        try #require(try await store.detail(id: id), "job \(id) should have a detail", sourceLocation: sourceLocation)
    }

    func eventKinds(_ id: String) async throws -> [JobEvent.Kind] {
        try await store.events(jobID: id).map(\.kind)
    }

    func events(_ id: String, _ kind: JobEvent.Kind) async throws -> [JobEvent] {
        try await store.events(jobID: id).filter { $0.kind == kind }
    }

    /// A node's self-description for registry cases: heartbeat every `interval` seconds, dead
    /// after `missed` silent intervals.
    func node(_ id: String, instance: String? = nil, host: String = "host-1", pid: Int32 = 4242, region: String? = nil,
              interval: Double = 1, missed: Int = 3, configHash: String = "0123456789abcdef") -> NodeInfo {
        NodeInfo(id: id, instance: instance ?? "\(id)-1", host: host, pid: pid, region: region, tags: ["gpu", "mac"],
                 capacity: 8, version: "0.1.0", configHash: configHash, heartbeatIntervalSec: interval,
                 deadAfterSec: NodeHealth.deadAfter(intervalSec: interval, missed: missed))
    }

    /// Registers `info`, failing the case unless it was accepted; returns what it replaced and rescued.
    @discardableResult
    func register(_ info: NodeInfo, replacing: String? = nil,
                  sourceLocation: SourceLocation = #_sourceLocation) async throws -> (previous: NodeRecord?, rescued: [String]) {
        switch try await store.registerNode(info, replacing: replacing) {
        case .registered(let record, let previous, let rescued):
            #expect(record.info == info, sourceLocation: sourceLocation)
            #expect(record.state == .live, sourceLocation: sourceLocation)
            return (previous, rescued)
        case .conflict(let existing):
            Issue.record("registration of \(info.id) refused: held by instance \(existing.info.instance)", sourceLocation: sourceLocation)
            return (nil, [])
        }
    }

    func nodeRecord(_ id: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> NodeRecord {
        try #require(try await store.nodes().first { $0.id == id }, "node \(id) should be registered", sourceLocation: sourceLocation)
    }

    /// Moves the clock past a lease's expiry.
    func expire(_ lease: Lease) {
        clock.set(lease.expiresAt.addingTimeInterval(1))
    }

    /// Claims a job and lets its lease run out, then runs the rescuer: the job is queued again.
    func claimAndLose(_ node: String) async throws -> Lease {
        let lease = try await claimOne(node)
        expire(lease)
        _ = try await store.rescue()
        return lease
    }

    /// Claims a job and completes every stage of it.
    func runToSuccess(_ node: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        var lease = try await claimOne(node, sourceLocation: sourceLocation)
        while true {
            switch try await store.complete(lease) {
            case .succeeded: return lease.jobID
            case .nextStage(let next): lease = next
            case .handedOff(let stage):
                Issue.record("stage \(stage) was handed off; claim it from a node that may run it", sourceLocation: sourceLocation)
                return lease.jobID
            case .refused(let error):
                Issue.record("completion refused: \(error)", sourceLocation: sourceLocation)
                return lease.jobID
            }
        }
    }
}

/// Fails the case unless `body` throws a `BatonError` with `code`.
func expectError(_ code: BatonError.Code, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected \(what) to throw \(code), but it succeeded", sourceLocation: sourceLocation)
    } catch let error as BatonError {
        #expect(error.code == code, "\(what) threw \(error.code) (\(error)), expected \(code)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(what) to throw BatonError \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

/// Milliseconds since 1970 (what stores persist): exact comparisons of stored times.
func ms(_ date: Date?) -> Int64? { date?.epochMilliseconds }

/// True when `event` names `node`, as its writer or in its detail (`from_node`, ...).
func names(_ event: JobEvent, _ node: String) -> Bool {
    event.nodeID == node || event.detail.values.contains(node)
}

extension CompletionResult {
    var refusal: BatonError? {
        if case .refused(let error) = self { error } else { nil }
    }

    var nextLease: Lease? {
        if case .nextStage(let lease) = self { lease } else { nil }
    }
}

extension HeartbeatResult {
    var isLost: Bool {
        if case .lost = self { true } else { false }
    }
}
