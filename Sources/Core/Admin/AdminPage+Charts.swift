/// The page's charts, as inline SVG scaled to the width of their section: a viewBox 400 units
/// wide keeps their text legible from a phone (about 360 px) to a desktop column.
extension AdminPage {
    /// What a daily chart counts.
    enum DailyMeasure {
        case requests, tokens

        var id: String { self == .requests ? "chart-requests" : "chart-tokens" }
        var title: String { self == .requests ? "Requests per user per day" : "Tokens per user per day" }
        var unit: String { self == .requests ? "requests" : "tokens" }

        func value(_ row: UsageTotal) -> Int64 {
            self == .requests ? row.requests : row.promptTokens + row.completionTokens
        }
    }

    static let chartWidth = 400.0
    /// Distinct colours in order, one per user; they repeat after ten users.
    static let palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#79706e"]

    /// The colour of `username`, by their place among every user, the same in every chart.
    func color(of username: String) -> String {
        let index = snapshot.users.firstIndex { $0.username == username } ?? snapshot.users.count
        return Self.palette[index % Self.palette.count]
    }

    /// One bar per day of `snapshot.days`, stacked by user in name order.
    func dailyChart(_ measure: DailyMeasure) -> String {
        let days = snapshot.days
        var values: [String: [String: Int64]] = [:]  // day -> user -> value
        for row in snapshot.daily where measure.value(row) > 0 { values[row.day ?? "", default: [:]][row.username, default: 0] += measure.value(row) }
        let users = Set(values.values.flatMap(\.keys)).sorted()
        var html = "<section id=\"\(measure.id)\"><h2>\(measure.title), last \(days.count) days</h2>"
        guard !users.isEmpty else { return html + "<p class=\"empty\">No \(measure.unit) in the last \(days.count) days.</p></section>\n" }
        let top = Self.niceCeiling(values.values.map { $0.values.reduce(0, +) }.max() ?? 0)
        let (left, right, upper, lower, height) = (44.0, 16.0, 8.0, 22.0, 200.0)
        let plot = (width: Self.chartWidth - left - right, height: height - upper - lower)
        let slot = plot.width / Double(max(days.count, 1))
        html += "<svg viewBox=\"0 0 \(Self.coordinate(Self.chartWidth)) \(Self.coordinate(height))\" role=\"img\" aria-label=\"\(measure.title)\">"
        for tick in Self.ticks(top) {
            let y = upper + plot.height - Double(tick) / Double(top) * plot.height
            html += "<line class=\"grid\" x1=\"\(Self.coordinate(left))\" x2=\"\(Self.coordinate(left + plot.width))\" y1=\"\(Self.coordinate(y))\" y2=\"\(Self.coordinate(y))\"/>"
            html += "<text x=\"\(Self.coordinate(left - 4))\" y=\"\(Self.coordinate(y + 4))\" text-anchor=\"end\">\(Self.compact(tick))</text>"
        }
        for (index, day) in days.enumerated() {
            let x = left + Double(index) * slot + slot * 0.11
            var stacked: Int64 = 0
            for user in users {
                guard let value = values[day]?[user] else { continue }
                let y = upper + plot.height - Double(stacked + value) / Double(top) * plot.height
                let barHeight = max(Double(value) / Double(top) * plot.height, 0.5)
                stacked += value
                let name = Self.escaped(user)
                html += "<rect x=\"\(Self.coordinate(x))\" y=\"\(Self.coordinate(y))\" width=\"\(Self.coordinate(slot * 0.78))\" "
                    + "height=\"\(Self.coordinate(barHeight))\" fill=\"\(color(of: user))\" data-user=\"\(name)\" data-day=\"\(day)\" "
                    + "data-value=\"\(value)\"><title>\(name), \(day): \(Self.grouped(value)) \(measure.unit)</title></rect>"
            }
            // A label a week apart, counted back from today, which always has one.
            if (days.count - 1 - index) % 7 == 0 {
                html += "<text x=\"\(Self.coordinate(x + slot * 0.39))\" y=\"\(Self.coordinate(height - 6))\" text-anchor=\"middle\">\(day.dropFirst(5))</text>"
            }
        }
        return html + "</svg>" + legend(users) + "</section>\n"
    }

    /// The models with the most tokens over the chart's days, every user together.
    var modelChart: String {
        let shown = Array(snapshot.models.prefix(10))
        var html = "<section id=\"chart-models\"><h2>Top models by tokens, last \(snapshot.days.count) days</h2>"
        guard !shown.isEmpty else { return html + "<p class=\"empty\">No requests in the last \(snapshot.days.count) days.</p></section>\n" }
        let largest = max(shown.map(\.tokens).max() ?? 0, 1)
        let bars = shown.map { model in
            HorizontalBar(label: model.model, fraction: Double(model.tokens) / Double(largest), color: Self.palette[0],
                          text: "\(Self.compact(model.tokens)) tokens, \(Self.compact(model.requests)) req",
                          attributes: "data-model=\"\(Self.escaped(model.model))\" data-requests=\"\(model.requests)\" "
                              + "data-tokens=\"\(model.tokens)\" data-cost=\"\(Self.decimal(model.costMicros))\"")
        }
        html += Self.horizontalBars(bars, label: "Top models by tokens")
        if snapshot.models.count > shown.count { html += "<p class=\"note\">and \(snapshot.models.count - shown.count) more.</p>" }
        return html + "</section>\n"
    }

