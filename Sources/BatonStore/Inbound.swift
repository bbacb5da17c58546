import BatonCore
import Foundation

/// One chat message as a channel delivered it (a Telegram update, a Discord event...).
public struct InboundMessage: Sendable, Hashable {
    public var channel: String
    public var account: String
    public var peer: String
    /// The conversation it belongs to; default `channel:account:peer` (one session per peer).
    public var session: String?
    public var messageID: String
    public var text: String
    public var receivedAt: Date

    public init(channel: String, account: String, peer: String, session: String? = nil, messageID: String, text: String,
                receivedAt: Date) {
        self.channel = channel
        self.account = account
        self.peer = peer
        self.session = session
        self.messageID = messageID
        self.text = text
        self.receivedAt = receivedAt
    }

    public var sessionKey: String { session ?? "\(channel):\(account):\(peer)" }

    /// What a duplicate delivery shares with the original: channel, account, peer, session and
    /// message id.
    public var dedupeKey: String {
        [channel, account, peer, session ?? "", messageID].joined(separator: "\u{1F}")
    }

    /// The message as the job's payload lists it.
    public var json: JSONValue {
        .object(["message_id": .string(messageID), "text": .string(text),
                 "received_at": .string(ISO8601DateFormatter().string(from: receivedAt))])
    }
}

/// How inbound messages become jobs.
public struct InboundPolicy: Sendable, Hashable {
    /// Duplicate deliveries inside this window are dropped.
    public var dedupeTTLSec: Int
    /// Messages of one session arriving within this long of each other share one job.
    public var debounceMs: Int
    /// The job a batch of messages runs as: its stages, lane, retry policy... (`job_id`,
    /// `session_key` and `payload` are set per batch).
    public var template: JobSpec

    public init(dedupeTTLSec: Int = 1200, debounceMs: Int = 0, template: JobSpec) {
        self.dedupeTTLSec = dedupeTTLSec
        self.debounceMs = debounceMs
        self.template = template
    }

    /// The job for the first message of a batch.
    public func job(for message: InboundMessage, id: String) -> JobSpec {
        var spec = template
        spec.id = id
        spec.idempotencyKey = nil
        spec.sessionKey = message.sessionKey
        spec.payload = Self.payload(message, messages: [message.json])
        return spec
    }

    /// The payload of a batch: where it came from and its messages in arrival order.
    public static func payload(_ message: InboundMessage, messages: [JSONValue]) -> JSONValue {
        .object(["inbound": .object([
            "channel": .string(message.channel), "account": .string(message.account), "peer": .string(message.peer),
            "session": .string(message.sessionKey), "messages": .array(messages),
        ])])
    }

    /// `spec` with `message` added to its batch.
    public static func appending(_ message: InboundMessage, to spec: JobSpec) -> JobSpec {
        var spec = spec
        var messages: [JSONValue] = []
        if case .object(let root) = spec.payload, case .object(let inbound)? = root["inbound"],
           case .array(let existing)? = inbound["messages"] {
            messages = existing
        }
        messages.append(message.json)
        spec.payload = payload(message, messages: messages)
        return spec
    }
}

/// What became of an inbound message.
public enum InboundResult: Sendable, Hashable {
    /// A new job was created for it (it starts a batch when debouncing).
    case created(jobID: String)
    /// It joined the waiting job of its session's open batch.
    case appended(jobID: String)
    /// The same message was delivered before, inside the dedupe window: dropped.
    case duplicate(jobID: String)

    public var jobID: String {
        switch self {
        case .created(let id), .appended(let id), .duplicate(let id): id
        }
    }
}
