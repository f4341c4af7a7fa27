/// ResponseTracker as event scripts: each message sent or reply received, and what the tracker decides.

import NIOCore
import PostgresWire
import XCTest
@testable import Pooler

final class ResponseTrackerTests: XCTestCase {
    private let P = FrontendID.parse, B = FrontendID.bind, D = FrontendID.describe, E = FrontendID.execute
    private let S = FrontendID.sync, Q = FrontendID.query, H = FrontendID.flush, C = FrontendID.close
    private let parseComplete = BackendID.parseComplete, bindComplete = BackendID.bindComplete
    private let rowDescription = BackendID.rowDescription, dataRow = BackendID.dataRow
    private let commandComplete = BackendID.commandComplete, ready = BackendID.readyForQuery
    private let error = BackendID.errorResponse, closeComplete = BackendID.closeComplete

    private func synthetic(_ byte: UInt8) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(byte, Int32(4))
        return buffer
    }

    func testSimpleQueryEndsAtReadyForQuery() {
        var t = ResponseTracker()
        t.sent(Q)
        XCTAssertEqual(t.pendingSyncPoints, 1)
        XCTAssertEqual(t.received(rowDescription), .forward)
        XCTAssertEqual(t.received(dataRow), .forward)
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertEqual(t.pendingSyncPoints, 1)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertEqual(t.pendingSyncPoints, 0)
        XCTAssertTrue(t.isEmpty)
    }

    /// The pooler's own Sync after a flushed Parse/Describe (automatic sharding): the answers go to the client, its
    /// ReadyForQuery does not; after a failed Parse it ends the skipping.
    func testInjectedSyncEndsTheUnitAndItsReadyForQueryIsDropped() {
        var t = ResponseTracker()
        for id in [P, D, H] { t.sent(id) }
        t.append(.injected(.sync))
        XCTAssertTrue(t.awaitsInjectedSync)
        XCTAssertFalse(t.awaitsClientSyncPoint)
        XCTAssertEqual(t.pendingSyncPoints, 1)
        for id in [parseComplete, BackendID.parameterDescription, rowDescription] { XCTAssertEqual(t.received(id), .forward) }
        XCTAssertEqual(t.received(ready), .drop)
        XCTAssertTrue(t.isEmpty)
        XCTAssertFalse(t.awaitsInjectedSync)

        for id in [P, D, H] { t.sent(id) }
        t.append(.injected(.sync))
        XCTAssertFalse(t.errorBeforeInjectedSync)
        XCTAssertEqual(t.received(error), .forward)
        XCTAssertEqual(t.pendingSyncPoints, 1, "the skipping ends at the pooler's Sync")
        XCTAssertTrue(t.takeErrorBeforeInjectedSync(), "the client's messages up to its Sync are to be skipped")
        XCTAssertFalse(t.takeErrorBeforeInjectedSync())
        XCTAssertEqual(t.received(ready), .drop)
        XCTAssertTrue(t.isEmpty)
        t.sent(S)  // the client's own Sync after the error is a new request
        XCTAssertTrue(t.awaitsClientSyncPoint)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertFalse(t.awaitsClientSyncPoint)
    }

    /// The count of the client's own pending Syncs, Queries and FunctionCalls follows skipping, COPY and errors.
    func testClientSyncPointsAreCounted() {
        var t = ResponseTracker()
        for id in [P, B, E, S, Q] { t.sent(id) }
        t.append(.injected(.query))
        XCTAssertTrue(t.awaitsClientSyncPoint)
        XCTAssertEqual(t.received(error), .forward)  // the Parse fails: skip to its Sync
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.awaitsClientSyncPoint, "the Query is still owed")
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertFalse(t.awaitsClientSyncPoint, "only the pooler's own query is left")
        XCTAssertEqual(t.received(ready), .drop)
        t.sent(Q)
        t.sent(S)  // behind a COPY FROM: ignored by the server
        XCTAssertEqual(t.received(BackendID.copyInResponse), .forward)
        XCTAssertTrue(t.awaitsClientSyncPoint)
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertFalse(t.awaitsClientSyncPoint)
        XCTAssertTrue(t.isEmpty)
    }

    func testPipelinedExtendedRequestsAreAnsweredInOrder() {
        var t = ResponseTracker()
        for id in [P, B, D, E, S, P, B, E, S] { t.sent(id) }
        XCTAssertEqual(t.pendingSyncPoints, 2)
        for id in [parseComplete, bindComplete, rowDescription, dataRow, commandComplete] {
            XCTAssertEqual(t.received(id), .forward)
        }
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertEqual(t.pendingSyncPoints, 1)
        XCTAssertFalse(t.isEmpty)
        for id in [parseComplete, bindComplete, commandComplete, ready] { XCTAssertEqual(t.received(id), .forward) }
        XCTAssertTrue(t.isEmpty)
    }

    func testErrorSkipsToSyncAndDropsSyntheticRepliesOnTheWay() {
        var t = ResponseTracker()
        t.sent(P)
        t.sent(B)
        t.append(.synthetic(synthetic(closeComplete)))
        t.sent(E)
        t.sent(S)
        XCTAssertEqual(t.received(error), .forward)
        XCTAssertFalse(t.serverSkipping, "the Sync that ends the skipping was sent already")
        XCTAssertNil(t.dueSynthetic(status: .idle), "Postgres skips to Sync after an error: no reply for skipped messages")
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertFalse(t.serverSkipping)
        XCTAssertTrue(t.isEmpty)
    }

    func testMessagesSentWhileTheServerSkipsAreNotAwaited() {
        var t = ResponseTracker()
        t.sent(P)
        XCTAssertEqual(t.received(error), .forward)
        t.sent(B)  // the server ignores these until Sync
        t.sent(E)
        t.sent(Q)
        XCTAssertEqual(t.pendingSyncPoints, 0)
        t.sent(S)
        XCTAssertEqual(t.pendingSyncPoints, 1)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testSyntheticReplyIsDueWhenEarlierRepliesArrived() {
        var t = ResponseTracker()
        t.sent(B)
        t.append(.synthetic(synthetic(closeComplete)))
        t.sent(S)
        XCTAssertNil(t.dueSynthetic(status: .idle), "BindComplete comes first")
        XCTAssertEqual(t.received(bindComplete), .forward)
        XCTAssertEqual(t.dueSynthetic(status: .idle), synthetic(closeComplete))
        XCTAssertNil(t.dueSynthetic(status: .idle))
        XCTAssertEqual(t.received(ready), .forward)
    }

    /// Entries with payloads live beside the queue: each must stay matched to its own place in the order when the
    /// queue empties and fills again, and when a COPY drops the Syncs pipelined behind it.
    func testPayloadsStayWithTheirEntriesAcrossRefillsAndDroppedSyncs() {
        var t = ResponseTracker()
        for round in 1...3 {
            for id in [P, B, E] { t.sent(id) }  // unnamed: no payloads, so slots and payloads are numbered apart
            t.append(.parse(statement: "PGCAT_\(round)", client: "s\(round)"))
            t.append(.bind(statement: "PGCAT_\(round)"))
            t.append(.synthetic(synthetic(UInt8(round))))
            t.sent(S)
            XCTAssertTrue(t.hasUnresolvedStatementsBeforeSync)
            for id in [parseComplete, bindComplete, commandComplete] { XCTAssertEqual(t.received(id), .forward) }
            XCTAssertEqual(t.takeSucceededStatements(), [], "an unnamed Parse names nothing")
            XCTAssertNil(t.headStatement)
            XCTAssertEqual(t.received(parseComplete), .forward)
            XCTAssertEqual(t.takeSucceededStatements(), ["PGCAT_\(round)"])
            XCTAssertEqual(t.headStatement, "PGCAT_\(round)")
            XCTAssertEqual(t.received(bindComplete), .forward)
            XCTAssertEqual(t.dueSynthetic(status: .idle), synthetic(UInt8(round)), "round \(round)")
            XCTAssertEqual(t.received(ready), .forward)
            XCTAssertTrue(t.isEmpty)
        }
        // COPY FROM by Execute, with a Sync and then pooler entries pipelined behind it.
        t.sent(B)
        t.sent(E)
        t.sent(S)
        t.append(.injected(.close(statement: "PGCAT_9")))
        t.append(.synthetic(synthetic(9)))
        t.sent(S)
        XCTAssertEqual(t.received(bindComplete), .forward)
        XCTAssertEqual(t.received(BackendID.copyInResponse), .forward)
        t.sent(FrontendID.copyDone)
        t.sent(S)  // the Syncs sent during the COPY were ignored: this one ends it
        XCTAssertEqual(t.pendingSyncPoints, 1)
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertTrue(t.nextReplyIsDropped, "the injected Close is next")
        XCTAssertEqual(t.received(closeComplete), .drop)
        XCTAssertEqual(t.dueSynthetic(status: .idle), synthetic(9))
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
        // An error skips a named Parse: it is reported with its client name.
        t.append(.parse(statement: "PGCAT_10", client: "s10"))
        t.sent(S)
        XCTAssertEqual(t.received(error), .forward)
        let outcomes = t.takeStatementOutcomes()
        XCTAssertEqual(outcomes.failed.map(\.statement), ["PGCAT_10"])
        XCTAssertEqual(outcomes.failed.map(\.client), ["s10"])
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testSyntheticReplyAtTheHeadIsDueAtOnce() {
        var t = ResponseTracker()
        t.append(.synthetic(synthetic(parseComplete)))
        t.sent(D, describesStatement: true)
        t.sent(H)
        XCTAssertEqual(t.dueSynthetic(status: .idle), synthetic(parseComplete))
        XCTAssertEqual(t.received(BackendID.parameterDescription), .forward)
        XCTAssertEqual(t.received(rowDescription), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testRepliesToInjectedMessagesAreDropped() {
        var t = ResponseTracker()
        t.append(.injected(.parse(statement: "PGCAT_1")))
        t.sent(B)
        t.sent(E)
        t.sent(S)
        XCTAssertEqual(t.received(parseComplete), .drop)
        XCTAssertEqual(t.received(bindComplete), .forward)
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testAFailedInjectedParseReachesTheClientAndSkipsToSync() {
        var t = ResponseTracker()
        t.append(.injected(.parse(statement: "PGCAT_1")))
        t.sent(B)
        t.sent(E)
        t.sent(S)
        XCTAssertEqual(t.received(error), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testInjectedQueryIsDroppedWholeIncludingItsReadyForQuery() {
        var t = ResponseTracker()
        t.append(.injected(.query))
        t.sent(Q)
        XCTAssertEqual(t.pendingSyncPoints, 2)
        XCTAssertEqual(t.received(commandComplete), .drop)
        XCTAssertEqual(t.received(BackendID.parameterStatus), .drop)
        XCTAssertEqual(t.received(ready), .drop)
        XCTAssertEqual(t.pendingSyncPoints, 1)
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testInjectedRestoreForwardsOnlyItsParameterStatus() {
        // The client's RESET ALL, then the pooler's SETs of the login values: the client sees its RESET's answer and
        // the ParameterStatus of the SETs, nothing else of them.
        var t = ResponseTracker()
        t.sent(Q)
        t.append(.injected(.restore))
        XCTAssertEqual(t.pendingSyncPoints, 2)
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertEqual(t.received(BackendID.parameterStatus), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertEqual(t.received(commandComplete), .drop)
        XCTAssertEqual(t.received(BackendID.parameterStatus), .forward)
        XCTAssertEqual(t.received(BackendID.noticeResponse), .drop)
        XCTAssertEqual(t.received(BackendID.errorResponse), .drop, "(a SET refused in a failed transaction)")
        XCTAssertEqual(t.received(ready), .drop)
        XCTAssertTrue(t.isEmpty)
    }

    func testCopyFromByExecuteIgnoresSyncsUntilCopyDone() {
        var t = ResponseTracker()
        for id in [P, B, E, S] { t.sent(id) }
        XCTAssertEqual(t.received(parseComplete), .forward)
        XCTAssertEqual(t.received(bindComplete), .forward)
        XCTAssertEqual(t.received(BackendID.copyInResponse), .forward)
        XCTAssertEqual(t.pendingSyncPoints, 0, "the pipelined Sync is read during copy-in and ignored")
        t.sent(FrontendID.copyData)
        t.sent(S)  // also ignored during copy-in
        XCTAssertEqual(t.pendingSyncPoints, 0)
        t.sent(FrontendID.copyDone)
        t.sent(S)
        XCTAssertEqual(t.pendingSyncPoints, 1)
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testCopyFromByQueryEndsWithItsReadyForQuery() {
        var t = ResponseTracker()
        t.sent(Q)
        XCTAssertEqual(t.received(BackendID.copyInResponse), .forward)
        t.sent(FrontendID.copyData)
        t.sent(FrontendID.copyDone)
        XCTAssertEqual(t.pendingSyncPoints, 1)
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testErrorInsideASimpleQueryStillEndsAtReadyForQuery() {
        var t = ResponseTracker()
        t.sent(Q)
        t.sent(Q)
        XCTAssertEqual(t.received(error), .forward)
        XCTAssertFalse(t.serverSkipping)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertEqual(t.pendingSyncPoints, 1)
    }

    func testQueriesBetweenAFailedMessageAndItsSyncAreSkippedToo() {
        var t = ResponseTracker()
        t.sent(P)
        t.sent(Q)  // skipped by the server: the failed Parse's skipping lasts until Sync
        t.sent(S)
        XCTAssertEqual(t.pendingSyncPoints, 2)
        XCTAssertEqual(t.received(error), .forward)
        XCTAssertEqual(t.pendingSyncPoints, 1)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testMessagesAfterTheSyncThatEndsSkippingAreAwaited() {
        var t = ResponseTracker()
        t.sent(P)
        XCTAssertEqual(t.received(error), .forward)
        XCTAssertTrue(t.serverSkipping)
        t.sent(S)
        XCTAssertFalse(t.serverSkipping)
        t.sent(Q)  // after the Sync: answered normally
        XCTAssertEqual(t.pendingSyncPoints, 2)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertEqual(t.received(commandComplete), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testCloseAndAsynchronousMessages() {
        var t = ResponseTracker()
        t.sent(C)
        t.sent(S)
        XCTAssertEqual(t.received(BackendID.noticeResponse), .forward)
        XCTAssertEqual(t.received(BackendID.notificationResponse), .forward)
        XCTAssertEqual(t.received(closeComplete), .forward)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
    }

    func testStatementsSkippedAfterAnErrorAreReported() {
        var t = ResponseTracker()
        t.append(.bind(statement: "PGCAT_1"))
        t.append(.injected(.close(statement: "PGCAT_2")))  // eviction to make room for PGCAT_3
        t.append(.injected(.parse(statement: "PGCAT_3")))
        t.append(.bind(statement: "PGCAT_3"))
        t.append(.parse(statement: "PGCAT_4"))
        t.sent(S)
        XCTAssertEqual(t.headStatement, "PGCAT_1")
        XCTAssertEqual(t.received(error), .forward)
        let outcome = t.takeStatementOutcomes()
        XCTAssertEqual(outcome.failed.map(\.statement), ["PGCAT_4"], "the client's own Parse was skipped: it does not exist")
        XCTAssertEqual(outcome.lost, ["PGCAT_3"], "the re-prepare was skipped: the server lacks it")
        XCTAssertEqual(outcome.unclosed, ["PGCAT_2"], "the eviction was skipped: the server still holds it")
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertTrue(t.isEmpty)
        XCTAssertTrue(t.takeStatementOutcomes().failed.isEmpty)
    }

    func testAFailedReprepareIsLostNotForgotten() {
        var t = ResponseTracker()
        t.append(.injected(.parse(statement: "PGCAT_1")))
        t.append(.bind(statement: "PGCAT_1"))
        t.sent(S)
        XCTAssertEqual(t.received(error), .forward)
        let outcome = t.takeStatementOutcomes()
        XCTAssertEqual(outcome.lost, ["PGCAT_1"])
        XCTAssertTrue(outcome.failed.isEmpty)
    }

    func testInjectedDescribeIsDroppedAndCountedUntilItsRowDescription() {
        var t = ResponseTracker()
        t.append(.injected(.parse(statement: "PGCAT_1")))
        t.append(.injected(.describe(statement: "PGCAT_1")))
        XCTAssertTrue(t.awaitsInjectedDescribe)
        XCTAssertEqual(t.received(parseComplete), .drop)
        XCTAssertEqual(t.headDescribedStatement?.statement, "PGCAT_1")
        XCTAssertNil(t.headDescribedStatement?.client, "the pooler's own: no client learns from it")
        XCTAssertEqual(t.received(BackendID.parameterDescription), .drop)
        XCTAssertTrue(t.awaitsInjectedDescribe)
        XCTAssertEqual(t.received(BackendID.noData), .drop)
        XCTAssertFalse(t.awaitsInjectedDescribe)
        XCTAssertTrue(t.isEmpty)
    }

    func testInjectedDescribeSkippedAfterTheParseFailsIsNoLongerAwaited() {
        var t = ResponseTracker()
        t.append(.injected(.parse(statement: "PGCAT_1")))
        t.append(.injected(.describe(statement: "PGCAT_1")))
        XCTAssertEqual(t.received(error), .forward)  // (the client's held Bind gets it)
        XCTAssertFalse(t.awaitsInjectedDescribe)
        XCTAssertTrue(t.serverSkipping)
        XCTAssertEqual(t.takeStatementOutcomes().lost, ["PGCAT_1"])
    }

    func testClientStatementDescribeNamesItsStatementForTheShape() {
        var t = ResponseTracker()
        t.append(.describeStatement(statement: "PGCAT_2", client: "s2"))
        XCTAssertEqual(t.received(BackendID.parameterDescription), .forward)
        XCTAssertEqual(t.headDescribedStatement?.statement, "PGCAT_2")
        XCTAssertEqual(t.headDescribedStatement?.client, "s2")
        XCTAssertEqual(t.received(rowDescription), .forward)
        XCTAssertNil(t.headDescribedStatement)
    }

    func testAStaleInjectedDescribeIsForwardedAndEndsTheWait() {
        var t = ResponseTracker()
        t.append(.injected(.describe(statement: "PGCAT_1")))
        XCTAssertEqual(t.headStatement, nil, "not a client's request")
        XCTAssertEqual(t.received(error), .forward)  // (0A000 of a stale copy: the client's held Bind gets it)
        XCTAssertFalse(t.awaitsInjectedDescribe)
        XCTAssertTrue(t.serverSkipping)
    }

    func testReadyForQueryPassingAnUnansweredInjectedDescribeEndsTheWait() {
        var t = ResponseTracker()
        t.append(.injected(.describe(statement: "PGCAT_1")))
        t.sent(S)
        XCTAssertTrue(t.awaitsInjectedDescribe)
        XCTAssertEqual(t.received(ready), .forward)
        XCTAssertFalse(t.awaitsInjectedDescribe)
        XCTAssertTrue(t.isEmpty)
    }

    func testResetForgetsAnInjectedDescribe() {
        var t = ResponseTracker()
        t.append(.injected(.describe(statement: "PGCAT_1")))
        t.reset()
        XCTAssertFalse(t.awaitsInjectedDescribe)
    }
}
