import BatonCore
import Foundation

/// What an HTTP stage makes of a response: pure decisions on status and headers, tested
/// without a server or a clock.
///
/// - 2xx succeeds;
/// - 429 and 503 are transient, honouring `Retry-After` (seconds or an HTTP date);
/// - 500 is fatal, unless the response carries the retryable header (`x-should-retry: true`
///   by default) or a `Retry-After`: then it is transient;
/// - any other 5xx (502, 504, ...) is transient;
/// - 4xx other than 429 is fatal, and so is anything else (a 3xx: redirects are not followed,
///   since they could carry secret headers to another origin);
/// - every failure's reason is `http_<status>`; its message names the method, URL and status
///   only (never a header value or the body).
public enum HTTPResponsePolicy {
    /// The failure a response status stands for, or nil when the stage succeeded.
    /// - Parameters:
    ///   - header: the response header of a name (case-insensitive), or nil.
    ///   - now: when the response arrived (to turn a `Retry-After` date into seconds).
    public static func failure(status: Int, header: (String) -> String?, retryableHeader: String,
                               method: String, url: String, now: Date) -> Failure? {
        if (200..<300).contains(status) { return nil }
        let reason = "http_\(status)"
        let message = "\(method) \(url) answered HTTP \(status)"
        let retryAfter = header("retry-after").flatMap { retryAfterSeconds($0, now: now) }
        switch status {
        case 429, 503:
            return .transient(reason, message, retryAfterSec: retryAfter)
        case 500:
            let marked = header(retryableHeader)?.trimmingCharacters(in: .whitespaces).lowercased() == "true"
            guard marked || retryAfter != nil else { return .fatal(reason, message) }
            return .transient(reason, message, retryAfterSec: retryAfter)
        case 501..<600:
            return .transient(reason, message, retryAfterSec: retryAfter)
        case 300..<400:
            return .fatal(reason, message + " (redirects are not followed)")
        default:
            return .fatal(reason, message)
        }
    }

    /// A `Retry-After` value in seconds: delay-seconds (`120`), or an HTTP date in the
    /// IMF-fixdate, RFC 850 or asctime form, counted from `now` (a past date is 0). Nil when
    /// the value is neither.
    public static func retryAfterSeconds(_ value: String, now: Date) -> Double? {
        let text = value.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { return nil }
        if text.allSatisfy(\.isASCII), let seconds = Double(text), seconds.isFinite, seconds >= 0,
           text.allSatisfy({ $0.isNumber || $0 == "." }) {
            return seconds
        }
        // asctime pads the day with a space ("Nov  6"): collapse runs of spaces first.
        let date = text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
        for format in httpDateFormats {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = format
            if let date = formatter.date(from: date) { return max(0, date.timeIntervalSince(now)) }
        }
        return nil
    }

    /// RFC 9110 §5.6.7: the preferred IMF-fixdate, then the two obsolete forms.
    static let httpDateFormats = [
        "EEE, dd MMM yyyy HH:mm:ss zzz",
        "EEEE, dd-MMM-yy HH:mm:ss zzz",
        "EEE MMM d HH:mm:ss yyyy",
    ]

    /// The text kept with the attempt: the first `limit` bytes of `body`, cut back to a whole
    /// UTF-8 character (other invalid bytes are repaired), and `…` appended when anything was
    /// left out (`truncated` says the body was longer than `body`). Nil when nothing is kept.
    public static func excerpt(_ body: [UInt8], limit: Int, truncated: Bool = false) -> String? {
        guard limit > 0, !body.isEmpty else { return nil }
        guard body.count > limit else {
            let text = String(decoding: body, as: UTF8.self)
            return truncated ? text + "…" : text
        }
        var end = limit
        // Step back over the continuation bytes (10xxxxxx) of a character cut at the limit,
        // and drop its lead byte when the character does not fit whole.
        var start = end
        while start > 0 && start > end - 4 && body[start - 1] & 0xC0 == 0x80 { start -= 1 }
        if start > 0 {
            let lead = body[start - 1]
            let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            if length > 1 && (start - 1) + length > end { end = start - 1 }
        }
        return String(decoding: body[..<end], as: UTF8.self) + "…"
    }

    /// `text` with every occurrence of each secret replaced; when the text was cut short, a
    /// tail that begins a secret goes too (the rest of it was never read).
    public static func redact(_ text: String, secrets: [String], cutShort: Bool = false) -> String {
        var out = text
        for secret in secrets where !secret.isEmpty {
            out = out.replacingOccurrences(of: secret, with: redacted)
        }
        if cutShort {
            for secret in secrets where secret.count > 1 {
                for length in stride(from: secret.count - 1, through: 1, by: -1)
                where out.hasSuffix(secret.prefix(length)) {
                    out.removeLast(length)
                    break
                }
            }
        }
        return out
    }

    public static let redacted = "[redacted]"
}
