import BatonCore
import BatonStore
import Testing

/// Makes the store one conformance case runs against: migrated, empty, isolated from every
/// other case, and reading the time only from the given clock. Jitter may stay random: cases
/// assert backoff within `RetryPolicy.delayBounds`.
public typealias StoreFactory = @Sendable (ManualClock) async throws -> any JobStore

/// What a conformance case works with: the store under test and the clock it reads.
public struct StoreHarness: Sendable {
    public let store: any JobStore
    public let clock: ManualClock

    public init(store: any JobStore, clock: ManualClock) {
        self.store = store
        self.clock = clock
    }
}

/// One promise of the `JobStore` contract, checked against a fresh store.
///
/// Engines run every case from their own test target:
/// ```swift
/// @Test(arguments: JobStoreConformance.cases)
/// func sqlite(_ c: ConformanceCase) async throws { try await c.run(sqliteFactory) }
/// ```
public struct ConformanceCase: Sendable, CustomTestStringConvertible {
    /// The promise, stated as a name (`staleCompletionIsRefusedAndLogged`).
    public let name: String
    let body: @Sendable (StoreHarness) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (StoreHarness) async throws -> Void) {
        self.name = name
        self.body = body
    }

    public var testDescription: String { name }

    /// Runs the case against a fresh store from `factory`, closing the store afterwards even
    /// when the case fails.
    public func run(_ factory: StoreFactory) async throws {
        let clock = ManualClock()
        let store = try await factory(clock)
        do {
            try await body(StoreHarness(store: store, clock: clock))
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }
}

/// The suite every `JobStore` engine passes. A behaviour only one engine has is a bug.
public enum JobStoreConformance {
    public static let cases: [ConformanceCase] =
        enqueueCases + idempotencyCases + claimCases + heartbeatCases + completionCases + failureCases
        + releaseCases + rescueCases + cancelCases + redriveCases + queryCases + fencingCases + nodeCases
        + handoverCases + chainCases + laneCases + inboundCases + scheduleCases + healthCases + modelCases
}
