/// ResultShape: what of a RowDescription counts as the shape of a statement's result.

import NIOCore
import XCTest
@testable import Pooler

final class ResultShapeTests: XCTestCase {
    private struct Column {
        var name: String
        var table: Int32 = 16384, attribute: Int16 = 1
        var type: Int32 = 25, size: Int16 = -1, modifier: Int32 = -1, format: Int16 = 0
    }

    private func rowDescription(_ columns: [Column]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int16(columns.count))
        for c in columns {
            buffer.writeNullTerminatedString(c.name)
            buffer.writeMultipleIntegers(c.table, c.attribute, c.type, c.size, c.modifier, c.format)
        }
        return buffer
    }

    func testNamesTypesAndModifiersMakeTheShape() {
        let ab = ResultShape(rowDescription: rowDescription([Column(name: "a"), Column(name: "b")]))
        XCTAssertNotNil(ab)
        XCTAssertEqual(ab, ResultShape(rowDescription: rowDescription([Column(name: "a"), Column(name: "b")])))
        XCTAssertNotEqual(ab, ResultShape(rowDescription: rowDescription([Column(name: "b"), Column(name: "a")])))
        XCTAssertNotEqual(ab, ResultShape(rowDescription: rowDescription([Column(name: "a")])))
        XCTAssertNotEqual(ab, ResultShape(rowDescription: rowDescription([Column(name: "a"),
                                                                          Column(name: "b", type: 23, size: 4)])))
        XCTAssertNotEqual(ab, ResultShape(rowDescription: rowDescription([Column(name: "a"),
                                                                          Column(name: "b", modifier: 14)])))
    }

    func testColumnOriginsAndFormatsAreNotPartOfIt() {
        // A table dropped and created again (new OID), a column added again (new number), binary results.
        let before = ResultShape(rowDescription: rowDescription([Column(name: "a")]))
        XCTAssertEqual(before, ResultShape(rowDescription: rowDescription([Column(name: "a", table: 99999,
                                                                                  attribute: 3, format: 1)])))
    }

    func testNoRowsDiffersFromNoColumns() {
        XCTAssertNotEqual(ResultShape.noRows, ResultShape(rowDescription: rowDescription([])))
        XCTAssertEqual(ResultShape.noRows, .noRows)
    }

    func testMalformedDescriptionsHaveNoShape() {
        var cut = rowDescription([Column(name: "a")])
        cut.moveWriterIndex(to: cut.writerIndex - 3)
        XCTAssertNil(ResultShape(rowDescription: cut))
        var negative = ByteBuffer()
        negative.writeInteger(Int16(-1))
        XCTAssertNil(ResultShape(rowDescription: negative))
        var unterminated = ByteBuffer()
        unterminated.writeInteger(Int16(1))
        unterminated.writeString("abc")
        XCTAssertNil(ResultShape(rowDescription: unterminated))
    }
}
