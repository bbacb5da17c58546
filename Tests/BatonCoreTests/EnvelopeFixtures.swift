import BatonCore
import Foundation
import Testing

/// The smallest valid stage: one that does nothing.
let noopStage = #"{"name": "build", "run": {"noop": true}}"#

/// A minimal valid envelope (one no-op stage) with `extra` top-level fields added.
func envelope(_ extra: String = "") -> Data {
    let fields = [#""stages": [\#(noopStage)]"#, extra].filter { !$0.isEmpty }
    return Data("{\(fields.joined(separator: ", "))}".utf8)
}

/// An envelope with the given `stages` array text and nothing else.
func envelope(stages: String) -> Data {
    Data(#"{"stages": \#(stages)}"#.utf8)
}

/// The error reading `data` throws, or nil when the document is accepted.
func readError(_ data: Data, reader: EnvelopeReader = EnvelopeReader()) -> BatonError? {
    do {
        _ = try reader.read(data)
        return nil
    } catch {
        return error
    }
}

/// Reads a document that must hold exactly one envelope.
func readOne(_ data: Data, reader: EnvelopeReader = EnvelopeReader(), now: Date = Date()) throws -> JobSpec {
    let specs = try reader.read(data, now: now)
    try #require(specs.count == 1)
    return specs[0]
}
