import BatonStore
import Synchronization

/// Gathers completions from concurrently finishing jobs into one store write.
///
/// No timer is involved: the first completion to arrive while no write is under way starts
/// one at once; completions arriving meanwhile wait and go together in the next write. An
/// idle node therefore adds no latency, and a busy one writes many completions per
/// transaction.
final class CompletionBatcher: Sendable {
    private struct Waiting {
        let completion: Completion
        let continuation: CheckedContinuation<CompletionResult, any Error>
    }

    private struct State {
        var waiting: [Waiting] = []
        var writing = false
    }

    private let store: any JobStore
    private let state = Mutex(State())
    /// The most completions one write carries.
    private let maxBatch: Int

    init(store: any JobStore, maxBatch: Int = 512) {
        self.store = store
        self.maxBatch = maxBatch
    }

    func complete(_ completion: Completion) async throws -> CompletionResult {
        try await withCheckedThrowingContinuation { continuation in
            let lead = state.withLock { state -> Bool in
                state.waiting.append(Waiting(completion: completion, continuation: continuation))
                guard !state.writing else { return false }
                state.writing = true
                return true
            }
            if lead { Task { await self.writeWhileWaiting() } }
        }
    }

    private func writeWhileWaiting() async {
        while true {
            let batch = state.withLock { state -> [Waiting] in
                let batch = Array(state.waiting.prefix(maxBatch))
                state.waiting.removeFirst(batch.count)
                if batch.isEmpty { state.writing = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            do {
                let results = try await store.complete(batch.map(\.completion))
                for (waiting, result) in zip(batch, results) { waiting.continuation.resume(returning: result) }
                if results.count < batch.count {
                    let missing = BatonStoreError.missingResult
                    for waiting in batch.dropFirst(results.count) { waiting.continuation.resume(throwing: missing) }
                }
            } catch {
                for waiting in batch { waiting.continuation.resume(throwing: error) }
            }
        }
    }
}

enum BatonStoreError: Error {
    case missingResult
}
