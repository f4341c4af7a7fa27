import XCTest
@testable import MLRouter
import QueryParser

/// An unqualified pgml call counts when the session's search_path names pgml: the setting's syntax, the SET forms
/// the parser reports, and the classification with and without pgml on the path.
final class SearchPathTests: XCTestCase {
    func testSettingValuesAreSplitAsPostgreSQLSplitsThem() {
        XCTAssertEqual(SearchPath.schemas(inSetting: "pgml, public"), ["pgml", "public"])
        XCTAssertEqual(SearchPath.schemas(inSetting: " PGML ,public "), ["pgml", "public"])
        XCTAssertEqual(SearchPath.schemas(inSetting: "\"$user\", public"), ["$user", "public"])
        XCTAssertEqual(SearchPath.schemas(inSetting: "\"PGML\""), ["PGML"])
        XCTAssertEqual(SearchPath.schemas(inSetting: "\"a\"\"b\",c"), ["a\"b", "c"])
        XCTAssertEqual(SearchPath.schemas(inSetting: ""), [])
        XCTAssertNil(SearchPath.schemas(inSetting: "a,,b"))
        XCTAssertNil(SearchPath.schemas(inSetting: "\"open"))
        XCTAssertNil(SearchPath.schemas(inSetting: "a b"))
        XCTAssertEqual(SearchPath.schemas(inSetting: "pgml\u{A0}"), ["pgml\u{A0}"])  // only ASCII space separates
        XCTAssertTrue(SearchPath.includesPGML(SearchPath.schemas(inSetting: "public,pgml")!))
        XCTAssertFalse(SearchPath.includesPGML(SearchPath.schemas(inSetting: "\"PGML\"")!))  // another schema
        XCTAssertFalse(SearchPath.includesPGML(SearchPath.schemas(inSetting: "pgml_old, public")!))
    }

    /// The search_path after a whole text, for the texts after it. Without pgml on the path only texts that name
    /// `pgml` are parsed: every change that puts pgml there names it.
    func testThePathAfterATextFollowsItsChanges() {
        for sql in ["SET SEARCH_PATH TO pgml", "SET SESSION SCHEMA 'pgml'"] {  // (pgjdbc's setSchema)
            XCTAssertTrue(MLClassifier.mightInvolvePGML(sql), sql)
            XCTAssertTrue(after(sql, startingWith: false), sql)
        }
        for sql in ["reset all", "DISCARD ALL", "SET search_path TO public"] {
            XCTAssertFalse(after(sql, startingWith: true), sql)
        }
        XCTAssertTrue(after("SELECT embed('m', 'x')", startingWith: true))
        XCTAssertTrue(after("SET statement_timeout = 5", startingWith: true))
    }

    private func after(_ sql: String, startingWith initial: Bool) -> Bool {
        SearchPath.includesPGML(at: .max, startingWith: initial, changes: facts(sql).searchPathChanges)
    }

    /// The text's last change of search_path.
    private func lastChange(_ sql: String) -> QueryFacts.SearchPathChange? {
        facts(sql).searchPathChanges.last?.change
    }

    private func facts(_ sql: String) -> QueryFacts {
        guard case .success(let facts) = QueryParser.parse(sql) else {
            XCTFail("does not parse: \(sql)")
            return QueryFacts()
        }
        return facts
    }

