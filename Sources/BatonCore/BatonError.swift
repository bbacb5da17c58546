/// Every error Baton reports: a stable code, the field it concerns (when there is one) and a
/// message safe to show a user. Codes are part of the public contract (CLI exit codes and,
/// later, API error bodies are derived from them).
public struct BatonError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Input that does not validate: an envelope, a config file, a CLI argument.
        public static let invalidInput = Code(rawValue: "invalid_input")
        /// An input file that cannot be read: missing, a directory, or not readable.
        public static let unreadableInput = Code(rawValue: "unreadable_input")
        /// An envelope written for a newer Baton than this one.
        public static let unsupportedSchema = Code(rawValue: "unsupported_schema")
        /// The job (or another named object) does not exist.
        public static let notFound = Code(rawValue: "not_found")
        /// The write came from a lease that is no longer the job's current lease.
        public static let staleLease = Code(rawValue: "stale_lease")
        /// The operation is not allowed in the object's current state.
        public static let invalidState = Code(rawValue: "invalid_state")
        /// Another live party already holds the name (a second process with a live node id).
        public static let conflict = Code(rawValue: "conflict")
        /// The store cannot be reached or refused the operation.
        public static let storeUnavailable = Code(rawValue: "store_unavailable")
        /// A bug or an unexpected condition inside Baton.
        public static let `internal` = Code(rawValue: "internal")
    }

    public var code: Code
    public var field: String?
    public var message: String

    public init(_ code: Code, field: String? = nil, _ message: String) {
        self.code = code
        self.field = field
        self.message = message
    }

    public var description: String {
        if let field { return "\(field): \(message)" }
        return message
    }
}
