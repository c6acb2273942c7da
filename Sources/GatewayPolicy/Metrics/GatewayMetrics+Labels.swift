/// Series keys and label text: the text is made once per series, when its slot is added.
extension GatewayMetrics {
    /// The key of a series: its family and the hashes of its label values, in order.
    static func key(_ family: UInt32, _ a: UInt64 = 0, _ b: UInt64 = 0, _ c: UInt64 = 0, _ d: UInt64 = 0) -> UInt64 {
        var hash = SharedHash()
        hash.add(UInt64(family))
        hash.add(a)
        hash.add(b)
        hash.add(c)
        hash.add(d)
        return hash.slotKey
    }

    static func refusedKey(_ reason: RefusalReason) -> UInt64 {
        key(MetricFamily.refused.rawValue, SharedHash.of(reason.label))
    }

    static func refusedLabels(_ reason: RefusalReason) -> String {
        "reason=" + quoted(reason.label)
    }

    /// A status code's label: the code, or `other` (0) for one outside 100...599.
    static func codeLabel(_ code: Int) -> String {
        code == 0 ? "other" : String(code)
    }

    func requestLabels(_ code: Int, _ model: Int, _ backend: Int) -> String {
        backendLabel(backend) + ",code=" + Self.quoted(Self.codeLabel(code)) + "," + modelLabel(model)
    }

    func tokenLabels(_ kind: Int, _ model: Int) -> String {
        "kind=" + Self.quoted(Self.tokenKinds[kind]) + "," + modelLabel(model)
    }

    /// Bytes a model's or a backend's label may take: with a code and a user's, a request's
    /// labels still fit a slot (`SeriesTable.textCapacity`).
    static let configLabelRoom = 72

    func modelLabel(_ model: Int) -> String { Self.label("model", models[model], room: Self.configLabelRoom) }

    func backendLabel(_ backend: Int) -> String { Self.label("backend", backends[backend], room: Self.configLabelRoom) }

    /// `"value"` escaped as Prometheus's text format wants a label value: backslash, double
    /// quote and line feed.
    public static func quoted(_ value: String) -> String {
        var out = "\""
        for character in value.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out + "\""
    }

    /// `user="name"` in at most `room` bytes (at least 32).
    static func userLabel(_ name: String, room: Int) -> String {
        label("user", name, room: max(room, 32))
    }

    /// `name="value"` in at most `room` bytes: a value too long is cut at a character, and the
    /// hash of the whole value added, so two long values never share a label.
    static func label(_ name: String, _ value: String, room: Int) -> String {
        let whole = name + "=" + quoted(value)
        if whole.utf8.count <= room { return whole }
        let suffix = "~" + String(SharedHash.of(value), radix: 16)
        var cut = ""
        for character in value.unicodeScalars {
            let next = cut + String(character)
            guard (name + "=" + quoted(next + suffix)).utf8.count <= room else { break }
            cut = next
        }
        return name + "=" + quoted(cut + suffix)
    }
}
