import BatonCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// How an error reaches an API client: a status, and a JSON body with a stable code, the
/// field it concerns and a message (`{"error": {"code": "invalid_input", "field": "stages",
/// "message": "..."}}`).
struct APIError: Error {
    var status: HTTPResponse.Status
    var code: String
    var field: String?
    var message: String

    static let unauthorized = APIError(status: .unauthorized, code: "unauthorized",
                                       message: "expected an Authorization: Bearer token from api.tokens")

    static func forbidden(_ needed: String) -> APIError {
        APIError(status: .forbidden, code: "forbidden", message: "this token's scope does not allow it: expected a \(needed) token")
    }

    static func tooLarge(_ limit: Int) -> APIError {
        APIError(status: .contentTooLarge, code: "too_large", field: "(body)",
                 message: "expected a body of at most \(limit) bytes (api.max_body_bytes)")
    }

    static func notFound(_ path: String) -> APIError {
        APIError(status: .notFound, code: "not_found", message: "no such route: \(path) (see /openapi.json)")
    }

    /// Any error a handler throws, as a client sees it.
    init(_ error: any Error) {
        switch error {
        case let error as APIError:
            self = error
        case let error as BatonError:
            self.init(status: Self.status(for: error.code), code: error.code.rawValue, field: error.field, message: error.message)
        case is NIOTooManyBytesError:
            self = .tooLarge(0)
        case let error as HTTPError where error.status == .notFound:
            self = .notFound("")
        default:
            // A driver's error may quote SQL or paths: clients get the kind of error only.
            self.init(status: .internalServerError, code: BatonError.Code.internal.rawValue,
                      message: "internal error (\(String(describing: type(of: error))))")
        }
    }

    init(status: HTTPResponse.Status, code: String, field: String? = nil, message: String) {
        self.status = status
        self.code = code
        self.field = field
        self.message = message
    }

    static func status(for code: BatonError.Code) -> HTTPResponse.Status {
        switch code {
        case .invalidInput, .unsupportedSchema: .unprocessableContent
        case .unreadableInput: .badRequest
        case .notFound: .notFound
        case .invalidState, .conflict, .staleLease: .conflict
        case .storeUnavailable: .serviceUnavailable
        default: .internalServerError
        }
    }

    var json: JSONValue {
        var fields: [String: JSONValue] = ["code": .string(code), "message": .string(message)]
        if let field { fields["field"] = .string(field) }
        return .object(["error": .object(fields)])
    }
}

extension Response {
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(bytes: value.encoded())))
    }
}
