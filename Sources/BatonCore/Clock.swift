import Foundation
import Synchronization

/// Where Baton reads the time. Production uses `.system`; tests use a `ManualClock` so that
/// leases, backoff and expiry can be checked without sleeping.
public struct BatonClock: Sendable {
    private let read: @Sendable () -> Date

    public init(_ read: @escaping @Sendable () -> Date) { self.read = read }

    public func now() -> Date { read() }

    public static let system = BatonClock { Date() }
}

/// A clock that only moves when told to.
public final class ManualClock: Sendable {
    private let current: Mutex<Date>

    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = Mutex(start)
    }

    public var now: Date { current.withLock { $0 } }

    public func advance(by seconds: Double) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }

    public func set(_ date: Date) { current.withLock { $0 = date } }

    public var clock: BatonClock { BatonClock { [self] in self.now } }
}

extension Date {
    /// Milliseconds since 1970, the unit stores persist.
    public var epochMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }

    public init(epochMilliseconds ms: Int64) {
        self.init(timeIntervalSince1970: Double(ms) / 1000)
    }
}
