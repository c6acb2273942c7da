/// The request headers the gateway reads, by lower-case name. A field per header instead of a
/// dictionary, which would hash each name on every insert and lookup of every request.
/// Any other name reads as absent and is not kept.
public struct RequestHeaders: Sendable, ExpressibleByDictionaryLiteral {
    /// One header the gateway reads.
    package enum Field: CaseIterable {
        case authorization, apiKey, accept, accessControlRequestHeaders, origin, contentType, contentLength

        /// The header's lower-case name.
        var name: String {
            switch self {
            case .authorization: "authorization"
            case .apiKey: "api-key"
            case .accept: "accept"
            case .accessControlRequestHeaders: "access-control-request-headers"
            case .origin: "origin"
            case .contentType: "content-type"
            case .contentLength: "content-length"
            }
        }

        init?(name: String) {
            guard let field = Self.allCases.first(where: { $0.name == name }) else { return nil }
            self = field
        }
    }

    /// The values, in the order of `Field`'s cases.
    private var values: (String?, String?, String?, String?, String?, String?, String?) = (nil, nil, nil, nil, nil, nil, nil)

    public init() {}

    /// Keeps the headers of `headers` the gateway reads; names in any case.
    public init(_ headers: [String: String]) {
        for (name, value) in headers { self[ASCII.lowercased(name)] = value }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        for (name, value) in elements { self[ASCII.lowercased(name)] = value }
    }

    /// The value of the header `name` (lower-case); nil when absent or not one the gateway reads.
    public subscript(name: String) -> String? {
        get { Field(name: name).flatMap { self[$0] } }
        set { if let field = Field(name: name) { self[field] = newValue } }
    }

    package subscript(field: Field) -> String? {
        get {
            switch field {
            case .authorization: values.0
            case .apiKey: values.1
            case .accept: values.2
            case .accessControlRequestHeaders: values.3
            case .origin: values.4
            case .contentType: values.5
            case .contentLength: values.6
            }
        }
        set {
            switch field {
            case .authorization: values.0 = newValue
            case .apiKey: values.1 = newValue
            case .accept: values.2 = newValue
            case .accessControlRequestHeaders: values.3 = newValue
            case .origin: values.4 = newValue
            case .contentType: values.5 = newValue
            case .contentLength: values.6 = newValue
            }
        }
    }

    /// How many of the headers are present.
    public var count: Int { Field.allCases.filter { self[$0] != nil }.count }
}
