import BatonCore
import Foundation
import Synchronization

/// Bounds how long one store operation may wait on the driver. An operation that outlives its
/// deadline is cancelled and reported as `storeUnavailable`, and the caller gets its answer
/// on time even when the operation ignores the cancellation: a lease request lost in the
/// pool while the server restarted must not pin a job to a node forever (its heartbeats go
/// on through other connections, so the lease would never run out).
enum Deadline {
    static func run<T: Sendable>(seconds: Double, what: @autoclosure () -> String,
                                 _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let description = what()
        let outcome = Outcome<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                outcome.install(continuation)
                let work = Task {
                    do { outcome.finish(.success(try await body())) } catch { outcome.finish(.failure(error)) }
                }
                outcome.onCancel { work.cancel() }
                Task {
                    try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                    let timedOut = BatonError(.storeUnavailable, field: "store",
                                              "\(description) did not finish within \(String(format: "%g", seconds)) s; the connection was abandoned")
                    if outcome.finish(.failure(timedOut)) { work.cancel() }
                }
            }
        } onCancel: {
            outcome.cancel()
        }
    }

    /// Resumes the caller once, with whichever comes first.
    final class Outcome<T: Sendable>: Sendable {
        private struct State {
            var continuation: CheckedContinuation<T, any Error>?
            var early: Result<T, any Error>?
            var cancelHandlers: [@Sendable () -> Void] = []
            var cancelled = false
            var done = false
        }

        private let state = Mutex(State())

        func install(_ continuation: CheckedContinuation<T, any Error>) {
            let early = state.withLock { state -> Result<T, any Error>? in
                if let early = state.early { return early }
                state.continuation = continuation
                return nil
            }
            if let early { continuation.resume(with: early) }
        }

        /// Returns true when this call decided the outcome.
        @discardableResult
        func finish(_ result: Result<T, any Error>) -> Bool {
            let continuation = state.withLock { state -> CheckedContinuation<T, any Error>?? in
                guard !state.done else { return .none }
                state.done = true
                guard let continuation = state.continuation else {
                    state.early = result
                    return .some(nil)
                }
                state.continuation = nil
                return .some(continuation)
            }
            switch continuation {
            case .none: return false
            case .some(let c): c?.resume(with: result); return true
            }
        }

        func onCancel(_ handler: @escaping @Sendable () -> Void) {
            let now = state.withLock { state -> Bool in
                if state.cancelled { return true }
                state.cancelHandlers.append(handler)
                return false
            }
            if now { handler() }
        }

        func cancel() {
            let handlers = state.withLock { state -> [@Sendable () -> Void] in
                state.cancelled = true
                defer { state.cancelHandlers = [] }
                return state.cancelHandlers
            }
            for handler in handlers { handler() }
        }
    }
}
