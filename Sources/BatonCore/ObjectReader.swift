/// Reads one JSON (or YAML) object field by field, naming every problem precisely:
/// `retry.max_attempts: expected an integer from 1 to 100, got -2`.
/// Unknown keys are refused, with the nearest valid key suggested.
public struct ObjectReader: Sendable {
    public let path: String
    public let object: [String: JSONValue]

    /// Fails when `value` is not an object or holds a key outside `allowedKeys`.
    public init(_ value: JSONValue, path: String, allowedKeys: [String]) throws(BatonError) {
        guard case .object(let object) = value else {
            throw BatonError(.invalidInput, field: path.isEmpty ? "(document)" : path,
                             "expected an object, got \(value.summary)")
        }
        self.path = path
        self.object = object
        for key in object.keys.sorted() where !allowedKeys.contains(key) {
            var message = "unknown field"
            if let near = Self.nearest(to: key, in: allowedKeys) { message += " (did you mean '\(near)'?)" }
            throw BatonError(.invalidInput, field: field(key), message)
        }
    }

    public func field(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The value of `key`; an explicit `null` counts as absent.
    public func value(_ key: String) -> JSONValue? {
        guard let value = object[key], value != .null else { return nil }
        return value
    }

    public func has(_ key: String) -> Bool { value(key) != nil }

    /// `what` names the expected value in errors; by default "a non-empty string" (or "a
    /// string" when `nonEmpty` is false).
    public func string(_ key: String, maxLength: Int = 1024, nonEmpty: Bool = true,
                       allowed: ((Character) -> Bool)? = nil, what: String? = nil) throws(BatonError) -> String? {
        guard let value = value(key) else { return nil }
        let what = what ?? (nonEmpty ? "a non-empty string" : "a string")
        guard case .string(let s) = value, !(nonEmpty && s.isEmpty) else {
            throw invalid(key, value, "expected \(what)")
        }
        if s.utf8.count > maxLength {
            throw BatonError(.invalidInput, field: field(key),
                             "expected at most \(maxLength) bytes, got \(s.utf8.count) bytes (\(value.preview))")
        }
        if let allowed, let bad = s.first(where: { !allowed($0) }) {
            throw BatonError(.invalidInput, field: field(key),
                             "expected \(what), got \(value.summary) (character '\(bad)' is not allowed)")
        }
        return s
    }

    public func int(_ key: String, in range: ClosedRange<Int>) throws(BatonError) -> Int? {
        guard let value = value(key) else { return nil }
        let expectation = "expected an integer from \(range.lowerBound) to \(range.upperBound)"
        let number: Int
        switch value {
        case .int(let i) where i >= Int64(Int.min) && i <= Int64(Int.max): number = Int(i)
        case .double(let d) where d.rounded() == d && abs(d) < 1e15: number = Int(d)
        default: throw invalid(key, value, expectation)
        }
        guard range.contains(number) else { throw invalid(key, value, expectation) }
        return number
    }

    public func double(_ key: String, in range: ClosedRange<Double>) throws(BatonError) -> Double? {
        guard let value = value(key) else { return nil }
        let expectation = "expected a number from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound))"
        let number: Double
        switch value {
        case .int(let i): number = Double(i)
        case .double(let d): number = d
        default: throw invalid(key, value, expectation)
        }
        guard number.isFinite, range.contains(number) else { throw invalid(key, value, expectation) }
        return number
    }

    public func bool(_ key: String) throws(BatonError) -> Bool? {
        guard let value = value(key) else { return nil }
        guard case .bool(let b) = value else { throw invalid(key, value, "expected true or false") }
        return b
    }

    public func array(_ key: String, maxCount: Int) throws(BatonError) -> [JSONValue]? {
        guard let value = value(key) else { return nil }
        guard case .array(let items) = value else { throw invalid(key, value, "expected an array") }
        guard items.count <= maxCount else {
            throw invalid(key, value, "expected an array of at most \(maxCount) items")
        }
        return items
    }

    public func stringArray(_ key: String, maxCount: Int = 64) throws(BatonError) -> [String]? {
        guard let items = try array(key, maxCount: maxCount) else { return nil }
        var result: [String] = []
        for (index, item) in items.enumerated() {
            guard case .string(let s) = item, !s.isEmpty else {
                throw BatonError(.invalidInput, field: "\(field(key))[\(index)]",
                                 "expected a non-empty string, got \(item.summary)")
            }
            result.append(s)
        }
        return result
    }

    public func stringMap(_ key: String, maxCount: Int = 256) throws(BatonError) -> [String: String]? {
        guard let value = value(key) else { return nil }
        guard case .object(let entries) = value else { throw invalid(key, value, "expected an object of strings") }
        guard entries.count <= maxCount else { throw invalid(key, value, "expected an object with at most \(maxCount) keys") }
        var result: [String: String] = [:]
        for (name, item) in entries {
            guard case .string(let s) = item else {
                throw BatonError(.invalidInput, field: "\(field(key)).\(name)",
                                 "expected a string, got \(item.summary)")
            }
            result[name] = s
        }
        return result
    }

    /// `key`'s error: the expectation, then the value found (`expected X, got an integer 3`).
    public func invalid(_ key: String, _ value: JSONValue, _ expectation: String) -> BatonError {
        BatonError(.invalidInput, field: field(key), "\(expectation), got \(value.summary)")
    }

    static func format(_ d: Double) -> String {
        d.rounded() == d && abs(d) < 1e15 ? String(Int(d)) : String(d)
    }

    /// The allowed key closest to `key` by edit distance, when it is close enough to be a typo.
    public static func nearest(to key: String, in candidates: [String]) -> String? {
        var best: (String, Int)?
        for candidate in candidates {
            let distance = editDistance(key.lowercased(), candidate.lowercased())
            if distance <= max(2, candidate.count / 3), distance < (best?.1 ?? .max) {
                best = (candidate, distance)
            }
        }
        return best?.0
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

/// Characters allowed in identifiers such as lane names, stage names and job ids.
public enum Identifier {
    public static func isAllowed(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_" || c == "." || c == ":")
    }
}
