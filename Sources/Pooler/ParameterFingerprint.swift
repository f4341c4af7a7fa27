/// A fingerprint of a client's tracked parameters (`ClientConnection.trackedParameterNames`), so that a lease
/// compares one integer instead of looking each name up: a server remembers the fingerprint it last matched
/// (`ServerConnection.matchedFingerprint`) until its own parameters change. Swift's `Hasher` is SipHash with a
/// per-process random seed, so a client cannot choose values that collide with another set; a missing name
/// hashes differently from any value.
enum ParameterFingerprint {
    /// The tracked names in a fixed order.
    static let names: [String] = ClientConnection.trackedParameterNames.sorted()

    static func of(_ values: [String: String]) -> Int {
        var hasher = Hasher()
        for name in names {
            if let value = values[name] {
                hasher.combine(true)
                hasher.combine(value)
            } else {
                hasher.combine(false)
            }
        }
        return hasher.finalize()
    }
}