    func testTheParserReportsSessionChangesOfSearchPath() {
        XCTAssertEqual(lastChange("SET search_path TO pgml, \"Public\""), .set(["pgml", "Public"]))
        XCTAssertEqual(lastChange("set session search_path = public"), .set(["public"]))
        XCTAssertEqual(lastChange("SET search_path = 'pgml, public'"), .set(["pgml, public"]))  // one schema
        XCTAssertEqual(lastChange("SET search_path TO DEFAULT"), .reset)
        XCTAssertEqual(lastChange("RESET search_path"), .reset)
        XCTAssertEqual(lastChange("RESET ALL"), .reset)
        XCTAssertEqual(lastChange("DISCARD ALL"), .reset)
        XCTAssertEqual(lastChange("SET search_path TO public; SET search_path TO pgml"), .set(["pgml"]))
        XCTAssertEqual(lastChange("SET LOCAL search_path TO pgml"), .set(["pgml"]))
        XCTAssertEqual(lastChange("SET SCHEMA 'pgml'"), .set(["pgml"]))
        XCTAssertEqual(facts("SELECT 1; RESET ALL").searchPathChanges, [QueryFacts.SearchPathStep(statement: 1, change: .reset)])
        XCTAssertNil(lastChange("SET statement_timeout = 5"))
        XCTAssertNil(lastChange("RESET statement_timeout"))
        XCTAssertNil(lastChange("DISCARD PLANS"))
    }

    private func classify(_ sql: String, onPath: Bool) -> MLClassification {
        MLClassifier.classify(text: sql, facts: facts(sql), pgmlOnSearchPath: onPath)
    }

    func testUnqualifiedCallsArePGMLsOnlyWithPGMLOnThePath() {
        let embed = "SELECT embed('intfloat/e5-small-v2', 'hello')"
        XCTAssertEqual(classify(embed, onPath: false).mlClass, .none)
        XCTAssertEqual(classify(embed, onPath: true).mlClass, .gpuInference)
        XCTAssertEqual(classify(embed, onPath: true).modelKey, .model("intfloat/e5-small-v2"))
        XCTAssertEqual(classify("SELECT * FROM transform(task => 'summarization', inputs => ARRAY['x'])", onPath: true).modelKey,
                       .model("task:summarization"))
        XCTAssertEqual(classify("SELECT predict('Project A', ARRAY[1.0])", onPath: true).mlClass, .cpuInference)
        XCTAssertEqual(classify("SELECT * FROM train('p', 'classification', 'pgml.digits', 'target')", onPath: true).mlClass, .write)
        XCTAssertEqual(classify("WITH q AS (SELECT embed('m', $1) AS v) SELECT * FROM q", onPath: true).modelKey, .model("m"))
        // pg_catalog comes first on every search_path: its functions, and window or ordered-set calls, stay plain.
        XCTAssertEqual(classify("SELECT version(), now()", onPath: true).mlClass, .none)
        XCTAssertEqual(classify("SELECT id, rank() OVER (ORDER BY id) FROM t", onPath: true).mlClass, .none)
        XCTAssertEqual(classify("SELECT rank(3) WITHIN GROUP (ORDER BY x) FROM t", onPath: true).mlClass, .none)
        // A change of search_path in the text counts for the statements after it, not before.
        XCTAssertEqual(classify("SET search_path TO pgml, public; SELECT embed('m', 'x')", onPath: false).mlClass, .gpuInference)
        XCTAssertEqual(classify("SELECT embed('m', 'x'); SET search_path TO pgml", onPath: false).mlClass, .none)
        XCTAssertEqual(classify("SELECT embed('m', 'x'); SET search_path TO public", onPath: true).mlClass, .gpuInference)
        XCTAssertEqual(classify("SET search_path TO public; SELECT embed('m', 'x')", onPath: true).mlClass, .none)
        XCTAssertEqual(classify("SET search_path TO pgml; EXPLAIN SELECT embed('m', 'x')", onPath: false).mlClass, .gpuInference)
        // A reset goes back to the server connection's default, which the pooler does not know: not pgml.
        XCTAssertEqual(classify("RESET search_path; SELECT embed('m', 'x')", onPath: true).mlClass, .none)
        XCTAssertEqual(classify("DISCARD ALL; SELECT embed('m', 'x')", onPath: true).mlClass, .none)
        XCTAssertFalse(SearchPath.includesPGML(at: 1, startingWith: true,
                                               changes: [QueryFacts.SearchPathStep(statement: 0, change: .reset)]))
        // A qualified call classifies the same either way.
        XCTAssertEqual(classify("SELECT pgml.embed('m', 'x')", onPath: false).mlClass, .gpuInference)
    }
}