    /// This month's cost per user who made requests this month, the most first.
    var costChart: String {
        let users = snapshot.users.filter { $0.month.requests > 0 || $0.month.costMicros > 0 }
            .sorted { ($1.month.costMicros, $0.username) < ($0.month.costMicros, $1.username) }
        let currency = Self.escaped(snapshot.currency)
        let html = "<section id=\"chart-cost\"><h2>Cost this month per user, \(currency)</h2>"
        guard !users.isEmpty else { return html + "<p class=\"empty\">No requests this month.</p></section>\n" }
        let largest = max(users.map(\.month.costMicros).max() ?? 0, 1)
        let bars = users.map { user in
            HorizontalBar(label: user.username, fraction: Double(user.month.costMicros) / Double(largest), color: color(of: user.username),
                          text: "\(Self.money(user.month.costMicros)) \(currency)",
                          attributes: "data-user=\"\(Self.escaped(user.username))\" data-value=\"\(Self.decimal(user.month.costMicros))\"")
        }
        return html + Self.horizontalBars(bars, label: "Cost this month per user") + "</section>\n"
    }

    /// One row of a horizontal bar chart; `attributes` are already escaped.
    struct HorizontalBar {
        var label: String
        /// Of the longest bar, 0...1.
        var fraction: Double
        var color: String
        var text: String
        var attributes: String
    }

    static func horizontalBars(_ bars: [HorizontalBar], label: String) -> String {
        let (labelWidth, valueWidth, rowHeight) = (120.0, 140.0, 24.0)
        let barSpace = chartWidth - labelWidth - valueWidth
        var svg = "<svg viewBox=\"0 0 \(coordinate(chartWidth)) \(coordinate(Double(bars.count) * rowHeight + 4))\" role=\"img\" aria-label=\"\(label)\">"
        for (index, bar) in bars.enumerated() {
            let y = Double(index) * rowHeight + 2
            let width = max(bar.fraction * barSpace, bar.fraction > 0 ? 1 : 0)
            let name = escaped(bar.label.count > 17 ? String(bar.label.prefix(16)) + "…" : bar.label)
            svg += "<g \(bar.attributes)><title>\(escaped(bar.label)): \(bar.text)</title>"
                + "<text class=\"label\" x=\"\(coordinate(labelWidth - 6))\" y=\"\(coordinate(y + 16))\" text-anchor=\"end\">\(name)</text>"
                + "<rect x=\"\(coordinate(labelWidth))\" y=\"\(coordinate(y + 3))\" width=\"\(coordinate(width))\" "
                + "height=\"\(coordinate(rowHeight - 6))\" fill=\"\(bar.color)\"/>"
                + "<text x=\"\(coordinate(labelWidth + width + 6))\" y=\"\(coordinate(y + 16))\">\(bar.text)</text></g>"
        }
        return svg + "</svg>"
    }

    func legend(_ users: [String]) -> String {
        "<ul class=\"legend\">" + users.map { user in
            "<li><span class=\"swatch\" style=\"background:\(color(of: user))\"></span>\(Self.escaped(user))</li>"
        }.joined() + "</ul>"
    }

    /// The smallest of 1, 2 and 5 times a power of ten that is at least `value` (and at least 1).
    static func niceCeiling(_ value: Int64) -> Int64 {
        var magnitude: Int64 = 1
        while true {
            for step: Int64 in [1, 2, 5] where step * magnitude >= value { return step * magnitude }
            guard magnitude <= Int64.max / 100 else { return value }
            magnitude *= 10
        }
    }

    /// Grid lines of a chart whose top is `top`: the bottom, the middle when it is whole, the top.
    static func ticks(_ top: Int64) -> [Int64] {
        top % 2 == 0 ? [0, top / 2, top] : [0, top]
    }

    /// An axis label: 950, 12k, 1.2M.
    static func compact(_ value: Int64) -> String {
        func scaled(_ unit: Int64, _ suffix: String) -> String {
            let tenths = value * 10 / unit
            return (tenths % 10 == 0 || tenths >= 100 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)") + suffix
        }
        if value >= 1_000_000_000 { return scaled(1_000_000_000, "G") }
        if value >= 1_000_000 { return scaled(1_000_000, "M") }
        if value >= 1_000 { return scaled(1_000, "k") }
        return "\(value)"
    }

    /// A coordinate with at most one decimal, to keep the SVG short.
    static func coordinate(_ value: Double) -> String {
        let tenths = (value * 10).rounded()
        return tenths.truncatingRemainder(dividingBy: 10) == 0 ? "\(Int(tenths / 10))" : "\(tenths / 10)"
    }
}
