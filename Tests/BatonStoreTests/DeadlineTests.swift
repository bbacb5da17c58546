@testable import BatonPostgres
import BatonCore
import Foundation
import Synchronization
import Testing

/// The bound on one PostgreSQL operation: a hung driver call must not hold its caller.
struct DeadlineTests {
    @Test func fastOperationReturnsItsValue() async throws {
        let value = try await Deadline.run(seconds: 5, what: "a test") { _ in 42 }
        #expect(value == 42)
    }

    @Test func errorOfTheOperationIsPassedOn() async {
        await #expect(throws: BatonError.self) {
            try await Deadline.run(seconds: 5, what: "a test") { _ async throws -> Int in
                throw BatonError(.notFound, "gone")
            }
        }
    }

    @Test func operationThatNeverEndsIsAbandonedAtItsDeadlineEvenIfItIgnoresCancellation() async throws {
        let parked = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let started = Date()
        do {
            _ = try await Deadline.run(seconds: 0.3, what: "a hung statement") { _ async throws -> Int in
                // Ignores cancellation: only the deadline can free the caller.
                await withCheckedContinuation { continuation in parked.withLock { $0 = continuation } }
                return 1
            }
            Issue.record("a hung operation returned")
        } catch let error as BatonError {
            #expect(error.code == .storeUnavailable)
            #expect(error.message.contains("a hung statement did not finish within 0.3 s"))
        }
        // The operation never ends: returning at all proves the deadline; the bound only has to
        // stay clear of a loaded CI machine's scheduling delays.
        #expect(Date().timeIntervalSince(started) < 20)
        parked.withLock { $0?.resume(); $0 = nil }
    }

    @Test func operationAbandonedByItsBodyEndsAtOnceWithTheGivenError() async throws {
        let parked = Mutex<CheckedContinuation<Void, Never>?>(nil)
        do {
            _ = try await Deadline.run(seconds: 30, what: "a statement on a closed connection") { abandon async throws -> Int in
                // Like a statement postgres-nio never answers: only the abandon frees the caller.
                await withCheckedContinuation { continuation in
                    parked.withLock { $0 = continuation }
                    abandon.fail(BatonError(.storeUnavailable, field: "store", "the connection closed"))
                }
                return 1
            }
            Issue.record("an abandoned operation returned")
        } catch let error as BatonError {
            #expect(error.message == "the connection closed")
        }
        parked.withLock { $0?.resume(); $0 = nil }
    }

    @Test func cancellingTheCallerCancelsTheOperation() async throws {
        let task = Task {
            try await Deadline.run(seconds: 30, what: "a long statement") { _ async throws -> Int in
                try await Task.sleep(for: .seconds(30))
                return 1
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        let started = Date()
        task.cancel()
        await #expect(throws: (any Error).self) { try await task.value }
        // Well before the operation's own 30 s.
        #expect(Date().timeIntervalSince(started) < 15)
    }
}
