import Foundation

/// A five-field cron expression (minute, hour, day of month, month, day of week) in one IANA
/// time zone, with the usual syntax: `*`, lists, ranges, steps (`*/15`, `1-30/5`), month and
/// weekday names, and the `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly` macros.
/// When both day fields are restricted, a day matches either (as in every cron since Vixie's).
///
/// Daylight saving time follows cron's own rules. A fixed-time schedule (minute and hour both
/// given as numbers) fires once per matching wall-clock time: when the clock springs forward
/// over that time it fires at the change, and when the clock falls back over it, it fires on
/// the first pass only. A schedule with `*` in its minute or hour field follows the wall clock
/// as it is: it skips the minutes that do not exist and fires again in a repeated hour.
public struct CronExpression: Sendable, Hashable {
    public let text: String
    public let timeZone: TimeZone
    let minutes: UInt64
    let hours: UInt32
    let daysOfMonth: UInt32
    let months: UInt16
    let weekdays: UInt8
    let daysOfMonthRestricted: Bool
    let weekdaysRestricted: Bool
    /// Minute or hour field starts with `*`: DST changes shift it with the wall clock.
    let followsWallClock: Bool

    static let macros = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let weekdayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    /// Parses `text`; `field` names the configuration key in errors.
    public init(_ text: String, timeZone: TimeZone, field: String) throws(BatonError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let expanded = Self.macros[trimmed.lowercased()] ?? trimmed
        let parts = expanded.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard parts.count == 5 else {
            throw BatonError(.invalidInput, field: field,
                             "expected 5 fields (minute hour day-of-month month day-of-week) or a macro such as @daily, got \"\(text)\"")
        }
        func parse(_ index: Int, _ name: String, _ range: ClosedRange<Int>, names: [String] = [],
                   nameBase: Int = 0) throws(BatonError) -> UInt64 {
            do {
                return try Self.parseField(parts[index], range: range, names: names, nameBase: nameBase)
            } catch {
                throw BatonError(.invalidInput, field: field, "\(name) field \"\(parts[index])\": \(error.message)")
            }
        }
        self.text = trimmed
        self.timeZone = timeZone
        minutes = try parse(0, "minute", 0...59)
        hours = UInt32(try parse(1, "hour", 0...23))
        daysOfMonth = UInt32(try parse(2, "day-of-month", 1...31))
        months = UInt16(try parse(3, "month", 1...12, names: Self.monthNames, nameBase: 1))
        var days = try parse(4, "day-of-week", 0...7, names: Self.weekdayNames)
        if days & (1 << 7) != 0 { days = (days | 1) & 0x7F }  // 7 is Sunday too
        weekdays = UInt8(days)
        daysOfMonthRestricted = !parts[2].hasPrefix("*")
        weekdaysRestricted = !parts[4].hasPrefix("*")
        followsWallClock = parts[0].hasPrefix("*") || parts[1].hasPrefix("*")
    }

    struct FieldError: Error { let message: String }

