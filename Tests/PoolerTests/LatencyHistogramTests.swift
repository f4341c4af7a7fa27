@testable import Pooler
import XCTest

final class LatencyHistogramTests: XCTestCase {
    private func histogram(_ test: String = #function) -> LatencyHistogram {
        LatencyHistogram.named("test_latency_seconds", labels: [("case", test)])
    }

    func testValuesLandInTheirBucketsInclusiveOfTheUpperBound() {
        let h = histogram()
        h.record(nanoseconds: 1_000_000)       // 1 ms: le 0.005
        h.record(nanoseconds: 5_000_000)       // exactly 5 ms: le 0.005 (Prometheus buckets are inclusive)
        h.record(nanoseconds: 5_000_001)       // le 0.01
        h.record(nanoseconds: 300_000_000)     // 300 ms: le 0.5
        h.record(nanoseconds: 60_000_000_000)  // 60 s: only +Inf
        let s = h.snapshot()
        XCTAssertEqual(s.cumulative, [2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4])
        XCTAssertEqual(s.count, 5)
        XCTAssertEqual(s.sumNanoseconds, 1_000_000 + 5_000_000 + 5_000_001 + 300_000_000 + 60_000_000_000)
    }

    func testTheSameNameAndLabelsGiveTheSameSeries() {
        let a = LatencyHistogram.named("test_latency_seconds", labels: [("case", "shared")])
        a.record(nanoseconds: 1)
        let b = LatencyHistogram.named("test_latency_seconds", labels: [("case", "shared")])
        XCTAssertTrue(a === b, "a pool replaced by a reload goes on counting in the same series")
        XCTAssertFalse(a === LatencyHistogram.named("test_latency_seconds", labels: [("case", "other")]))
    }

    func testPrometheusText() {
        let h = LatencyHistogram.named("test_render_seconds", labels: [("pool", "a\"b\\c"), ("user", "u")])
        h.record(nanoseconds: 20_000_000)
        var text = ""
        h.render(into: &text)
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 11 + 3)
        XCTAssertEqual(lines[0], #"test_render_seconds_bucket{pool="a\"b\\c",user="u",le="0.005"} 0"#)
        XCTAssertEqual(lines[2], #"test_render_seconds_bucket{pool="a\"b\\c",user="u",le="0.025"} 1"#)
        XCTAssertEqual(lines[11], #"test_render_seconds_bucket{pool="a\"b\\c",user="u",le="+Inf"} 1"#)
        XCTAssertEqual(lines[12], #"test_render_seconds_sum{pool="a\"b\\c",user="u"} 0.02"#)
        XCTAssertEqual(lines[13], #"test_render_seconds_count{pool="a\"b\\c",user="u"} 1"#)
        let all = String(decoding: LatencyHistogram.renderAll(), as: UTF8.self)
        XCTAssertEqual(all.components(separatedBy: "# TYPE test_render_seconds histogram\n").count, 2, "one TYPE line")
    }

    func testConcurrentRecordsAreAllCounted() {
        let h = histogram()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<10_000 { h.record(nanoseconds: 1_000) }
        }
        XCTAssertEqual(h.snapshot().count, 80_000)
        XCTAssertEqual(h.snapshot().sumNanoseconds, 80_000_000)
    }
}
