import Foundation

/// UTC calendar days and months as the ledger keys them: `YYYY-MM-DD` and `YYYY-MM`.
public enum UTCDay {
    /// The UTC date of `seconds` since the epoch, and the second of that day. Integer arithmetic
    /// (Hinnant's civil_from_days) instead of gmtime_r, which takes glibc's global time-zone lock
    /// on every call, from every thread.
    public static func civil(_ seconds: Int) -> (year: Int, month: Int, day: Int, second: Int) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shifted = (5 * dayOfYear + 2) / 153  // months counted from March
        let month = shifted < 10 ? shifted + 3 : shifted - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, dayOfYear - (153 * shifted + 2) / 5 + 1,
                seconds - days * 86_400)
    }

    /// The day of `seconds` since the epoch.
    public static func day(_ seconds: Int) -> String {
        let parts = UTCDay.civil(seconds)
        return text(year: parts.year, month: parts.month, day: parts.day)
    }

    /// `YYYY-MM-DD`, digit by digit: this runs for every request.
    static func text(year: Int, month: Int, day: Int) -> String {
        func digit(_ value: Int) -> UInt8 { UInt8(48 + value % 10) }
        let bytes: [UInt8] = [digit(year / 1000), digit(year / 100), digit(year / 10), digit(year), 45,
                              digit(month / 10), digit(month), 45, digit(day / 10), digit(day)]
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`, the one ISO 8601 form the gateway writes (the log keeps its own,
    /// with milliseconds).
    public static func isoTime(_ seconds: Int) -> String {
        let parts = civil(seconds)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return text(year: parts.year, month: parts.month, day: parts.day)
            + "T\(two(parts.second / 3600)):\(two(parts.second / 60 % 60)):\(two(parts.second % 60))Z"
    }

    public static func today(_ now: Date = Date()) -> String {
        day(WallClock.seconds(now))
    }

    /// The month of a `YYYY-MM-DD` day.
    public static func month(of day: String) -> String {
        String(day.prefix(7))
    }

    /// Seconds since the epoch at the start of the UTC day after `day`; nil when `day` is not a day.
    public static func end(of day: String) -> Int? {
        guard let start = start(of: day) else { return nil }
        return start + 86_400
    }

    /// Seconds since the epoch at the start of the UTC month after the one `seconds` falls in.
    public static func startOfNextMonth(after seconds: Int) -> Int {
        let parts = UTCDay.civil(seconds)
        let next = parts.month == 12 ? (parts.year + 1, 1) : (parts.year, parts.month + 1)
        return start(of: text(year: next.0, month: next.1, day: 1))!
    }

    /// Seconds since the epoch at 00:00 UTC of `day`.
    public static func start(of day: String) -> Int? {
        guard isValid(day) else { return nil }
        let parts = day.split(separator: "-").compactMap { Int($0) }
        // Days from civil (Hinnant), the inverse of `civil`.
        let year = parts[1] <= 2 ? parts[0] - 1 : parts[0]
        let era = (year >= 0 ? year : year - 399) / 400
        let yearOfEra = year - era * 400
        let monthIndex = parts[1] > 2 ? parts[1] - 3 : parts[1] + 9
        let dayOfYear = (153 * monthIndex + 2) / 5 + parts[2] - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return (era * 146_097 + dayOfEra - 719_468) * 86_400
    }

    /// `YYYY-MM-DD` naming a real day.
    public static func isValid(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard text.utf8.count == 10, parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
              (1...12).contains(month), day >= 1 else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return day <= days
    }
}
