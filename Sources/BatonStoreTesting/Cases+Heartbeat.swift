import BatonCore
import BatonStore
import Foundation
import Testing

extension JobStoreConformance {
    static let heartbeatCases: [ConformanceCase] = [
        ConformanceCase("heartbeatExtendsTheLeaseToNowPlusItsTTL") { h in
            let id = try await h.enqueue(h.spec(leaseTTLSec: 30))
            let lease = try await h.claimOne("node-a")
            h.clock.advance(by: 20)
            let results = try await h.store.heartbeat([lease])
            let until = h.clock.now.addingTimeInterval(30)
            #expect(results.count == 1)
            if case .extended(let extended)? = results.first {
                #expect(ms(extended) == ms(until))
            } else {
                Issue.record("expected the lease to be extended, got \(results)")
            }
            #expect(ms(try await h.record(id).leaseExpiresAt) == ms(until))
            // Past the original expiry but inside the renewed one, the rescuer leaves the job alone.
            h.clock.advance(by: 20)
            #expect(try await h.store.rescue().isEmpty)
            #expect(try await h.record(id).state == .running)
        },

        ConformanceCase("heartbeatAfterRescueReportsTheLeaseLost") { h in
            try await h.enqueue(h.spec())
            let lost = try await h.claimAndLose("node-a")
            let current = try await h.claimOne("node-b")
            let results = try await h.store.heartbeat([lost, current])
            #expect(results.count == 2)
            #expect(results.first?.isLost == true)
            #expect(results.last?.isLost == false)
        },
    ]
}
