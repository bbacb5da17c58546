import BatonCore
import Foundation
import PostgresNIO
import Synchronization

/// Bounds how long one store operation may wait on the driver. An operation that outlives its
/// deadline is cancelled and reported as `storeUnavailable`, and the caller gets its answer
/// on time even when the operation ignores the cancellation: a lease request lost in the
/// pool while the server restarted must not pin a job to a node forever (its heartbeats go
/// on through other connections, so the lease would never run out). The body may also give
/// up early through its `Abandon` handle (its connection closed under it).
enum Deadline {
    /// Ends the operation at once with an error; the body's task is cancelled and left to end.
    struct Abandon: Sendable {
        let fail: @Sendable (any Error) -> Void
    }

    static func run<T: Sendable>(seconds: Double, what: @autoclosure () -> String,
                                 _ body: @escaping @Sendable (Abandon) async throws -> T) async throws -> T {
        let description = what()
        let outcome = Outcome<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                outcome.install(continuation)
                let abandon = Abandon { error in outcome.finish(.failure(error)) }
                let work = Task {
                    do { outcome.finish(.success(try await body(abandon))) } catch { outcome.finish(.failure(error)) }
                }
                outcome.onCancel { work.cancel() }
                // Once decided (done, abandoned or timed out), the work is told to stop; a
                // statement may not listen, and then it is left behind.
                outcome.onFinish { work.cancel() }
                let timer = Task {
                    try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                    guard !Task.isCancelled else { return }
                    let timedOut = BatonError(.storeUnavailable, field: "store",
                                              "\(description) did not finish within \(String(format: "%g", seconds)) s; the connection was abandoned")
                    outcome.finish(.failure(timedOut))
                }
                // A finished operation does not leave its timer asleep for the whole deadline.
                outcome.onFinish { timer.cancel() }
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
            var finishHandlers: [@Sendable () -> Void] = []
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
            let decided = state.withLock { state -> (CheckedContinuation<T, any Error>?, [@Sendable () -> Void])? in
                guard !state.done else { return nil }
                state.done = true
                defer { state.finishHandlers = [] }
                guard let continuation = state.continuation else {
                    state.early = result
                    return (nil, state.finishHandlers)
                }
                state.continuation = nil
                return (continuation, state.finishHandlers)
            }
            guard let (continuation, handlers) = decided else { return false }
            continuation?.resume(with: result)
            for handler in handlers { handler() }
            return true
        }

        /// Runs `handler` once the outcome is decided (at once if it already is).
        func onFinish(_ handler: @escaping @Sendable () -> Void) {
            add(handler, to: \.finishHandlers, unless: \.done)
        }

        /// Runs `handler` when the caller is cancelled (at once if it already was).
        func onCancel(_ handler: @escaping @Sendable () -> Void) {
            add(handler, to: \.cancelHandlers, unless: \.cancelled)
        }

        private func add(_ handler: @escaping @Sendable () -> Void, to handlers: WritableKeyPath<State, [@Sendable () -> Void]>,
                         unless happened: KeyPath<State, Bool>) {
            let now = state.withLock { state -> Bool in
                if state[keyPath: happened] { return true }
                state[keyPath: handlers].append(handler)
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

/// Tells the operations under way on a pooled connection when it closes. Each connection's
/// close is watched once, from the first operation that leases it.
final class ConnectionCloseWatch: Sendable {
    private struct State {
        /// By the pool's connection id, which it never hands out twice.
        var waiting: [PostgresConnection.ID: [UInt64: @Sendable () -> Void]] = [:]
        var next: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Runs `body` with `onClose` called if `connection` closes before `body` returns.
    func whileOpen<T>(_ connection: PostgresConnection, onClose: @escaping @Sendable () -> Void,
                      _ body: () async throws -> T) async throws -> T {
        let key = connection.id
        let (token, firstSight) = state.withLock { state -> (UInt64, Bool) in
            state.next += 1
            let first = state.waiting[key] == nil
            state.waiting[key, default: [:]][state.next] = onClose
            return (state.next, first)
        }
        // Once per connection: its close future completes once, and a callback for every
        // operation would pile up on a connection that lives for days.
        if firstSight { connection.closeFuture.whenComplete { _ in self.closed(key) } }
        defer { state.withLock { state in _ = state.waiting[key]?.removeValue(forKey: token) } }
        return try await body()
    }

    private func closed(_ key: PostgresConnection.ID) {
        let handlers = state.withLock { state in state.waiting.removeValue(forKey: key).map { Array($0.values) } ?? [] }
        for handler in handlers { handler() }
    }
}