    /// A field as a bit set of the values it matches.
    static func parseField(_ text: String, range: ClosedRange<Int>, names: [String], nameBase: Int) throws(FieldError) -> UInt64 {
        func value(_ s: Substring) throws(FieldError) -> Int {
            if let n = Int(s) {
                guard range.contains(n) else { throw FieldError(message: "\(n) is outside \(range.lowerBound)-\(range.upperBound)") }
                return n
            }
            if let index = names.firstIndex(of: s.lowercased()) { return index + nameBase }
            throw FieldError(message: "expected a number from \(range.lowerBound) to \(range.upperBound)"
                             + (names.isEmpty ? "" : " or a name (\(names.joined(separator: ", ")))") + ", got \"\(s)\"")
        }
        var bits: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pieces = item.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2, !pieces[0].isEmpty else { throw FieldError(message: "cannot read \"\(item)\"") }
            var step = 1
            if pieces.count == 2 {
                guard let s = Int(pieces[1]), s >= 1, s <= range.upperBound else {
                    throw FieldError(message: "expected a step from 1 to \(range.upperBound) after /, got \"\(pieces[1])\"")
                }
                step = s
            }
            var low: Int, high: Int
            if pieces[0] == "*" {
                (low, high) = (range.lowerBound, range.upperBound)
            } else if let dash = pieces[0].firstIndex(of: "-") {
                low = try value(pieces[0][..<dash])
                high = try value(pieces[0][pieces[0].index(after: dash)...])
                guard low <= high else { throw FieldError(message: "range \(pieces[0]) runs backwards") }
            } else {
                low = try value(pieces[0])
                high = pieces.count == 2 ? range.upperBound : low
            }
            for v in stride(from: low, through: high, by: step) { bits |= 1 << UInt64(v) }
        }
        return bits
    }

    func matches(day: CivilDay) -> Bool {
        guard months & (1 << UInt16(day.month)) != 0 else { return false }
        let dom = daysOfMonth & (1 << UInt32(day.day)) != 0
        let dow = weekdays & (1 << UInt8(day.weekday)) != 0
        if daysOfMonthRestricted && weekdaysRestricted { return dom || dow }
        return dom && dow
    }

    /// The first fire time strictly after `date`, or nil when none comes within five years
    /// (an expression such as `0 0 30 2 *` never fires).
    public func next(after date: Date) -> Date? {
        let t = Int64(date.timeIntervalSince1970.rounded(.down))
        // Wall-clock seconds (as if the zone were UTC). Scanning starts three hours of wall
        // time early: after the clock falls back, a wall time before `date`'s may still map
        // to an instant after it.
        let offset = timeZone.secondsFromGMT(for: date)
        let wallNow = t + Int64(offset)
        let slack: Int64 = 3 * 3600
        let nearChange = timeZone.secondsFromGMT(for: date.addingTimeInterval(-6 * 3600)) != offset
            || timeZone.secondsFromGMT(for: date.addingTimeInterval(6 * 3600)) != offset
        let start = nearChange ? wallNow - slack : wallNow - wallNow % 60
        var best: Int64?
        // No wall time more than `slack` past the best one's can map to an earlier instant.
        var bestWall = Int64.max
        var dayNumber = Self.floorDiv(start, 86_400)
        let lastDay = dayNumber + 5 * 366
        let hourList = (0..<24).filter { hours & (1 << UInt32($0)) != 0 }
        let minuteList = (0..<60).filter { minutes & (1 << UInt64($0)) != 0 }
        while dayNumber <= lastDay {
            let day = CivilDay(daysSinceEpoch: dayNumber)
            if matches(day: day) {
                for hour in hourList {
                    for minute in minuteList {
                        let wall = dayNumber * 86_400 + Int64(hour * 3600 + minute * 60)
                        if wall < start { continue }
                        // Away from a change of offset, the first match is the earliest.
                        if let found = best, wall > bestWall + (nearChange ? slack : 0) {
                            return Date(timeIntervalSince1970: TimeInterval(found))
                        }
                        for instant in instants(ofWall: wall) where instant > t && instant < (best ?? .max) {
                            best = instant
                            bestWall = instant + Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant))))
                        }
                    }
                }
            }
            dayNumber += 1
        }
        return best.map { Date(timeIntervalSince1970: TimeInterval($0)) }
    }

    /// The instants at which the zone's clock shows `wall`: one normally; none in a gap
    /// (spring forward), where a fixed-time schedule fires at the change; two in a repeated
    /// hour (fall back), where a fixed-time schedule keeps the first.
    func instants(ofWall wall: Int64) -> [Int64] {
        let before = Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(wall - 86_400))))
        let after = Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(wall + 86_400))))
        var found: [Int64] = []
        for offset in Set([before, after]).sorted(by: >) {
            let instant = wall - offset
            if Int64(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant)))) == offset {
                found.append(instant)
            }
        }
        found.sort()
        if found.isEmpty {
            guard !followsWallClock else { return [] }
            let larger = max(before, after)
            guard let change = timeZone.nextDaylightSavingTimeTransition(
                after: Date(timeIntervalSince1970: TimeInterval(wall - larger))) else { return [] }
            return [Int64(change.timeIntervalSince1970.rounded(.up))]
        }
        return followsWallClock ? found : [found[0]]
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
}

/// A calendar day from its number of days since 1970-01-01 (proleptic Gregorian), without
/// Foundation's calendar: the scan above visits up to five years of days.
struct CivilDay: Hashable {
    let year: Int64
    let month: Int
    let day: Int
    /// 0 = Sunday.
    let weekday: Int

    init(daysSinceEpoch z0: Int64) {
        // Howard Hinnant's civil_from_days.
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = Int(doy - (153 * mp + 2) / 5 + 1)
        month = Int(mp < 10 ? mp + 3 : mp - 9)
        year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        let w = (z0 + 4) % 7
        weekday = Int(w >= 0 ? w : w + 7)
    }
}
