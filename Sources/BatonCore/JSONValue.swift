import Foundation

/// A JSON document as a tree of values. Envelopes and configuration files are read into this
/// shape first, so validation can name the exact field, the value found and what was expected.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// A short rendering of the value for error messages (never the whole of a large value):
    /// the value itself for scalars, a size for arrays and objects.
    public var preview: String {
        let text: String
        switch self {
        case .null: text = "null"
        case .bool(let b): text = String(b)
        case .int(let i): text = String(i)
        case .double(let d): text = String(d)
        case .string(let s): text = "\"\(s)\""
        case .array(let a): text = a.isEmpty ? "an empty array" : "an array of \(Self.count(a.count, "item"))"
        case .object(let o): text = o.isEmpty ? "an empty object" : "an object with \(Self.count(o.count, "key"))"
        }
        return text.count > 60 ? String(text.prefix(57)) + "..." : text
    }

    /// The kind of value, as a user would name it.
    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// The value as an error message names it after "got": the kind once, then the bounded
    /// preview (`an integer -2`, `a string "fast"`, `an array of 3 items`, `null`).
    public var summary: String {
        switch self {
        case .null, .array, .object: preview
        case .string(let s) where s.isEmpty: "an empty string"
        default: "\(kindName) \(preview)"
        }
    }

    private static func count(_ n: Int, _ noun: String) -> String { n == 1 ? "1 \(noun)" : "\(n) \(noun)s" }
}

/// JSON has one kind of number: `2` and `2.0` are the same value. JSONEncoder writes a whole
/// `Double` without its fraction and the decoder reads it back as an integer, so numbers
/// compare (and hash) by value, and a stored payload equals the one that was submitted.
extension JSONValue {
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.double(let a), .double(let b)): a == b
        case (.int(let i), .double(let d)), (.double(let d), .int(let i)): Int64(exactly: d) == i
        case (.string(let a), .string(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)): a == b
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let b): hasher.combine(1); hasher.combine(b)
        case .int(let i): hasher.combine(2); hasher.combine(i)
        case .double(let d):
            // A whole double hashes as the integer it equals.
            if let i = Int64(exactly: d) { hasher.combine(2); hasher.combine(i) } else { hasher.combine(3); hasher.combine(d) }
        case .string(let s): hasher.combine(4); hasher.combine(s)
        case .array(let a): hasher.combine(5); hasher.combine(a)
        case .object(let o): hasher.combine(6); hasher.combine(o)
        }
    }
}

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? container.decode(Double.self) {
            self = .double(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .int(let i): try container.encode(i)
        case .double(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}

extension JSONValue {
    /// Parses UTF-8 JSON bytes. Invalid UTF-8 and malformed JSON are reported as `BatonError`s.
    public static func parse(_ data: Data, what: String) throws(BatonError) -> JSONValue {
        if String(validating: data, as: UTF8.self) == nil {
            let offset = firstInvalidUTF8Offset(data) ?? 0
            throw BatonError(.invalidInput, field: what,
                             "is not valid UTF-8 (first bad byte at offset \(offset))")
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch let error as DecodingError {
            throw BatonError(.invalidInput, field: what, "is not valid JSON: \(describe(error))")
        } catch {
            throw BatonError(.invalidInput, field: what, "is not valid JSON: \(error)")
        }
    }

    /// Compact, key-sorted JSON text.
    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a JSONValue cannot fail: every case maps onto a JSON primitive.
        return (try? encoder.encode(self)) ?? Data("null".utf8)
    }

    public var encodedString: String { String(decoding: encoded(), as: UTF8.self) }

    private static func firstInvalidUTF8Offset(_ data: Data) -> Int? {
        var offset = 0
        var iterator = data.makeIterator()
        var decoder = UTF8()
        var consumed = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                consumed += UTF8.width(scalar)
                offset = consumed
            case .emptyInput:
                return nil
            case .error:
                return offset
            }
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let ctx): return ctx.underlyingError.map { "\($0)" } ?? ctx.debugDescription
        case .keyNotFound(_, let ctx), .typeMismatch(_, let ctx), .valueNotFound(_, let ctx):
            return ctx.debugDescription
        @unknown default: return "\(error)"
        }
    }
}

extension JSONValue {
    /// The fields of an object, else nil.
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { o } else { nil } }
    /// The items of an array, else nil.
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    /// The text of a string, else nil.
    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    /// An integer, or a double with no fraction, else nil.
    public var intValue: Int? {
        switch self {
        case .int(let i): Int(i)
        case .double(let d) where d.isFinite && d.rounded() == d && abs(d) < 9e15: Int(d)
        default: nil
        }
    }
}
