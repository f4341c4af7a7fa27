/// docs/configuration.md stays true: its defaults tables match the code and its examples load.

import Foundation
import XCTest
import Config

final class DocsTests: XCTestCase {
    private var docsURL: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/configuration.md")
    }

    func testDocsDefaultsTableMatchesTheCode() throws {
        let text = try String(contentsOf: docsURL, encoding: .utf8)
        let start = try XCTUnwrap(text.range(of: "<!-- defaults-table:start -->\n"), "marker missing in \(docsURL.path)")
        let end = try XCTUnwrap(text.range(of: "\n<!-- defaults-table:end -->"))
        let table = String(text[start.upperBound..<end.lowerBound])
        XCTAssertEqual(table, ConfigDefaults.markdownTable(),
                       "docs/configuration.md's defaults table is out of date; paste ConfigDefaults.markdownTable()")
    }

    func testDocsSectionTablesShowTheSameDefaults() throws {
        let text = try String(contentsOf: docsURL, encoding: .utf8)
        var documented: [String: String] = [:]
        var section: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("<!-- keys: ") {
                section = String(line.dropFirst("<!-- keys: ".count).dropLast(" -->".count))
            } else if let current = section, line.hasPrefix("| `") {
                let cells = line.split(separator: "|", omittingEmptySubsequences: false)
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                let key = cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
                documented["\(current) \(key)"] = cells[3]
            } else if line.isEmpty, section != nil, !documented.isEmpty {
                section = nil
            }
        }
        for row in ConfigDefaults.rows {
            let expected = row.value.hasPrefix("(") ? row.value : "`\(row.value)`"
            XCTAssertEqual(documented["\(row.section) \(row.key)"], expected, "\(row.section).\(row.key)")
        }
        XCTAssertEqual(documented.count, ConfigDefaults.rows.count, "docs document keys the code does not have")
    }

    func testDocsExamplesLoad() throws {
        let text = try String(contentsOf: docsURL, encoding: .utf8)
        var examples: [(syntax: String, body: String)] = []
        var current: (syntax: String, lines: [String])?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if let open = current {
                if line == "```" {
                    examples.append((open.syntax, open.lines.joined(separator: "\n")))
                    current = nil
                } else {
                    current?.lines.append(String(line))
                }
            } else if line == "```yaml" || line == "```toml" {
                current = (String(line.dropFirst(3)), [])
            }
        }
        XCTAssertEqual(examples.map(\.syntax), ["yaml", "toml"])
        for example in examples {
            do {
                let loaded = example.syntax == "yaml"
                    ? try ConfigLoader.parse(yaml: example.body) : try ConfigLoader.parse(toml: example.body)
                XCTAssertEqual(loaded.warnings, [], example.syntax)
            } catch {
                XCTFail("the \(example.syntax) example in docs/configuration.md does not load: \(error)")
            }
        }
    }
}
