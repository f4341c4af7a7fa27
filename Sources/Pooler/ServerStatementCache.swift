/// The prepared statements one server connection holds (pooler-named), least recently used evicted first.
struct ServerStatementCache {
    let capacity: Int
    private var lastUse: [String: UInt64] = [:]
    private var clock: UInt64 = 0

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { lastUse.count }

    func contains(_ name: String) -> Bool { lastUse[name] != nil }

    mutating func touch(_ name: String) {
        clock += 1
        if lastUse[name] != nil { lastUse[name] = clock }
    }

    /// Records `name`; returns the statement evicted to make room, which the caller closes on the server.
    mutating func insert(_ name: String) -> String? {
        clock += 1
        if lastUse[name] != nil {
            lastUse[name] = clock
            return nil
        }
        var evicted: String?
        if capacity > 0, lastUse.count >= capacity, let oldest = lastUse.min(by: { $0.value < $1.value })?.key {
            lastUse[oldest] = nil
            evicted = oldest
        }
        lastUse[name] = clock
        return evicted
    }

    mutating func remove(_ name: String) { lastUse[name] = nil }

    mutating func removeAll() { lastUse.removeAll() }
}

/// Server-side names for statement definitions, shared by a pool's clients: the same query text and parameter
/// types always get the same name, so a statement prepared for one client is reused by all.
final class StatementNames: @unchecked Sendable {
    private var names: [ByteBufferKey: String] = [:]
    private var counter = 0
    private var valid: Set<String> = []
    private let lock = NIOLock()

    /// A server accepted this statement's Parse, so its definition is known to be valid.
    func markValid(_ name: String) {
        lock.withLock { _ = valid.insert(name) }
    }

    /// The server-side name for `definition` if a server has accepted it before.
    func validName(for definition: ByteBuffer) -> String? {
        lock.withLock {
            guard let name = names[ByteBufferKey(definition)], valid.contains(name) else { return nil }
            return name
        }
    }

    func name(for definition: ByteBuffer) -> String {
        lock.withLock {
            let key = ByteBufferKey(definition)
            if let name = names[key] { return name }
            counter += 1
            let name = "PGCAT_\(counter)"
            names[key] = name
            return name
        }
    }
}

/// A ByteBuffer copied into its own storage, usable as a dictionary key.
struct ByteBufferKey: Hashable {
    let bytes: [UInt8]
    init(_ buffer: ByteBuffer) { bytes = Array(buffer.readableBytesView) }
}

import NIOConcurrencyHelpers
import NIOCore
