import BatonCore
import Foundation
import Logging
import Synchronization

/// `logs.format: json`: one JSON object a line on standard error, with the time, level,
/// label and message, and every metadata key (node.id, job.id, job.stage, lane...) as a field
/// of its own, for log shippers that index fields.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    /// One line at a time, whole, from every thread of the process.
    private static let output = Mutex(())

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [String: JSONValue] = [
            "ts": .null, "level": .string(event.level.rawValue), "label": .string(label),
            "message": .string("\(event.message)"), "source": .string(event.source),
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) {
            // Metadata never hides the line's own fields: a "message" key becomes "meta.message".
            fields[fields[key] == nil ? key : "meta.\(key)"] = Self.json(value)
        }
        Self.output.withLock { _ in
            fields["ts"] = .string(Self.formatter.string(from: Date()))
            var line = JSONValue.object(fields).encoded()
            line.append(0x0A)
            FileHandle.standardError.write(line)
        }
    }

    static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let s): .string(s)
        case .stringConvertible(let c): .string(c.description)
        case .array(let items): .array(items.map(json))
        case .dictionary(let map): .object(map.mapValues(json))
        }
    }

    /// Used only under `output`'s lock.
    nonisolated(unsafe) private static let formatter: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
}
