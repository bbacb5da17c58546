/// What an `http` stage sends. URL, headers and body are templates (see `Template`): they may
/// use outputs of earlier stages, and headers may read secrets from the node's environment.
public struct HTTPStageRequest: Sendable, Hashable {
    public static let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
    /// The header that marks a 500 response as worth retrying (the convention of the
    /// OpenAI and Anthropic API clients).
    public static let defaultRetryableHeader = "x-should-retry"

    public var method: String
    public var url: String
    public var headers: [String: String]
    public var body: String?
    /// A 500 response carrying this header with the value `true` is transient, not fatal.
    public var retryableHeader: String
    /// Response body bytes kept with the attempt.
    public var excerptBytes: Int

    public init(method: String = "GET", url: String, headers: [String: String] = [:], body: String? = nil,
                retryableHeader: String = HTTPStageRequest.defaultRetryableHeader, excerptBytes: Int = 4096) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.retryableHeader = retryableHeader
        self.excerptBytes = excerptBytes
    }
}

extension HTTPStageRequest {
    static let keys = ["method", "url", "headers", "body", "retryable_header", "excerpt_bytes"]

    /// Reads `run.http` of an envelope, checking every template.
    static func read(_ value: JSONValue, path: String) throws(BatonError) -> HTTPStageRequest {
        let r = try ObjectReader(value, path: path, allowedKeys: keys)
        guard let url = try r.string("url", maxLength: 8192) else {
            throw BatonError(.invalidInput, field: r.field("url"), "is required: expected an http:// or https:// URL")
        }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw r.invalid("url", .string(url), "expected an http:// or https:// URL")
        }
        _ = try Template.parse(url, field: r.field("url"), allowEnv: false)
        let body = try r.string("body", maxLength: 1_048_576, nonEmpty: false)
        if let body { _ = try Template.parse(body, field: r.field("body"), allowEnv: false) }
        let method = try r.string("method", maxLength: 8)?.uppercased() ?? (body == nil ? "GET" : "POST")
        guard methods.contains(method) else {
            throw r.invalid("method", .string(method), "expected one of \(methods.joined(separator: ", "))")
        }
        let headers = try r.stringMap("headers", maxCount: 64) ?? [:]
        for (name, value) in headers {
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) }) else {
                throw BatonError(.invalidInput, field: "\(r.field("headers")).\(name)", "expected a header name of letters, digits, - and _")
            }
            _ = try Template.parse(value, field: "\(r.field("headers")).\(name)", allowEnv: true)
        }
        let retryable = try r.string("retryable_header", maxLength: 128) ?? defaultRetryableHeader
        let excerpt = try r.int("excerpt_bytes", in: 0...1_048_576) ?? 4096
        return HTTPStageRequest(method: method, url: url, headers: headers, body: body, retryableHeader: retryable,
                                excerptBytes: excerpt)
    }

    var json: JSONValue {
        var fields: [String: JSONValue] = ["method": .string(method), "url": .string(url)]
        if !headers.isEmpty { fields["headers"] = .object(headers.mapValues { .string($0) }) }
        if let body { fields["body"] = .string(body) }
        if retryableHeader != Self.defaultRetryableHeader { fields["retryable_header"] = .string(retryableHeader) }
        if excerptBytes != 4096 { fields["excerpt_bytes"] = .int(Int64(excerptBytes)) }
        return .object(fields)
    }
}

extension HTTPStageRequest: Codable {
    enum CodingKeys: String, CodingKey {
        case method, url, headers, body, retryableHeader = "retryable_header", excerptBytes = "excerpt_bytes"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(method: try c.decode(String.self, forKey: .method), url: try c.decode(String.self, forKey: .url),
                  headers: try c.decodeIfPresent([String: String].self, forKey: .headers) ?? [:],
                  body: try c.decodeIfPresent(String.self, forKey: .body),
                  retryableHeader: try c.decodeIfPresent(String.self, forKey: .retryableHeader) ?? Self.defaultRetryableHeader,
                  excerptBytes: try c.decodeIfPresent(Int.self, forKey: .excerptBytes) ?? 4096)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(method, forKey: .method)
        try c.encode(url, forKey: .url)
        if !headers.isEmpty { try c.encode(headers, forKey: .headers) }
        try c.encodeIfPresent(body, forKey: .body)
        if retryableHeader != Self.defaultRetryableHeader { try c.encode(retryableHeader, forKey: .retryableHeader) }
        if excerptBytes != 4096 { try c.encode(excerptBytes, forKey: .excerptBytes) }
    }
}
