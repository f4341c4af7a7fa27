import XCTest
@testable import Pooler

/// Series that two pools of one database (one per user) both give are added up, not left twice.
final class MetricSamplesTests: XCTestCase {
    func testSameNameAndLabelsAreAddedUp() {
        let labels = [("pool", "app"), ("model", "m")]
        let merged = PoolerRuntime.mergingDuplicates([
            MetricSample(name: "pgcat_ml_requests_total", kind: .counter, labels: labels, value: 3),
            MetricSample(name: "pgcat_ml_queue_depth", kind: .gauge, labels: [("pool", "app")], value: 1),
            MetricSample(name: "pgcat_ml_requests_total", kind: .counter, labels: labels, value: 4),
            MetricSample(name: "pgcat_ml_requests_total", kind: .counter, labels: [("pool", "other"), ("model", "m")], value: 5),
            MetricSample(name: "pgcat_ml_exec_time_seconds_total", kind: .counter, labels: labels, value: 1, exactValue: 1.25),
            MetricSample(name: "pgcat_ml_exec_time_seconds_total", kind: .counter, labels: labels, value: 0, exactValue: 0.5),
            MetricSample(name: "pgcat_ml_queue_depth", kind: .gauge, labels: [("pool", "app")], value: 2),
        ])
        XCTAssertEqual(merged.map(\.name), ["pgcat_ml_requests_total", "pgcat_ml_queue_depth", "pgcat_ml_requests_total",
                                            "pgcat_ml_exec_time_seconds_total"])
        XCTAssertEqual(merged.map(\.value), [7, 3, 5, 1])
        XCTAssertEqual(merged[3].exactValue, 1.75)
    }
}
