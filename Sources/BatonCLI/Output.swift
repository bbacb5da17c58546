import BatonCore
import BatonStore
import Foundation

/// Plain-text tables for people; `--json` prints machine-readable documents instead.
struct Table {
    var headers: [String]
    var rows: [[String]] = []

    init(_ headers: String...) { self.headers = headers }

    mutating func add(_ cells: String...) { rows.append(cells) }

    func render() -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }
}

enum Format {
    static func time(_ date: Date?) -> String {
        date.map(JSONTime.string) ?? "-"
    }

    static func age(_ date: Date, now: Date = Date()) -> String {
        duration(now.timeIntervalSince(date))
    }

    static func duration(_ seconds: Double) -> String { DurationText.format(seconds) }

    static func json(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }
}

extension JobEvent {
    /// One line of the human event timeline.
    var summary: String {
        var parts: [String] = []
        if let nodeID { parts.append("node=\(nodeID)") }
        if let stage { parts.append("stage=\(stage)") }
        if let attempt { parts.append("attempt=\(attempt)") }
        if let fence { parts.append("fence=\(fence)") }
        for key in detail.keys.sorted() { parts.append("\(key)=\(detail[key] ?? "")") }
        return parts.joined(separator: " ")
    }
}
