import Foundation

/// A string with `{{...}}` placeholders, as HTTP stages use in their URL, headers and body.
///
/// - `{{output.KEY}}`: a value an earlier stage wrote to `$BATON_OUTPUT`;
/// - `{{env.NAME}}`: an environment variable of the node (headers only, for secrets: the
///   rendered value is never logged or stored);
/// - `{{job.id}}`, `{{job.attempt}}`, `{{stage.name}}`;
/// - `| json` after a reference writes it as a quoted JSON string (`{{output.url | json}}`).
public struct Template: Sendable, Hashable {
    public enum Namespace: String, Sendable, Hashable, CaseIterable {
        case output, env, job, stage
    }

    public struct Reference: Sendable, Hashable {
        public var namespace: Namespace
        public var name: String
        public var json: Bool
    }

    public enum Part: Sendable, Hashable {
        case text(String)
        case reference(Reference)
    }

    public let parts: [Part]

    static let jobNames = ["id", "attempt"]
    static let stageNames = ["name"]

    /// Parses `text`, naming `field` in errors. `{{env.…}}` is refused unless `allowEnv`.
    public static func parse(_ text: String, field: String, allowEnv: Bool) throws(BatonError) -> Template {
        var parts: [Part] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw BatonError(.invalidInput, field: field, "expected \"}}\" to close the placeholder opened by \"{{\"")
            }
            let inner = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            parts.append(.reference(try reference(inner, field: field, allowEnv: allowEnv)))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        return Template(parts: parts)
    }

    private static func reference(_ inner: String, field: String, allowEnv: Bool) throws(BatonError) -> Reference {
        var body = inner
        var json = false
        if let bar = inner.firstIndex(of: "|") {
            let filter = inner[inner.index(after: bar)...].trimmingCharacters(in: .whitespaces)
            guard filter == "json" else {
                throw BatonError(.invalidInput, field: field, "expected the filter \"json\" after \"|\", got \"\(filter)\"")
            }
            json = true
            body = inner[..<bar].trimmingCharacters(in: .whitespaces)
        }
        let pieces = body.split(separator: ".", maxSplits: 1).map(String.init)
        let expected = "{{output.KEY}}, {{env.NAME}}, {{job.id}}, {{job.attempt}} or {{stage.name}}"
        guard pieces.count == 2, let namespace = Namespace(rawValue: pieces[0]), !pieces[1].isEmpty,
              pieces[1].allSatisfy({ $0.isLetter || $0.isNumber || "_-.".contains($0) }) else {
            throw BatonError(.invalidInput, field: field, "expected a placeholder like \(expected), got \"{{\(inner)}}\"")
        }
        let name = pieces[1]
        switch namespace {
        case .env where !allowEnv:
            throw BatonError(.invalidInput, field: field,
                             "{{env.\(name)}} is only allowed in headers (secrets must not end up in URLs or bodies that may be logged)")
        case .job where !jobNames.contains(name), .stage where !stageNames.contains(name):
            throw BatonError(.invalidInput, field: field, "expected a placeholder like \(expected), got \"{{\(inner)}}\"")
        default:
            return Reference(namespace: namespace, name: name, json: json)
        }
    }

    /// The references, in order (to check them before a request is made).
    public var references: [Reference] {
        parts.compactMap { if case .reference(let r) = $0 { r } else { nil } }
    }

    /// Renders the template; `resolve` gives each reference's value or throws.
    public func render(_ resolve: (Reference) throws(BatonError) -> String) throws(BatonError) -> String {
        var out = ""
        for part in parts {
            switch part {
            case .text(let text): out += text
            case .reference(let reference):
                let value = try resolve(reference)
                if reference.json {
                    JobEventText.appendQuoted(value, to: &out)
                } else {
                    out += value
                }
            }
        }
        return out
    }
}

/// JSON string quoting shared by the event log and templates.
public enum JobEventText {
    public static func appendQuoted(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
