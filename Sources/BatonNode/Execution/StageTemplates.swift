import BatonCore
import BatonStore

/// What stage templates (`{{output.KEY}}`, `{{job.id}}`, `{{job.attempt}}`, `{{stage.name}}`)
/// render to under a lease, shared by the executors that take templates.
enum StageTemplates {
    /// The value of a reference other than `env` (which only HTTP headers may read).
    static func value(_ reference: Template.Reference, lease: Lease, outputs: [String: String]) -> String {
        switch reference.namespace {
        case .output: outputs[reference.name] ?? ""
        case .job: reference.name == "attempt" ? String(lease.attempt) : lease.jobID
        case .stage: lease.stage.name
        case .env: ""
        }
    }

    /// The failure of a template naming an output no earlier stage wrote.
    static func missingOutput(_ name: String, field: String, outputs: [String: String]) -> Failure {
        let known = outputs.keys.sorted()
        return .fatal("missing_output",
                      "\(field) uses {{output.\(name)}}, but no earlier stage wrote the output \"\(name)\""
                          + (known.isEmpty ? " (there are no outputs)" : " (outputs: \(known.joined(separator: ", ")))"))
    }

    /// Renders `text` (a template without `env`) under `lease`, or the fatal failure that
    /// stops the stage before anything is sent.
    static func render(_ text: String, field: String, lease: Lease) -> Result<String, TemplateFailure> {
        let outputs = lease.outputs.values
        do {
            let template = try Template.parse(text, field: field, allowEnv: false)
            if let missing = template.references.first(where: { $0.namespace == .output && outputs[$0.name] == nil }) {
                return .failure(TemplateFailure(failure: missingOutput(missing.name, field: field, outputs: outputs)))
            }
            return .success(try template.render { value($0, lease: lease, outputs: outputs) })
        } catch {
            return .failure(TemplateFailure(failure: .fatal("invalid_template", error.description)))
        }
    }

    struct TemplateFailure: Error {
        var failure: Failure
    }
}
