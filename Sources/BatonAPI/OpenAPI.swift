import BatonCore
import BatonNode
import Foundation
import HTTPTypes

/// The OpenAPI 3.1 document of the API (Sources/BatonAPI/openapi.json), as served.
public enum OpenAPI {
    public static let document: JSONValue = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
              let data = try? Data(contentsOf: url), let value = try? JSONValue.parse(data, what: "openapi.json") else {
            return .object(["error": .string("the OpenAPI document is missing from this build")])
        }
        return value
    }()

    /// Every route the server answers, as `METHOD path` (lower-case method), for the test
    /// that keeps the document in step with the server.
    public static var routes: [String] {
        APIRoutes.table.map { "\($0.method.rawValue.lowercased()) \($0.path)" }
    }

    /// The scope each route needs (nil: open), by `method path` as in `routes`.
    public static var scopes: [String: String?] {
        Dictionary(uniqueKeysWithValues: APIRoutes.table.map { ("\($0.method.rawValue.lowercased()) \($0.path)", $0.scope?.rawValue) })
    }
}
