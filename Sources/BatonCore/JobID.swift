import Foundation

/// Generates time-sortable job ids: 48 bits of milliseconds and 80 random bits in Crockford
/// base32 (the ULID layout), so ids sort by creation time as plain strings.
public enum JobID {
    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

    public static func make(at date: Date = Date()) -> String {
        var generator = SystemRandomNumberGenerator()
        return make(at: date, using: &generator)
    }

    public static func make<G: RandomNumberGenerator>(at date: Date, using generator: inout G) -> String {
        let ms = UInt64(max(0, date.epochMilliseconds))
        var chars = [Character](repeating: "0", count: 26)
        var time = ms
        for i in stride(from: 9, through: 0, by: -1) {
            chars[i] = alphabet[Int(time & 31)]
            time >>= 5
        }
        var high = generator.next() & 0xFF_FFFF_FFFF  // 40 bits
        var low = generator.next() & 0xFF_FFFF_FFFF   // 40 bits
        for i in stride(from: 25, through: 18, by: -1) {
            chars[i] = alphabet[Int(low & 31)]
            low >>= 5
        }
        for i in stride(from: 17, through: 10, by: -1) {
            chars[i] = alphabet[Int(high & 31)]
            high >>= 5
        }
        return String(chars)
    }
}
