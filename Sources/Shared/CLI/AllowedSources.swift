import ArgumentParser
import WireFormat

/// `--allow CIDR` (repeatable), as the relay and the sink's reflector read it.
public enum AllowedSources {
    /// The prefixes given; nil when one of them is `any` (every source).
    public static func parse(_ texts: [String]) throws -> [IPPrefix]? {
        if texts.contains(where: { $0.lowercased() == "any" }) { return nil }
        return try texts.map { text in
            guard let prefix = IPPrefix(text) else {
                throw ValidationError("--allow '\(text)' is not a prefix such as 198.18.1.0/24 or 2001:db8::/32")
            }
            return prefix
        }
    }
}
