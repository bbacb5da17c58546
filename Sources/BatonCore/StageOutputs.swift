import Foundation

/// What one stage handed to the stages after it: key/values and artifact URIs, written to the
/// file named by `$BATON_OUTPUT`. Stores keep them with the job, so they survive node loss.
public struct StageOutput: Sendable, Hashable {
    public static let maxFileBytes = 64 * 1024
    public static let maxKeyLength = 64

    public var stage: String
    public var values: [String: String]
    public var artifacts: [String]

    public init(stage: String, values: [String: String] = [:], artifacts: [String] = []) {
        self.stage = stage
        self.values = values
        self.artifacts = artifacts
    }

    public var isEmpty: Bool { values.isEmpty && artifacts.isEmpty }

    /// Reads an output file: `KEY=VALUE` lines (`artifact=URI` lines add artifacts; blank
    /// lines and `#` comments are skipped), or one JSON object of string values with an
    /// optional `artifacts` array of strings. Errors name the line and what was expected.
    public static func parse(_ data: Data, stage: String) throws(BatonError) -> StageOutput {
        let field = "$BATON_OUTPUT"
        guard data.count <= maxFileBytes else {
            throw BatonError(.invalidInput, field: field, "expected at most \(maxFileBytes) bytes, got \(data.count)")
        }
        var output = StageOutput(stage: stage)
        let text = String(decoding: data, as: UTF8.self)
        if text.drop(while: \.isWhitespace).first == "{" {
            guard case .object(let fields) = try JSONValue.parse(data, what: field) else {
                throw BatonError(.invalidInput, field: field, "expected a JSON object")
            }
            for (key, value) in fields {
                if key == "artifacts" {
                    guard case .array(let items) = value else {
                        throw BatonError(.invalidInput, field: "\(field).artifacts", "expected an array of URIs, got \(value.summary)")
                    }
                    for item in items {
                        guard case .string(let uri) = item, !uri.isEmpty else {
                            throw BatonError(.invalidInput, field: "\(field).artifacts", "expected URIs as strings, got \(item.summary)")
                        }
                        output.artifacts.append(uri)
                    }
                    continue
                }
                try checkKey(key, field: field)
                switch value {
                case .string(let s): output.values[key] = s
                case .int(let i): output.values[key] = String(i)
                case .double(let d): output.values[key] = String(d)
                case .bool(let b): output.values[key] = String(b)
                default:
                    throw BatonError(.invalidInput, field: "\(field).\(key)", "expected a string, number or boolean, got \(value.summary)")
                }
            }
            return output
        }
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.allSatisfy(\.isWhitespace) || line.first == "#" { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw BatonError(.invalidInput, field: "\(field) line \(index + 1)",
                                 "expected KEY=VALUE, got \"\(line.prefix(80))\"")
            }
            let key = String(line[..<equals]).trimmingCharacters(in: .whitespaces)
            let value = String(line[line.index(after: equals)...])
            if key == "artifact" {
                guard !value.isEmpty else {
                    throw BatonError(.invalidInput, field: "\(field) line \(index + 1)", "expected artifact=URI, got an empty URI")
                }
                output.artifacts.append(value)
                continue
            }
            try checkKey(key, field: "\(field) line \(index + 1)")
            output.values[key] = value
        }
        return output
    }

    static func checkKey(_ key: String, field: String) throws(BatonError) {
        guard !key.isEmpty, key.count <= maxKeyLength,
              key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) }) else {
            throw BatonError(.invalidInput, field: field,
                             "expected a key of up to \(maxKeyLength) letters, digits, _ - and ., got \"\(key.prefix(80))\"")
        }
    }

    var json: JSONValue {
        .object(["stage": .string(stage), "values": .object(values.mapValues { .string($0) }),
                 "artifacts": .array(artifacts.map { .string($0) })])
    }

    init?(json: JSONValue) {
        guard case .object(let fields) = json, case .string(let stage)? = fields["stage"] else { return nil }
        var values: [String: String] = [:]
        if case .object(let map)? = fields["values"] {
            for (key, value) in map { if case .string(let s) = value { values[key] = s } }
        }
        var artifacts: [String] = []
        if case .array(let items)? = fields["artifacts"] {
            for item in items { if case .string(let s) = item { artifacts.append(s) } }
        }
        self.init(stage: stage, values: values, artifacts: artifacts)
    }
}

/// The outputs of a job's finished stages, in stage order.
public struct JobOutputs: Sendable, Hashable {
    public var stages: [StageOutput]

    public init(stages: [StageOutput] = []) { self.stages = stages }

    public static let empty = JobOutputs()

    public var isEmpty: Bool { stages.isEmpty }

    /// Every key/value; a later stage's value wins over an earlier one's.
    public var values: [String: String] {
        stages.reduce(into: [:]) { merged, stage in merged.merge(stage.values) { _, later in later } }
    }

    public var artifacts: [String] { stages.flatMap(\.artifacts) }

    /// Records `output` (replacing an earlier record of the same stage, e.g. after a redrive).
    public func adding(_ output: StageOutput) -> JobOutputs {
        var copy = self
        copy.stages.removeAll { $0.stage == output.stage }
        copy.stages.append(output)
        return copy
    }

    /// Keeps the outputs of the named stages only (a redrive from the start drops them all).
    public func keeping(stages names: Set<String>) -> JobOutputs {
        JobOutputs(stages: stages.filter { names.contains($0.stage) })
    }

    /// What later stages read from `$BATON_OUTPUTS`: per stage, plus the merged view.
    public var document: JSONValue {
        var byStage: [String: JSONValue] = [:]
        for stage in stages {
            byStage[stage.stage] = .object(["values": .object(stage.values.mapValues { .string($0) }),
                                            "artifacts": .array(stage.artifacts.map { .string($0) })])
        }
        return .object(["stages": .object(byStage), "values": .object(values.mapValues { .string($0) }),
                        "artifacts": .array(artifacts.map { .string($0) })])
    }

    /// Environment variables for a shell stage: `BATON_OUT_<KEY>` per merged value (the key in
    /// upper case, other characters as `_`) and `BATON_ARTIFACTS` (one URI per line).
    public var environment: [String: String] {
        var env: [String: String] = [:]
        for (key, value) in values { env[Self.variableName(key)] = value }
        let all = artifacts
        if !all.isEmpty { env["BATON_ARTIFACTS"] = all.joined(separator: "\n") }
        return env
    }

    public static func variableName(_ key: String) -> String {
        "BATON_OUT_" + String(key.uppercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
    }

    /// The stored form: a JSON array of stage records, nil when there is nothing to store.
    public var storedJSON: String? {
        guard !stages.isEmpty else { return nil }
        return String(decoding: JSONValue.array(stages.map(\.json)).encoded(), as: UTF8.self)
    }

    /// Reads back what `storedJSON` wrote (nil or empty text: no outputs).
    public static func stored(_ text: String?) -> JobOutputs {
        guard let text, !text.isEmpty, case .array(let items)? = try? JSONValue.parse(Data(text.utf8), what: "outputs") else {
            return .empty
        }
        return JobOutputs(stages: items.compactMap(StageOutput.init(json:)))
    }
}
