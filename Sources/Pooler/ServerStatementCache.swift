/// The prepared statements one server connection holds (pooler-named), least recently used evicted first.
struct ServerStatementCache {
    let capacity: Int
    private var lastUse: [String: UInt64] = [:]
    /// The result shapes of the statements a statement Describe reported on this connection (see `ResultShape`).
    private var shapes: [String: ResultShape] = [:]
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
            remove(oldest)
            evicted = oldest
        }
        lastUse[name] = clock
        return evicted
    }

    mutating func remove(_ name: String) {
        lastUse[name] = nil
        if !shapes.isEmpty { shapes[name] = nil }
    }

    /// The result shape of the server's copy of `name`, if a statement Describe reported it since it was prepared.
    func shape(of name: String) -> ResultShape? { shapes.isEmpty ? nil : shapes[name] }

    mutating func setShape(_ shape: ResultShape, of name: String) {
        if lastUse[name] != nil { shapes[name] = shape }
    }

    var names: Dictionary<String, UInt64>.Keys { lastUse.keys }

    mutating func removeAll() {
        lastUse.removeAll()
        shapes.removeAll()
    }
}

/// Server-side names for statement definitions, shared by a pool's clients: the same query text and parameter
/// types always get the same name, so a statement prepared for one client is reused by all.
///
/// Bounded: an application that prepares ever new statement texts (literals in the SQL, varying IN lists) would
/// otherwise grow it for as long as the pooler runs. Past `capacity` definitions the least recently used tenth is
/// forgotten. That is safe because names are never reused: a forgotten definition gets a fresh name when it comes
/// again, and clients and servers that still hold the old name keep using it (a server lacking it has it prepared
/// again from the client's own copy of the definition).
final class StatementNames: @unchecked Sendable {
    private struct Entry {
        let name: String
        /// A server accepted this definition's Parse.
        var valid = false
        var lastUse: UInt64
    }

    let capacity: Int
    private var entries: [ByteBufferKey: Entry] = [:]
    private var keysByName: [String: ByteBufferKey] = [:]
    private var counter = 0
    private var clock: UInt64 = 0
    private let lock = NIOLock()

    init(capacity: Int = 10_000) { self.capacity = max(1, capacity) }

    var count: Int { lock.withLock { entries.count } }

    /// A server accepted this statement's Parse, so its definition is known to be valid.
    func markValid(_ name: String) {
        lock.withLock {
            guard let key = keysByName[name] else { return }  // forgotten meanwhile: nothing to mark
            entries[key]?.valid = true
        }
    }

    /// The server-side name for `definition` if a server has accepted it before.
    func validName(for definition: ByteBuffer) -> String? {
        lock.withLock {
            guard let index = entries.index(forKey: ByteBufferKey(definition)), entries.values[index].valid else {
                return nil
            }
            clock += 1
            entries.values[index].lastUse = clock
            return entries.values[index].name
        }
    }

    func name(for definition: ByteBuffer) -> String {
        lock.withLock {
            let key = ByteBufferKey(definition)
            clock += 1
            if let index = entries.index(forKey: key) {
                entries.values[index].lastUse = clock
                return entries.values[index].name
            }
            counter += 1
            let name = "PGCAT_\(counter)"
            entries[key] = Entry(name: name, lastUse: clock)
            keysByName[name] = key
            if entries.count > capacity { forgetLeastRecentlyUsed() }
            return name
        }
    }

    /// Drops the least recently used tenth (at least one), so eviction runs once per that many new definitions.
    private func forgetLeastRecentlyUsed() {
        let drop = max(1, entries.count / 10)
        for (key, entry) in entries.sorted(by: { $0.value.lastUse < $1.value.lastUse }).prefix(drop) {
            entries[key] = nil
            keysByName[entry.name] = nil
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
