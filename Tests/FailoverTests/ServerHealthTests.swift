import XCTest
@testable import Failover

final class ServerHealthTests: XCTestCase {
    func testLSNParsing() {
        XCTAssertEqual(ServerHealth.parseLSN("0/0"), 0)
        XCTAssertEqual(ServerHealth.parseLSN("16/B374D848"), 0x16_B374_D848)
        XCTAssertEqual(ServerHealth.parseLSN("FFFFFFFF/FFFFFFFF"), UInt64.max)
        XCTAssertNil(ServerHealth.parseLSN("16B374D848"))
        XCTAssertNil(ServerHealth.parseLSN("x/1"))
        XCTAssertNil(ServerHealth.parseLSN("1/2/3"))
    }

    func testLagAgainstThePrimary() {
        let verdicts = ServerHealth.verdicts(for: [
            .up(inRecovery: false, lsn: 10_000),
            .up(inRecovery: true, lsn: 9_500),
            .up(inRecovery: true, lsn: 2_000),
            .down(reason: "connection refused"),
        ], maxLagBytes: 1_000)
        XCTAssertEqual(verdicts[0], .init(up: true, isPrimary: true, lagBytes: 0, lagging: false))
        XCTAssertEqual(verdicts[1], .init(up: true, isPrimary: false, lagBytes: 500, lagging: false))
        XCTAssertEqual(verdicts[2], .init(up: true, isPrimary: false, lagBytes: 8_000, lagging: true))
        XCTAssertEqual(verdicts[3], .init(up: false, isPrimary: nil, lagBytes: nil, lagging: false))
    }

    func testReplicaAheadOfAStalePrimaryReadingIsNotLagging() {
        let verdicts = ServerHealth.verdicts(for: [.up(inRecovery: false, lsn: 100), .up(inRecovery: true, lsn: 150)],
                                             maxLagBytes: 10)
        XCTAssertEqual(verdicts[1].lagBytes, 0)
        XCTAssertFalse(verdicts[1].lagging)
    }

    func testLagCheckOffOrNoPrimary() {
        let off = ServerHealth.verdicts(for: [.up(inRecovery: false, lsn: 10_000), .up(inRecovery: true, lsn: 0)],
                                        maxLagBytes: 0)
        XCTAssertFalse(off[1].lagging)
        let noPrimary = ServerHealth.verdicts(for: [.down(reason: "x"), .up(inRecovery: true, lsn: 5)], maxLagBytes: 10)
        XCTAssertNil(noPrimary[1].lagBytes)
        XCTAssertFalse(noPrimary[1].lagging, "without a primary to compare with, a replica is not called lagging")
    }

    func testPromotionIsSeen() {
        let verdicts = ServerHealth.verdicts(for: [.down(reason: "gone"), .up(inRecovery: false, lsn: 5)], maxLagBytes: 0)
        XCTAssertEqual(verdicts[1].isPrimary, true)
    }

    func testTwoPrimariesTheNewestTimelineWinsAndTheOtherIsStale() {
        // The old primary (timeline 1) still runs after a standby was promoted (timeline 2), in either order.
        let old: ServerHealth.Probe = .up(inRecovery: false, lsn: 900, timeline: 1)
        let promoted: ServerHealth.Probe = .up(inRecovery: false, lsn: 500, timeline: 2)
        let replica: ServerHealth.Probe = .up(inRecovery: true, lsn: 400, timeline: nil)
        for (probes, previous) in [([old, promoted, replica], 0), ([promoted, old, replica], 1)] {
            let verdicts = ServerHealth.verdicts(for: probes, maxLagBytes: 0, previousPrimary: previous)
            let promotedIndex = probes.firstIndex(of: promoted)!, oldIndex = probes.firstIndex(of: old)!
            XCTAssertEqual(verdicts[promotedIndex].isPrimary, true)
            XCTAssertFalse(verdicts[promotedIndex].stalePrimary)
            XCTAssertEqual(verdicts[oldIndex].isPrimary, false)
            XCTAssertTrue(verdicts[oldIndex].stalePrimary, "the old primary gets neither writes nor reads")
            XCTAssertEqual(verdicts[2].lagBytes, 100, "lag is measured against the primary chosen, not the newest LSN")
        }
    }

    func testAnOldPrimaryAloneIsStaleOnceANewerTimelineWasSeen() {
        // The promoted primary (timeline 2) missed this round's probe: the old one must not become the primary.
        let probes: [ServerHealth.Probe] = [.up(inRecovery: false, lsn: 900, timeline: 1), .down(reason: "timeout")]
        let verdicts = ServerHealth.verdicts(for: probes, maxLagBytes: 0, newestTimeline: 2)
        XCTAssertEqual(verdicts[0].isPrimary, false)
        XCTAssertTrue(verdicts[0].stalePrimary)
        XCTAssertEqual(ServerHealth.verdicts(for: probes, maxLagBytes: 0, newestTimeline: 1)[0].isPrimary, true)
    }

    func testTwoPrimariesOnOneTimelineKeepThePreviousChoice() {
        let a: ServerHealth.Probe = .up(inRecovery: false, lsn: 1, timeline: 3)
        let b: ServerHealth.Probe = .up(inRecovery: false, lsn: 2, timeline: 3)
        XCTAssertEqual(ServerHealth.verdicts(for: [a, b], maxLagBytes: 0, previousPrimary: 1).map(\.stalePrimary), [true, false])
        XCTAssertEqual(ServerHealth.verdicts(for: [a, b], maxLagBytes: 0).map(\.stalePrimary), [false, true])
    }

    func testAConfiguredPrimaryIsThePrimaryAndAutoServersBesideItAreStale() {
        let probes: [ServerHealth.Probe] = [.up(inRecovery: false, lsn: 1, timeline: 1), .up(inRecovery: false, lsn: 1, timeline: 2),
                                            .up(inRecovery: false, lsn: 1, timeline: 2)]
        let verdicts = ServerHealth.verdicts(for: probes, maxLagBytes: 0, roles: [.primary, .auto, .replica])
        XCTAssertEqual(verdicts.map(\.stalePrimary), [false, true, false], "a configured replica is left as configured")
    }

    func testTimelineFromAWalFileName() {
        XCTAssertEqual(ServerHealth.parseTimeline("0000000A"), 10)
        XCTAssertNil(ServerHealth.parseTimeline("A"))
    }
}
