/// The PostgreSQL parser (libpg_query) behind a cache: facts per query text, parsed once. Thread-safe; the cache is
/// bounded and cleared when full (query texts in a pool are few and repeat). It is bounded in bytes as well as
/// texts, and long texts are not kept at all: bulk INSERTs with their rows inline rarely repeat, and 10,000 of
/// them at a megabyte each would otherwise be held until the count filled.
import Atomics
import CPgQuery
import NIOConcurrencyHelpers

public final class QueryParser: Sendable {
    /// Why a text could not be parsed (routing treats it as a write: it goes to the primary).
    public struct ParseError: Error, Equatable, Sendable {
        public var message: String
    }

    public typealias Outcome = Result<QueryFacts, ParseError>

    private struct Cache {
        var outcomes: [String: Outcome] = [:]
        /// UTF-8 bytes of the texts held.
        var textBytes = 0
    }

    private let cache = NIOLockedValueBox(Cache())
    private let stats = NIOLockedValueBox((hits: 0, misses: 0))
    /// Texts held at most.
    public let capacity: Int
    /// UTF-8 bytes of text held at most; the cache starts over when the next text would pass it.
    public let byteCapacity: Int
    /// Longer texts are parsed every time they come and never kept.
    public let maxCachedTextLength: Int

    public init(capacity: Int = 10_000, byteCapacity: Int = 16 << 20, maxCachedTextLength: Int = 16 << 10) {
        self.capacity = capacity
        self.byteCapacity = byteCapacity
        self.maxCachedTextLength = min(maxCachedTextLength, byteCapacity)
    }

    /// Facts for `sql`, from the cache or parsed now.
    public func facts(_ sql: String) -> Outcome {
        let length = sql.utf8.count
        if length <= maxCachedTextLength, let cached = cache.withLockedValue({ $0.outcomes[sql] }) {
            stats.withLockedValue { $0.hits += 1 }
            return cached
        }
        stats.withLockedValue { $0.misses += 1 }
        let outcome = Self.parse(sql)
        guard length <= maxCachedTextLength else { return outcome }
        cache.withLockedValue { cache in
            if cache.outcomes.count >= capacity || cache.textBytes + length > byteCapacity {
                cache.outcomes.removeAll(keepingCapacity: true)
                cache.textBytes = 0
            }
            if cache.outcomes.updateValue(outcome, forKey: sql) == nil { cache.textBytes += length }
        }
        return outcome
    }

    /// Texts and their UTF-8 bytes held now.
    public var cachedTexts: (count: Int, bytes: Int) { cache.withLockedValue { ($0.outcomes.count, $0.textBytes) } }

    /// Cache hits and misses so far (for the benchmark and SHOW commands).
    public var cacheStats: (hits: Int, misses: Int) { stats.withLockedValue { $0 } }

    /// Texts classified as plain reads without the parser (see QuickReadCheck).
    public var quickReads: Int { quick.load(ordering: .relaxed) }
    /// Counted for every plain read (most statements): an atomic add rather than a lock.
    private let quick = ManagedAtomic(0)

    /// Read/write intent only (what read/write splitting needs): a plain SELECT is recognised lexically, the rest
    /// through `facts`. nil: the text does not parse (route it to the primary).
    public func intent(_ sql: String) -> QueryFacts.Intent? {
        intent(isPlainRead: QuickReadCheck.isPlainRead(sql), sql)
    }

    /// `intent` of UTF-8 text as it arrived (a Query or Parse payload): most texts are plain reads, recognised on
    /// the bytes without making a String.
    public func intent(utf8 bytes: UnsafeRawBufferPointer) -> QueryFacts.Intent? {
        intent(isPlainRead: QuickReadCheck.isPlainRead(bytes: bytes.assumingMemoryBound(to: UInt8.self)),
               String(decoding: bytes, as: UTF8.self))
    }

    /// A plain read is counted and answered at once; anything else is parsed (the text is made only then).
    private func intent(isPlainRead: Bool, _ sql: @autoclosure () -> String) -> QueryFacts.Intent? {
        if isPlainRead {
            quick.wrappingIncrement(ordering: .relaxed)
            return .read
        }
        guard case .success(let facts) = facts(sql()) else { return nil }
        return facts.intent
    }

    /// Read/write intent of `execute` (an SQL `EXECUTE name(...)`) where `prepare` is the text of the client's
    /// `PREPARE name AS ...`: what the prepared statement does (see `QueryFacts.intent(executing:)`). nil when either
    /// does not parse or they are not an EXECUTE and a PREPARE (route to the primary).
    public func intent(execute: String, prepare: String) -> QueryFacts.Intent? {
        guard case .success(let executeFacts) = facts(execute), case .success(let prepareFacts) = facts(prepare) else {
            return nil
        }
        return executeFacts.intent(executing: prepareFacts)
    }

    /// Parses without the cache.
    public static func parse(_ sql: String) -> Outcome {
        let result = pg_query_parse(sql)
        defer { pg_query_free_parse_result(result) }
        if let error = result.error {
            return .failure(ParseError(message: error.pointee.message.map { String(cString: $0) } ?? "syntax error"))
        }
        guard let tree = result.parse_tree else { return .failure(ParseError(message: "no parse tree")) }
        let length = strlen(tree)
        return tree.withMemoryRebound(to: UInt8.self, capacity: length) { pointer in
            do {
                let output = UnsafeBufferPointer(start: pointer, count: length)
                var json = try ParseTreeJSON.parse(output)
                if ParseTreeJSON.mayNeedIntegerRepair(output) {
                    var text = sql
                    json = text.withUTF8 { json.repairingIntegerConstants(source: $0) }
                }
                return .success(QueryFacts(parseTree: json))
            } catch let error as ParseTreeJSON.SyntaxError {
                return .failure(ParseError(message: "unreadable parse tree at offset \(error.offset)"))
            } catch {
                return .failure(ParseError(message: "unreadable parse tree"))
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
