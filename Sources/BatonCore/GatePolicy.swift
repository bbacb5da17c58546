/// The gate rule, shared by the engines: how many dead letters of one key within how long.
public struct GatePolicy: Sendable, Hashable {
    public var deadLetters: Int
    public var windowSec: Int

    public init(deadLetters: Int = 2, windowSec: Int = 86_400) {
        self.deadLetters = deadLetters
        self.windowSec = windowSec
    }

    public static let standard = GatePolicy()

    /// The reason recorded when the gate starts to hold.
    public func reason(key: String, jobs: [String]) -> String {
        "jobs with idempotency key \"\(key)\" were dead-lettered \(jobs.count) times within \(windowSec) s "
            + "(\(jobs.joined(separator: ", "))); new jobs with this key wait for `baton gate release`"
    }
}
