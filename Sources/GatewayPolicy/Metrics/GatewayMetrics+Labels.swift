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
        "backend=" + Self.quoted(backends[backend]) + ",code=" + Self.quoted(Self.codeLabel(code)) + ",model=" + Self.quoted(models[model])
    }

    func tokenLabels(_ kind: Int, _ model: Int) -> String {
        "kind=" + Self.quoted(Self.tokenKinds[kind]) + ",model=" + Self.quoted(models[model])
    }

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

    /// `user="name"` in at most `room` bytes: a name too long for the slot is cut, and the
    /// hash of the whole name added, so two long names never share a label.
    static func userLabel(_ name: String, room: Int) -> String {
        let whole = "user=" + quoted(name)
        if whole.utf8.count <= room { return whole }
        let suffix = "~" + String(SharedHash.of(name), radix: 16)
        var cut = ""
        for character in name.unicodeScalars {
            let next = cut + String(character)
            guard ("user=" + quoted(next + suffix)).utf8.count <= room else { break }
            cut = next
        }
        return "user=" + quoted(cut + suffix)
    }
}
