import Synchronization

/// Lets an action run at most once per interval (in milliseconds of the store's clock), for
/// housekeeping a rescue pass does less often than every pass (priority ageing scans the
/// waiting jobs).
public final class Throttle: Sendable {
    private let last = Mutex<Int64>(Int64.min)
    private let intervalMs: Int64

    public init(intervalMs: Int64) { self.intervalMs = intervalMs }

    /// True (and the time recorded) when the interval has passed since the last time.
    public func due(now: Int64) -> Bool {
        last.withLock { last in
            guard last == Int64.min || now - last >= intervalMs || now < last else { return false }
            last = now
            return true
        }
    }
}
