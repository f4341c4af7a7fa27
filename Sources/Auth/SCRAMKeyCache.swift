/// A bounded, thread-safe cache of SCRAM keys per (password, salt, iterations), so PBKDF2 runs once per credential.

/// A pooler opens many server connections with the same credentials, and each SCRAM login would otherwise
/// run PBKDF2 (milliseconds of CPU at 4096 iterations). Least recently used entries go first when full.
/// Two threads missing the same entry at once both derive it (no single flight): harmless, only slower.
public final class SCRAMKeyCache: Sendable {
    private struct Key: Hashable {
        var password: [UInt8]
        var salt: [UInt8]
        var iterations: Int
    }

    private struct Entry {
        var keys: SCRAMKeys
        var lastUsed: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var clock: UInt64 = 0
    }

    public let capacity: Int
    private let state = LockedValue(State())

    public init(capacity: Int = 64) {
        precondition(capacity > 0, "SCRAMKeyCache capacity must be positive")
        self.capacity = capacity
    }

    /// The cached keys, or nil; never runs PBKDF2.
    public func cachedKeys(password: String, salt: [UInt8], iterations: Int) -> SCRAMKeys? {
        let key = Key(password: Array(password.utf8), salt: salt, iterations: iterations)
        return state.withLock { state in
            guard var entry = state.entries[key] else { return nil }
            state.clock += 1
            entry.lastUsed = state.clock
            state.entries[key] = entry
            return entry.keys
        }
    }

    /// The cached keys, deriving and storing them on a miss (PBKDF2 runs outside the lock).
    public func keys(password: String, salt: [UInt8], iterations: Int) -> SCRAMKeys {
        if let keys = cachedKeys(password: password, salt: salt, iterations: iterations) { return keys }
        let keys = SCRAMKeys.derive(password: password, salt: salt, iterations: iterations)
        let key = Key(password: Array(password.utf8), salt: salt, iterations: iterations)
        state.withLock { state in
            state.clock += 1
            if state.entries[key] == nil, state.entries.count >= capacity,
               let oldest = state.entries.min(by: { $0.value.lastUsed < $1.value.lastUsed })?.key {
                state.entries.removeValue(forKey: oldest)
            }
            state.entries[key] = Entry(keys: keys, lastUsed: state.clock)
        }
        return keys
    }

    public var count: Int {
        state.withLock { $0.entries.count }
    }

    public func removeAll() {
        state.withLock { $0.entries.removeAll() }
    }
}
