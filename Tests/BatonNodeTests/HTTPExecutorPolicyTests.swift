import BatonCore
import BatonNode
import Foundation
import Testing

/// The pure decisions behind the executor: statuses, Retry-After, excerpts, redaction.
struct HTTPExecutorPolicyTests {
    func failure(_ status: Int, _ headers: [String: String] = [:]) -> Failure? {
        HTTPResponsePolicy.failure(status: status, header: { name in headers.first { $0.key.lowercased() == name }?.value },
                                   retryableHeader: "x-should-retry", method: "GET", url: "http://h/x", now: Date())
    }

    @Test(arguments: [200, 201, 204, 299])
    func twoHundredsSucceed(status: Int) {
        #expect(failure(status) == nil)
    }

    @Test(arguments: [400, 401, 403, 404, 409, 418, 422, 301, 302])
    func clientErrorsAndRedirectsAreFatal(status: Int) {
        #expect(failure(status)?.errorClass == .fatal)
        #expect(failure(status)?.reason == "http_\(status)")
    }

    @Test(arguments: [429, 502, 503, 504])
    func throttlingAndGatewayErrorsAreTransient(status: Int) {
        #expect(failure(status)?.errorClass == .transient)
        #expect(failure(status, ["Retry-After": "7"])?.retryAfterSec == 7)
    }

    @Test func retryableMarkOnlyCountsWhenItSaysTrue() {
        #expect(failure(500, ["x-should-retry": "TRUE"])?.errorClass == .transient)
        #expect(failure(500, ["x-should-retry": "false"])?.errorClass == .fatal)
    }

    @Test func retryAfterReadsSecondsAndAllThreeHTTPDateForms() {
        let now = Date(timeIntervalSince1970: 784_111_777)  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(HTTPResponsePolicy.retryAfterSeconds("120", now: now) == 120)
        #expect(HTTPResponsePolicy.retryAfterSeconds(" 0 ", now: now) == 0)
        #expect(HTTPResponsePolicy.retryAfterSeconds("Sun, 06 Nov 1994 08:50:07 GMT", now: now) == 30)
        #expect(HTTPResponsePolicy.retryAfterSeconds("Sunday, 06-Nov-94 08:49:47 GMT", now: now) == 10)
        #expect(HTTPResponsePolicy.retryAfterSeconds("Sun Nov  6 08:49:42 1994", now: now) == 5)
        #expect(HTTPResponsePolicy.retryAfterSeconds("Sun, 06 Nov 1994 08:00:00 GMT", now: now) == 0)
        #expect(HTTPResponsePolicy.retryAfterSeconds("-5", now: now) == nil)
        #expect(HTTPResponsePolicy.retryAfterSeconds("soon", now: now) == nil)
        #expect(HTTPResponsePolicy.retryAfterSeconds("1e9", now: now) == nil)
    }

    @Test func excerptNeverSplitsACharacterAndMarksWhatItLeftOut() {
        let text = Array("ab€d".utf8)  // € is 3 bytes: 2...4
        #expect(HTTPResponsePolicy.excerpt(text, limit: 100) == "ab€d")
        #expect(HTTPResponsePolicy.excerpt(text, limit: 4) == "ab…")
        #expect(HTTPResponsePolicy.excerpt(text, limit: 5) == "ab€…")
        #expect(HTTPResponsePolicy.excerpt(text, limit: 0) == nil)
        #expect(HTTPResponsePolicy.excerpt([], limit: 10) == nil)
        #expect(HTTPResponsePolicy.excerpt(text, limit: 100, truncated: true) == "ab€d…")
    }

    @Test func redactionRemovesSecretsAndATailThatBeginsOne() {
        #expect(HTTPResponsePolicy.redact("a=hunter2&b=hunter2", secrets: ["hunter2"]) == "a=[redacted]&b=[redacted]")
        #expect(HTTPResponsePolicy.redact("token: hunt", secrets: ["hunter2"], cutShort: true) == "token: ")
    }
}
