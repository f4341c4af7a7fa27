/// The prepared statements one server connection holds (pooler-named), least recently used evicted first.
struct ServerStatementCache {
    let capacity: Int
    private var entries: [String: Entry] = [:]
    private var clock: UInt64 = 0

    private struct Entry {
        var lastUse: UInt64
        /// The pool's stale-report count (`StatementNames.staleReports`) when this copy was prepared or last found
        /// not reported stale: reports after that may concern it.
        var checkedAt: UInt64
        /// The result shape a statement Describe reported on this connection since it was prepared.
        var shape: ResultShape?
    }

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { entries.count }

    func contains(_ name: String) -> Bool { entries[name] != nil }

    mutating func touch(_ name: String) {
        clock += 1
        entries[name]?.lastUse = clock
    }

    /// Records `name`, prepared now (`staleReports`: the pool's count of stale reports); returns the statement
    /// evicted to make room, which the caller closes on the server.
    mutating func insert(_ name: String, staleReports: UInt64 = 0) -> String? {
        clock += 1
        if entries[name] != nil {
            entries[name]?.lastUse = clock
            return nil
        }
        var evicted: String?
        if capacity > 0, entries.count >= capacity,
           let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key {
            entries[oldest] = nil
            evicted = oldest
        }
        entries[name] = Entry(lastUse: clock, checkedAt: staleReports)
        return evicted
    }

    mutating func remove(_ name: String) { entries[name] = nil }

    /// The stale-report count when the copy of `name` was prepared or last checked; nil if it is not held.
    func checkedAt(_ name: String) -> UInt64? { entries[name]?.checkedAt }

    mutating func markChecked(_ name: String, staleReports: UInt64) { entries[name]?.checkedAt = staleReports }

    /// The result shape of the server's copy of `name`, if a statement Describe reported it since it was prepared.
    func shape(of name: String) -> ResultShape? { entries[name]?.shape }

    mutating func setShape(_ shape: ResultShape, of name: String) { entries[name]?.shape = shape }

    var names: some Collection<String> { entries.keys }

    mutating func removeAll() { entries.removeAll() }
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
        /// The stale-report count right after the latest report about this statement (0: none).
        var reportedStaleAt: UInt64 = 0
        /// The result shape a server connection's Describe reported last (see `noteShape`).
        var latestShape: ResultShape?
    }

    let capacity: Int
    private var entries: [ByteBufferKey: Entry] = [:]
    private var keysByName: [String: ByteBufferKey] = [:]
    private var counter = 0
    private var clock: UInt64 = 0
    private let lock = NIOLock()
    /// How many times a server reported a statement's plan stale (0A000 after a schema change), pool-wide: each
    /// report makes the copies of that statement on every other server connection suspect, since they were
    /// planned against the same old schema. A copy checked since the latest report needs no look at the table.
    private let staleReportCount = ManagedAtomic<UInt64>(0)

    var staleReports: UInt64 { staleReportCount.load(ordering: .relaxed) }

    /// A server reported the plan of `name` stale.
    func reportStale(_ name: String) {
        lock.withLock {
            let count = staleReportCount.wrappingIncrementThenLoad(ordering: .relaxed)
            guard let key = keysByName[name] else { return }  // forgotten meanwhile: no copy can be checked
            entries[key]?.reportedStaleAt = count
        }
    }

    /// A server connection described its copy of `name` (a Describe succeeds only on a current copy) with `shape`.
    /// If the last shape seen for it was another, the schema changed under it: that is a stale report for the copies
    /// described or prepared before. Returns whether it was one.
    func noteShape(_ shape: ResultShape, of name: String) -> Bool {
        lock.withLock {
            guard let key = keysByName[name], let index = entries.index(forKey: key) else { return false }
            let last = entries.values[index].latestShape
            guard last != shape else { return false }
            entries.values[index].latestShape = shape
            guard last != nil else { return false }
            let count = staleReportCount.wrappingIncrementThenLoad(ordering: .relaxed)
            entries.values[index].reportedStaleAt = count
            return true
        }
    }

    /// Whether `name` was reported stale after a server copy of it was checked at `staleReports` (a copy of a
    /// forgotten definition cannot be told apart and passes).
    func reportedStale(_ name: String, after staleReports: UInt64) -> Bool {
        lock.withLock {
            guard let key = keysByName[name], let reported = entries[key]?.reportedStaleAt else { return false }
            return reported > staleReports
        }
    }

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

import Atomics
import NIOConcurrencyHelpers
import NIOCore
