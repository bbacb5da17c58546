import BatonCore
import Foundation
import Testing

private let crockford = Set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

/// A seeded generator, so the random half of an id can be pinned.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Test func jobIDIsTwentySixCrockfordCharacters() {
    for _ in 0..<100 {
        let id = JobID.make()
        #expect(id.count == 26)
        #expect(id.allSatisfy { crockford.contains($0) }, "\(id)")
    }
}

@Test func jobIDTimePartFollowsTheULIDLayout() {
    // The ULID specification's example: 1469918176385 ms encodes as 01ARYZ6S41.
    #expect(JobID.make(at: Date(epochMilliseconds: 1_469_918_176_385)).prefix(10) == "01ARYZ6S41")
    #expect(JobID.make(at: Date(epochMilliseconds: 0)).prefix(10) == "0000000000")
    #expect(JobID.make(at: Date(epochMilliseconds: 1)).prefix(10) == "0000000001")
}

@Test func jobIDBeforeTheEpochUsesTimeZero() {
    #expect(JobID.make(at: Date(timeIntervalSince1970: -5)).prefix(10) == "0000000000")
}

@Test func jobIDsMadeAtIncreasingTimesSortIncreasingly() {
    let clock = ManualClock()
    var ids: [String] = []
    for step in 0..<500 {
        ids.append(JobID.make(at: clock.now))
        // Steps of 1 ms up to several days, so every character of the time part changes.
        clock.advance(by: step.isMultiple(of: 2) ? 0.001 : Double(step) * 97.3)
    }
    #expect(ids == ids.sorted())
    #expect(Set(ids).count == ids.count)
}

@Test func manyJobIDsMadeAtTheSameInstantAreUnique() {
    let now = ManualClock().now
    let ids = (0..<10_000).map { _ in JobID.make(at: now) }
    #expect(Set(ids).count == ids.count)
    #expect(Set(ids.map { $0.prefix(10) }).count == 1)
}

@Test func jobIDRandomPartComesFromTheGivenGenerator() {
    let now = ManualClock().now
    var first = SplitMix64(state: 7)
    var second = SplitMix64(state: 7)
    var other = SplitMix64(state: 8)
    let a = JobID.make(at: now, using: &first)
    #expect(a == JobID.make(at: now, using: &second))
    #expect(a != JobID.make(at: now, using: &other))
}
