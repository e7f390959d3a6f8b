/// A JSON object built field by field in insertion order, so report lines read the same every time.
public struct JSONLine: Sendable, CustomStringConvertible {
    private var fields: [String] = []

    public init() {}

    public mutating func add(_ key: String, _ value: some BinaryInteger) { fields.append("\(Self.quote(key)):\(value)") }
    public mutating func add(_ key: String, _ value: Bool) { fields.append("\(Self.quote(key)):\(value)") }
    public mutating func add(_ key: String, _ value: String) { fields.append("\(Self.quote(key)):\(Self.quote(value))") }
    public mutating func add(_ key: String, _ value: JSONLine) { fields.append("\(Self.quote(key)):\(value)") }
    public mutating func add(_ key: String, _ values: [JSONLine]) {
        fields.append("\(Self.quote(key)):[\(values.map(\.description).joined(separator: ","))]")
    }
    /// Rows of integers, such as a histogram's buckets.
    public mutating func add(_ key: String, _ rows: [[UInt64]]) {
        fields.append("\(Self.quote(key)):[\(rows.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ","))]")
    }
    public mutating func add(_ key: String, _ value: Double?, decimals: Int = 3) {
        guard let value, value.isFinite else { fields.append("\(Self.quote(key)):null"); return }
        fields.append("\(Self.quote(key)):\(Self.format(value, decimals: decimals))")
    }

    public var description: String { "{" + fields.joined(separator: ",") + "}" }

    public static func format(_ value: Double, decimals: Int) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        if rounded == rounded.rounded() { return String(Int64(rounded)) }
        return String(rounded)
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
