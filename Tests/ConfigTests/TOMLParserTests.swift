/// TOML parser unit tests: strings, escapes, numbers, arrays, inline tables, keys, tables and errors with lines.

import XCTest
import Config

final class TOMLParserTests: XCTestCase {
    private func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> ConfigNode {
        do {
            return try TOMLParser.parse(text)
        } catch {
            XCTFail("unexpected error: \(error)", file: file, line: line)
            throw error
        }
    }

    private func assertError(_ text: String, line expectedLine: Int, _ fragment: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        do {
            let node = try TOMLParser.parse(text)
            XCTFail("expected an error, got \(node)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.line, expectedLine, "\(error)", file: file, line: line)
            XCTAssertTrue(error.message.contains(fragment), "'\(error.message)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    func testBasicStringsAndEscapes() throws {
        let doc = try parse(#"""
            a = "tab\there \"quoted\" back\\slash"
            b = "\u00e9\U0001F600\n\r\b\f"
            c = ""
            """#)
        XCTAssertEqual(doc["a"], .string("tab\there \"quoted\" back\\slash"))
        XCTAssertEqual(doc["b"], .string("é😀\n\r\u{08}\u{0C}"))
        XCTAssertEqual(doc["c"], .string(""))
    }

    func testLiteralStrings() throws {
        let doc = try parse(#"""
            path = 'C:\Users\nodejs\templates'
            regex = '<\i\c*\s*>'
            quoted = 'Tom "Dubs" Preston-Werner'
            """#)
        XCTAssertEqual(doc["path"], .string(#"C:\Users\nodejs\templates"#))
        XCTAssertEqual(doc["regex"], .string(#"<\i\c*\s*>"#))
        XCTAssertEqual(doc["quoted"], .string(#"Tom "Dubs" Preston-Werner"#))
    }

    func testMultilineStrings() throws {
        let doc = try parse("a = \"\"\"\nRoses are red\nViolets are blue\"\"\"\n"
            + "b = \"\"\"\nThe quick brown \\\n\n   fox jumps.\"\"\"\n"
            + "c = '''\nraw \\n text\n'''\n"
            + "d = \"\"\"Here are two quotation marks: \"\". Simple enough.\"\"\"\n"
            + "e = ''''That,' she said, 'is still pointless.''''\n"
            + "f = \"\"\"ends with a quote\"\"\"\"\n")
        XCTAssertEqual(doc["a"], .string("Roses are red\nViolets are blue"))
        XCTAssertEqual(doc["b"], .string("The quick brown fox jumps."))
        XCTAssertEqual(doc["c"], .string("raw \\n text\n"))
        XCTAssertEqual(doc["d"], .string("Here are two quotation marks: \"\". Simple enough."))
        XCTAssertEqual(doc["e"], .string("'That,' she said, 'is still pointless.'"))
        XCTAssertEqual(doc["f"], .string("ends with a quote\""))
    }

    func testNumbersAndBooleans() throws {
        let doc = try parse("""
            a = +99
            b = -17
            c = 1_000_000
            d = 0xDEAD_beef
            e = 0o755
            f = 0b1101
            g = 3.1415
            h = -0.01
            i = 5e+22
            j = 6.626e-34
            k = inf
            l = -inf
            m = nan
            t = true
            u = false
            z = 0
            """)
        XCTAssertEqual(doc["a"], .integer(99))
        XCTAssertEqual(doc["b"], .integer(-17))
        XCTAssertEqual(doc["c"], .integer(1_000_000))
        XCTAssertEqual(doc["d"], .integer(0xDEADBEEF))
        XCTAssertEqual(doc["e"], .integer(0o755))
        XCTAssertEqual(doc["f"], .integer(13))
        XCTAssertEqual(doc["g"], .float(3.1415))
        XCTAssertEqual(doc["h"], .float(-0.01))
        XCTAssertEqual(doc["i"], .float(5e22))
        XCTAssertEqual(doc["j"], .float(6.626e-34))
        XCTAssertEqual(doc["k"], .float(.infinity))
        XCTAssertEqual(doc["l"], .float(-.infinity))
        guard case .float(let nan)? = doc["m"] else { return XCTFail("nan") }
        XCTAssertTrue(nan.isNaN)
        XCTAssertEqual(doc["t"], .bool(true))
        XCTAssertEqual(doc["u"], .bool(false))
        XCTAssertEqual(doc["z"], .integer(0))
    }

    func testDatesAreKeptAsStrings() throws {
        let doc = try parse("a = 1979-05-27T07:32:00Z\nb = 1979-05-27 07:32:00\nc = 07:32:00\nd = 1979-05-27\n")
        XCTAssertEqual(doc["a"], .string("1979-05-27T07:32:00Z"))
        XCTAssertEqual(doc["b"], .string("1979-05-27 07:32:00"))
        XCTAssertEqual(doc["c"], .string("07:32:00"))
        XCTAssertEqual(doc["d"], .string("1979-05-27"))
    }

    func testArrays() throws {
        let doc = try parse("""
            empty = []
            ints = [ 1, 2, 3, ]
            nested = [ [1, 2], ["a", 'b'], [] ]
            multi = [
                # a comment inside
                "one",   # trailing comment
                "two",
            ]
            servers = [["127.0.0.1", 5432, "primary"],["localhost", 5432, "replica"]]
            """)
        XCTAssertEqual(doc["empty"], .array([]))
        XCTAssertEqual(doc["ints"], .array([.integer(1), .integer(2), .integer(3)]))
        XCTAssertEqual(doc["nested"], .array([
            .array([.integer(1), .integer(2)]), .array([.string("a"), .string("b")]), .array([]),
        ]))
        XCTAssertEqual(doc["multi"], .array([.string("one"), .string("two")]))
        XCTAssertEqual(doc["servers"]?.arrayCount, 2)
    }

    func testInlineTables() throws {
        let doc = try parse("""
            name = { first = "Tom", last = "Preston-Werner" }
            point = {x=1,y=2}
            nested = { a = { b = 1 }, c.d = "dotted" }
            empty = {}
            list = [{ host = "h", port = 5432 }]
            """)
        XCTAssertEqual(doc["name"], .table([ConfigEntry(key: "first", value: .string("Tom")),
                                            ConfigEntry(key: "last", value: .string("Preston-Werner"))]))
        XCTAssertEqual(doc["point"]?["y"], .integer(2))
        XCTAssertEqual(doc["nested"]?["a"]?["b"], .integer(1))
        XCTAssertEqual(doc["nested"]?["c"]?["d"], .string("dotted"))
        XCTAssertEqual(doc["empty"], .table([]))
        XCTAssertEqual(doc["list"], .array([.table([ConfigEntry(key: "host", value: .string("h")),
                                                    ConfigEntry(key: "port", value: .integer(5432))])]))
    }

    func testKeysAndTables() throws {
        let doc = try parse("""
            # top comment
            title = "x"   # comment after value
            site."google.com" = true
            a . b . c = 1
            "quoted key" = 2
            'literal key' = 3
            bare-key_1 = 4
            1234 = 5

            [table]        # comment after header
            key = "v"

            [dog."tater.man"]
            type.name = "pug"

            [ x . y . z ]
            w = 1

            [x]
            direct = true

            [pools.sharded_db.users.0]
            username = "u"
            """)
        XCTAssertEqual(doc["title"], .string("x"))
        XCTAssertEqual(doc["site"]?["google.com"], .bool(true))
        XCTAssertEqual(doc["a"]?["b"]?["c"], .integer(1))
        XCTAssertEqual(doc["quoted key"], .integer(2))
        XCTAssertEqual(doc["literal key"], .integer(3))
        XCTAssertEqual(doc["bare-key_1"], .integer(4))
        XCTAssertEqual(doc["1234"], .integer(5))
        XCTAssertEqual(doc["table"]?["key"], .string("v"))
        XCTAssertEqual(doc["dog"]?["tater.man"]?["type"]?["name"], .string("pug"))
        XCTAssertEqual(doc["x"]?["y"]?["z"]?["w"], .integer(1))
        XCTAssertEqual(doc["x"]?["direct"], .bool(true))
        XCTAssertEqual(doc["pools"]?["sharded_db"]?["users"]?["0"]?["username"], .string("u"))
    }

    func testArrayOfTables() throws {
        let doc = try parse("""
            [[products]]
            name = "Hammer"

            [[products]]

            [[products]]
            name = "Nail"

            [[fruits]]
            name = "apple"
            [fruits.physical]
            color = "red"
            [[fruits.varieties]]
            name = "red delicious"
            [[fruits.varieties]]
            name = "granny smith"

            [[fruits]]
            name = "banana"
            """)
        guard case .array(let products)? = doc["products"] else { return XCTFail("products") }
        XCTAssertEqual(products.count, 3)
        XCTAssertEqual(products[1], .table([]))
        XCTAssertEqual(products[2]["name"], .string("Nail"))
        guard case .array(let fruits)? = doc["fruits"] else { return XCTFail("fruits") }
        XCTAssertEqual(fruits.count, 2)
        XCTAssertEqual(fruits[0]["physical"]?["color"], .string("red"))
        XCTAssertEqual(fruits[0]["varieties"]?.arrayCount, 2)
        XCTAssertEqual(fruits[1]["name"], .string("banana"))
    }

    func testCRLFAndKeyOrder() throws {
        let doc = try parse("b = 1\r\na = 2 # c\r\n[t]\r\nz = 'x'\r\n")
        guard case .table(let entries) = doc else { return XCTFail("table") }
        XCTAssertEqual(entries.map(\.key), ["b", "a", "t"])
    }

    func testErrorsCarryLineNumbers() {
        assertError("a = 1\na = 2\n", line: 2, "duplicate key a")
        assertError("[t]\nx = 1\n[t]\n", line: 3, "defined more than once")
        assertError("\n\nkey \"value\"\n", line: 3, "expected '='")
        assertError("a = \"unterminated\nb = 1\n", line: 1, "unterminated string")
        assertError("a = 1\nb = bare\n", line: 2, "strings must be quoted")
        assertError("a = 1 b = 2\n", line: 1, "expected a newline")
        assertError("a = [1, 2\nb = 3\n", line: 2, "expected ',' or ']'")
        assertError("a = { b = 1 }\n[a]\n", line: 2, "already has a value")
        assertError("a = []\n[[a]]\n", line: 2, "static array")
        assertError("[fruit]\napple.color = 'red'\n[fruit.apple]\n", line: 3, "dotted keys")
        assertError("x = \"\\q\"\n", line: 1, "invalid escape")
        assertError("x = 012\n", line: 1, "invalid value")
        assertError("x = 1__0\n", line: 1, "invalid value")
        assertError("x = 0x\n", line: 1, "invalid value")
        assertError("x = 99999999999999999999\n", line: 1, "integer '99999999999999999999' does not fit in 64 bits")
        assertError("x = -99999999999999999999\n", line: 1, "does not fit in 64 bits")
        assertError("x =\n", line: 1, "expected a value")
        assertError("[a\n", line: 1, "expected ']'")
        assertError("x = '''\nno end\n", line: 3, "unterminated")
        assertError("= 1\n", line: 1, "expected a key")
    }
}

private extension ConfigNode {
    var arrayCount: Int? {
        if case .array(let items) = self { return items.count }
        return nil
    }
}
