import BatonCore
import BatonStore
import Foundation
import Testing

extension StoreHarness {
    func message(_ id: String, _ text: String, peer: String = "42", channel: String = "telegram") -> InboundMessage {
        InboundMessage(channel: channel, account: "bot", peer: peer, messageID: id, text: text, receivedAt: clock.now)
    }

    func inboundPolicy(debounceMs: Int = 0, dedupeTTLSec: Int = 1200) -> InboundPolicy {
        InboundPolicy(dedupeTTLSec: dedupeTTLSec, debounceMs: debounceMs,
                      template: JobSpec(id: "template", lane: "main", stages: [StageSpec(name: "agent", run: .noop)]))
    }

    /// The texts of an inbound job's batch, in order.
    func texts(_ jobID: String) async throws -> [String] {
        let spec = try await record(jobID).spec
        guard case .object(let root) = spec.payload, case .object(let inbound)? = root["inbound"],
              case .array(let messages)? = inbound["messages"] else { return [] }
        return messages.compactMap { message in
            if case .object(let fields) = message, case .string(let text)? = fields["text"] { text } else { nil }
        }
    }
}

extension JobStoreConformance {
    static let inboundCases: [ConformanceCase] = [
        ConformanceCase("theSameInboundMessageDeliveredFiveTimesMakesOneJob") { h in
            let policy = h.inboundPolicy()
            let first = try await h.store.receive(h.message("m-1", "hello"), policy: policy)
            guard case .created(let id) = first else {
                Issue.record("expected a new job, got \(first)")
                return
            }
            for _ in 0..<4 {
                h.clock.advance(by: 1)
                #expect(try await h.store.receive(h.message("m-1", "hello"), policy: policy) == .duplicate(jobID: id))
            }
            #expect(try await h.store.counts().values.reduce(0, +) == 1)
            let job = try await h.record(id)
            #expect(job.spec.sessionKey == "telegram:bot:42")
            #expect(try await h.texts(id) == ["hello"])
        },

        ConformanceCase("aDuplicateAfterTheDedupeWindowIsANewMessage") { h in
            let policy = h.inboundPolicy(dedupeTTLSec: 60)
            _ = try await h.store.receive(h.message("m-1", "hello"), policy: policy)
            h.clock.advance(by: 61)
            guard case .created = try await h.store.receive(h.message("m-1", "hello"), policy: policy) else {
                Issue.record("expected a new job once the window passed")
                return
            }
        },

        ConformanceCase("quickMessagesOfOneSessionAreBatchedIntoOneJobInOrder") { h in
            let policy = h.inboundPolicy(debounceMs: 1500)
            let first = try await h.store.receive(h.message("m-1", "hi"), policy: policy)
            for (index, text) in ["are you there", "I need", "the build log"].enumerated() {
                h.clock.advance(by: 0.3)
                #expect(try await h.store.receive(h.message("m-\(index + 2)", text), policy: policy) == .appended(jobID: first.jobID))
            }
            #expect(try await h.texts(first.jobID) == ["hi", "are you there", "I need", "the build log"])
            #expect(try await h.claim("node-a", limit: 5).isEmpty, "the batch waits for the debounce after its last message")
            h.clock.advance(by: 1.5)
            #expect(try await h.claim("node-a", limit: 5).map(\.jobID) == [first.jobID])
            #expect(try await h.store.counts().values.reduce(0, +) == 1)
        },

        ConformanceCase("aMessageAfterItsBatchStartedStartsTheNextBatch") { h in
            let policy = h.inboundPolicy(debounceMs: 500)
            let first = try await h.store.receive(h.message("m-1", "one"), policy: policy)
            h.clock.advance(by: 0.6)
            _ = try await h.claimOne("node-a")
            let second = try await h.store.receive(h.message("m-2", "two"), policy: policy)
            guard case .created(let next) = second else {
                Issue.record("expected a new batch, got \(second)")
                return
            }
            #expect(next != first.jobID)
            h.clock.advance(by: 0.6)
            #expect(try await h.claim("node-b", limit: 5).isEmpty, "the session's next batch waits for the running one")
        },

        ConformanceCase("sessionsAreBatchedSeparately") { h in
            let policy = h.inboundPolicy(debounceMs: 1000)
            let alice = try await h.store.receive(h.message("a-1", "from alice", peer: "alice"), policy: policy)
            let bob = try await h.store.receive(h.message("b-1", "from bob", peer: "bob"), policy: policy)
            #expect(alice.jobID != bob.jobID)
            #expect(try await h.store.receive(h.message("a-2", "again", peer: "alice"), policy: policy) == .appended(jobID: alice.jobID))
            #expect(try await h.texts(bob.jobID) == ["from bob"])
        },
    ]
}
