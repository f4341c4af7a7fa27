/// FrameStreamScanner across reads: passthrough, streaming a big frame, carrying a split inspected frame, stopping.

import NIOCore
import PostgresWire
import XCTest
@testable import Pooler

final class FrameStreamScannerTests: XCTestCase {
    /// Plays the relay's part: merge the carry, scan, forward the counted bytes, keep the rest.
    struct Relay {
        var scanner = FrameStreamScanner()
        var forwarded: [UInt8] = []
        var inspected: [String] = []
        var classified: [Character] = []
        var inspect: Set<Character> = []
        var stopBefore: Set<Character> = []
        /// Return false from `frame` after inspecting these.
        var stopAfter: Set<Character> = []
        var limit = 1 << 20

        /// One read; returns how many bytes were forwarded.
        @discardableResult
        mutating func read(_ bytes: [UInt8]) throws(WireError) -> Int {
            var incoming = ByteBufferAllocator().buffer(capacity: bytes.count)
            incoming.writeBytes(bytes)
            var buffer = scanner.merge(incoming)
            var classified: [Character] = []
            var inspected: [String] = []
            let (inspect, stopBefore, stopAfter) = (self.inspect, self.stopBefore, self.stopAfter)
            let count = try scanner.scan(buffer, limit: limit, classify: { header throws(WireError) in
                let id = Character(Unicode.Scalar(header.id))
                classified.append(id)
                if stopBefore.contains(id) { return .stop }
                return inspect.contains(id) ? .inspect : .passThrough
            }, frame: { header, payload throws(WireError) in
                let id = Character(Unicode.Scalar(header.id))
                inspected.append("\(id):\(String(decoding: payload.readableBytesView, as: UTF8.self))")
                return !stopAfter.contains(id)
            })
            self.classified += classified
            self.inspected += inspected
            forwarded += buffer.readBytes(length: count)!
            scanner.keep(buffer)
            return count
        }
    }

