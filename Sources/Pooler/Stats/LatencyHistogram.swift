/// A latency histogram for Prometheus (`pgcat_query_duration_seconds`, `pgcat_wait_duration_seconds`), recorded
/// with relaxed atomic adds.
///
/// Why not swift-metrics' Timer: swift-prometheus's histogram takes a lock for every record, shared by all the
/// event loops that serve the pool, and walks all its buckets under it; these two run once per query and once per
/// transaction on the relay's path. Series live as long as the process, keyed by name and labels, as swift-metrics'
/// did, so a pool that a reload replaces goes on counting in the same series.
import Atomics
import NIOConcurrencyHelpers

public final class LatencyHistogram: @unchecked Sendable {
    /// Bucket upper bounds in nanoseconds (swift-prometheus's default buckets for timers): 5 ms to 10 s.
    public static let upperBounds: [Int64] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000].map { $0 * 1_000_000 }

    public let name: String
    public let labels: [(String, String)]
    /// Name and labels in one string: the series' identity and its order in the output.
    let key: String
    /// One counter per bucket (not cumulative; the last is +Inf), then the sum of the values in nanoseconds.
    private let slab = CounterSlab(count: LatencyHistogram.upperBounds.count + 2)

    private init(name: String, labels: [(String, String)], key: String) {
        self.name = name
        self.labels = labels
        self.key = key
    }

    @inline(__always)
    public func record(nanoseconds: Int64) {
        let bounds = Self.upperBounds
        var index = 0
        while index < bounds.count, nanoseconds > bounds[index] { index += 1 }
        slab[index].add()
        slab[bounds.count + 1].add(Int(max(0, nanoseconds)))
    }

    public struct Snapshot: Equatable, Sendable {
        /// Cumulative counts per upper bound (`upperBounds`), as Prometheus's `le` buckets.
        public var cumulative: [Int]
        /// All values (the +Inf bucket and `_count`).
        public var count: Int
        public var sumNanoseconds: Int
    }

    public func snapshot() -> Snapshot {
        var cumulative: [Int] = []
        var running = 0
        for index in 0..<Self.upperBounds.count {
            running += slab[index].load
            cumulative.append(running)
        }
        running += slab[Self.upperBounds.count].load
        return Snapshot(cumulative: cumulative, count: running, sumNanoseconds: slab[Self.upperBounds.count + 1].load)
    }

    // MARK: the process's series

    /// Whether pools record latencies: set once, when the exporter is created (before any pool), and never by a
    /// reload, which neither starts nor stops the exporter.
    public static var isRecording: Bool { recording.load(ordering: .relaxed) }
    public static func startRecording() { recording.store(true, ordering: .relaxed) }
    private static let recording = ManagedAtomic(false)

    private static let series = NIOLockedValueBox<[String: LatencyHistogram]>([:])

    /// The series `name` with `labels`, made on first use.
    public static func named(_ name: String, labels: [(String, String)]) -> LatencyHistogram {
        let key = name + "\u{0}" + labels.map { $0.0 + "=" + $0.1 }.joined(separator: "\u{0}")
        return series.withLockedValue { all in
            if let existing = all[key] { return existing }
            let made = LatencyHistogram(name: name, labels: labels, key: key)
            all[key] = made
            return made
        }
    }

    /// Every series, by name, then labels.
    public static var all: [LatencyHistogram] {
        series.withLockedValue { Array($0.values) }.sorted { $0.key < $1.key }
    }

    // MARK: Prometheus text format

    /// Every series as Prometheus text: one `# TYPE` line per name, then its buckets, `_sum` and `_count`.
    public static func renderAll() -> [UInt8] {
        var text = ""
        var previousName: String?
        for histogram in all {
            if histogram.name != previousName {
                text += "# TYPE \(histogram.name) histogram\n"
                previousName = histogram.name
            }
            histogram.render(into: &text)
        }
        return Array(text.utf8)
    }

    func render(into text: inout String) {
        let snapshot = snapshot()
        let labelText = labels.map { "\($0.0)=\"\(Self.escaped($0.1))\"" }.joined(separator: ",")
        let prefix = labelText.isEmpty ? "" : labelText + ","
        for (bound, count) in zip(Self.upperBounds, snapshot.cumulative) {
            text += "\(name)_bucket{\(prefix)le=\"\(Double(bound) / 1e9)\"} \(count)\n"
        }
        text += "\(name)_bucket{\(prefix)le=\"+Inf\"} \(snapshot.count)\n"
        let braces = labelText.isEmpty ? "" : "{\(labelText)}"
        text += "\(name)_sum\(braces) \(Double(snapshot.sumNanoseconds) / 1e9)\n"
        text += "\(name)_count\(braces) \(snapshot.count)\n"
    }

    /// A label value in the text format: backslash, double quote and newline escaped.
    static func escaped(_ value: String) -> String {
        var out = ""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }
}