    func frame(_ id: Character, _ payload: String) -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: payload.utf8.count + 5)
        MessageEncoder.frame(UInt8(ascii: id.unicodeScalars.first!), into: &buffer) { $0.writeString(payload) }
        return Array(buffer.readableBytesView)
    }

    func testCompleteFramesPassThroughInOneRead() throws {
        var relay = Relay()
        let bytes = frame("P", "parse") + frame("B", "bind") + frame("E", "") + frame("S", "")
        XCTAssertEqual(try relay.read(bytes), bytes.count)
        XCTAssertEqual(relay.forwarded, bytes)
        XCTAssertEqual(relay.classified, ["P", "B", "E", "S"])
        XCTAssertEqual(relay.scanner.skip, 0)
        XCTAssertFalse(relay.scanner.isMidFrame)
    }

    func testBigFrameStreamsAcrossReadsWithoutWaitingForItsEnd() throws {
        var relay = Relay()
        let big = frame("d", String(repeating: "x", count: 1000))  // 1005 bytes on the wire
        let bytes = big + frame("c", "")
        XCTAssertEqual(try relay.read(Array(bytes[0..<100])), 100)
        XCTAssertEqual(relay.scanner.skip, 905)
        XCTAssertTrue(relay.scanner.isMidFrame)
        XCTAssertEqual(try relay.read(Array(bytes[100..<600])), 500)
        XCTAssertEqual(relay.scanner.skip, 405)
        XCTAssertEqual(try relay.read(Array(bytes[600...])), 410)
        XCTAssertEqual(relay.scanner.skip, 0)
        XCTAssertFalse(relay.scanner.isMidFrame)
        XCTAssertEqual(relay.forwarded, bytes)
        XCTAssertEqual(relay.classified, ["d", "c"])  // each header classified once, however many reads
    }

    func testSplitHeaderIsCarriedToTheNextRead() throws {
        var relay = Relay()
        let bytes = frame("Q", "SELECT 1")
        XCTAssertEqual(try relay.read(Array(bytes[0..<3])), 0)
        XCTAssertEqual(relay.classified, [])
        XCTAssertEqual(try relay.read(Array(bytes[3...])), bytes.count)
        XCTAssertEqual(relay.forwarded, bytes)
    }

    func testInspectedFrameSplitAcrossReadsIsCarriedAndInspectedOnceComplete() throws {
        var relay = Relay(inspect: ["Z"])
        let complete = frame("C", "SELECT 1")
        let ready = frame("Z", "I")
        let bytes = complete + ready
        XCTAssertEqual(try relay.read(Array(bytes[0..<(complete.count + 3)])), complete.count)  // header incomplete
        XCTAssertEqual(try relay.read(Array(bytes[(complete.count + 3)..<(bytes.count - 1)])), 0)  // header, no payload
        XCTAssertEqual(relay.inspected, [])
        XCTAssertEqual(try relay.read([bytes.last!]), ready.count)
        XCTAssertEqual(relay.inspected, ["Z:I"])
        XCTAssertEqual(relay.forwarded, bytes)
    }

    func testInspectorCanStopAfterAFrame() throws {
        var relay = Relay(inspect: ["Z"], stopAfter: ["Z"])
        let first = frame("C", "BEGIN") + frame("Z", "T")
        let rest = frame("N", "notice") + frame("Z", "I")
        XCTAssertEqual(try relay.read(first + rest), first.count)
        XCTAssertEqual(relay.inspected, ["Z:T"])
        XCTAssertEqual(try relay.read([]), rest.count)  // the rest was carried
        XCTAssertEqual(relay.inspected, ["Z:T", "Z:I"])
        XCTAssertEqual(relay.forwarded, first + rest)
    }

    func testStopLeavesTheFrameAndEverythingAfterIt() throws {
        var relay = Relay(stopBefore: ["X"])
        let query = frame("Q", "SELECT 1")
        let terminate = frame("X", "")
        XCTAssertEqual(try relay.read(query + terminate + frame("Q", "SELECT 2")), query.count)
        XCTAssertEqual(relay.forwarded, query)
        XCTAssertEqual(relay.classified, ["Q", "X"])
        relay.stopBefore = []
        XCTAssertEqual(try relay.read([]), terminate.count + query.count)
        XCTAssertEqual(relay.classified, ["Q", "X", "X", "Q"])
    }

    func testOversizeFrameThrows() {
        var relay = Relay()
        relay.limit = 100
        let header: [UInt8] = [UInt8(ascii: "Q"), 0, 0, 0, 101]
        do {
            try relay.read(frame("S", "") + header)
            XCTFail("expected messageTooLarge")
        } catch {
            XCTAssertEqual(error.kind, .messageTooLarge(length: 101, limit: 100))
        }
    }

    func testLengthBelowFourThrows() {
        var relay = Relay()
        do {
            try relay.read([UInt8(ascii: "Q"), 0, 0, 0, 3])
            XCTFail("expected invalidLength")
        } catch {
            XCTAssertEqual(error.kind, .invalidLength(3))
        }
    }

    func testResetForgetsSkipAndCarry() throws {
        var relay = Relay()
        let big = frame("d", String(repeating: "y", count: 50))
        try relay.read(Array(big[0..<10]))
        XCTAssertTrue(relay.scanner.isMidFrame)
        relay.scanner.reset()
        XCTAssertFalse(relay.scanner.isMidFrame)
        try relay.read(Array(frame("S", "")[0..<2]))
        relay.scanner.reset()
        let fresh = frame("S", "")
        XCTAssertEqual(try relay.read(fresh), fresh.count)
        XCTAssertEqual(relay.classified, ["d", "S"])
    }

    /// Any way of cutting the stream forwards every byte once, in order, and inspects every chosen frame once.
    func testRandomSplitsForwardEverythingAndInspectEachFrameOnce() throws {
        var rng = PoolRandom(seed: 42)
        let frames = [frame("T", "row description"), frame("D", String(repeating: "z", count: 300)), frame("C", "SELECT 1"),
                      frame("S", "TimeZone\0UTC\0"), frame("Z", "I"), frame("N", "notice"), frame("Z", "T")]
        for _ in 0..<300 {
            let chosen = (0..<Int.random(in: 1...8, using: &rng)).map { _ in frames.randomElement(using: &rng)! }
            let stream = chosen.flatMap { $0 }
            var relay = Relay(inspect: ["Z", "S"])
            var offset = 0
            while offset < stream.count {
                let end = min(stream.count, offset + Int.random(in: 1...64, using: &rng))
                try relay.read(Array(stream[offset..<end]))
                offset = end
            }
            XCTAssertEqual(relay.forwarded, stream)
            XCTAssertFalse(relay.scanner.isMidFrame)
            let expected = chosen.filter { $0[0] == UInt8(ascii: "Z") || $0[0] == UInt8(ascii: "S") }
                .map { "\(Character(Unicode.Scalar($0[0]))):\(String(decoding: $0[5...], as: UTF8.self))" }
            XCTAssertEqual(relay.inspected, expected)
        }
    }
}

