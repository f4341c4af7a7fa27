import XCTest
@testable import MLRouter
import QueryParser

final class MLClassificationTests: XCTestCase {
    private func classify(_ sql: String, file: StaticString = #filePath, line: UInt = #line) -> MLClassification {
        guard case .success(let facts) = QueryParser.parse(sql) else {
            XCTFail("does not parse: \(sql)", file: file, line: line)
            return .none
        }
        return MLClassifier.classify(text: sql, facts: facts)
    }

    private let e5 = ModelKey.model("intfloat/e5-small-v2")
    private let llama = ModelKey.model("meta-llama/Meta-Llama-3.1-8B-Instruct")

    /// (statement, class, model key) — the doc examples of reference/pgml.md §1.2 first.
    private lazy var table: [(String, MLClass, ModelKey?)] = [
        // embeddings, also in ORDER BY of a vector search
        ("SELECT pgml.embed('intfloat/e5-small-v2', 'No, that''s not true', '{\"prompt\": \"query: \"}'::JSONB)", .gpuInference, e5),
        ("SELECT quote FROM star_wars_quotes ORDER BY pgml.embed('intfloat/e5-small-v2', 'Feel the force!', '{\"prompt\": \"query: \"}'::JSONB)::vector <=> embedding DESC LIMIT 1", .gpuInference, e5),
        // LLMs
        ("SELECT * FROM pgml.transform(task => 'text-generation', inputs => ARRAY['In a galaxy far far away'])", .gpuInference, .model("task:text-generation")),
        ("SELECT pgml.transform(task => '{\"task\": \"text-generation\", \"model\": \"meta-llama/Meta-Llama-3.1-8B-Instruct\", \"device_map\": \"auto\"}'::JSONB, inputs => ARRAY['AI is going to'], args => '{\"max_new_tokens\": 100}'::JSONB)", .gpuInference, llama),
        ("SELECT pgml.transform_stream(task => '{\"task\": \"conversational\", \"model\": \"meta-llama/Meta-Llama-3.1-8B-Instruct\"}'::JSONB, inputs => ARRAY['{\"role\": \"user\", \"content\": \"Tell me about yourself.\"}'::JSONB]) AS answer", .gpuInference, llama),
        ("SELECT pgml.rank('mixedbread-ai/mxbai-rerank-base-v1', 'test', ARRAY['doc1', 'doc2'])", .gpuInference, .model("mixedbread-ai/mxbai-rerank-base-v1")),
        ("SELECT pgml.chunk('recursive_character', content) FROM documents", .light, nil),
        // classical ML
        ("SELECT * FROM pgml.train('My Classification Project', task => 'classification', relation_name => 'pgml.digits', y_column_name => 'target')", .write, nil),
        ("SELECT * FROM pgml.deploy('Handwritten Digit Image Classifier', strategy => 'best_score')", .write, nil),
        ("SELECT target, pgml.predict('Handwritten Digit Image Classifier', image) AS prediction FROM pgml.digits LIMIT 10", .cpuInference, .model("project:Handwritten Digit Image Classifier")),
        ("WITH predictions AS (SELECT pgml.predict_batch('My Classification Project', array_agg(image)) AS prediction, unnest(array_agg(target)) AS target FROM pgml.digits WHERE target = 0) SELECT prediction, target FROM predictions", .cpuInference, .model("project:My Classification Project")),
        ("SELECT pgml.tune('Translate English to Spanish', task => 'translation', relation_name => 'kde4_en_to_es', y_column_name => 'es', model_name => 'Helsinki-NLP/opus-mt-en-es', hyperparams => '{}')", .write, nil),
        ("SELECT pgml.generate('Translate English to Spanish', 'I love SQL')", .gpuInference, .model("project:Translate English to Spanish")),
        ("SELECT * FROM pgml.load_dataset('kde4', kwargs => '{\"lang1\": \"en\", \"lang2\": \"es\"}')", .write, nil),
        // light metadata reads
        ("SELECT * FROM pgml.deployed_models", .light, nil),
        ("SELECT models.id, models.algorithm, models.metrics FROM pgml.models JOIN pgml.projects ON projects.id = models.project_id", .light, nil),
        ("SELECT pgml.version()", .light, nil),
        ("SELECT pgml.cosine_similarity(a, b) FROM vecs", .light, nil),
        ("SELECT pgml.norm_l2(ARRAY[1.0, 2.0]::real[])", .light, nil),
        // everywhere in a statement
        ("SELECT id FROM docs WHERE pgml.embed('intfloat/e5-small-v2', body) IS NOT NULL", .gpuInference, e5),
        ("SELECT * FROM (SELECT pgml.embed('intfloat/e5-small-v2', 'x') AS e) s", .gpuInference, e5),
        ("SELECT (SELECT pgml.embed('intfloat/e5-small-v2', 'x')) AS e", .gpuInference, e5),
        ("WITH q AS (SELECT pgml.embed('intfloat/e5-small-v2', 'x') AS v) SELECT * FROM q", .gpuInference, e5),
        ("WITH a AS (WITH b AS (SELECT pgml.embed('intfloat/e5-small-v2', 'x') AS v) SELECT * FROM b) SELECT * FROM a", .gpuInference, e5),
        ("SELECT body FROM docs GROUP BY body HAVING count(pgml.embed('intfloat/e5-small-v2', body)) > 0", .gpuInference, e5),
        ("SELECT * FROM docs, LATERAL (SELECT pgml.embed('intfloat/e5-small-v2', docs.body)) e", .gpuInference, e5),
        ("SELECT * FROM pgml.embed('intfloat/e5-small-v2', ARRAY['a', 'b'])", .gpuInference, e5),
        ("VALUES (pgml.embed('intfloat/e5-small-v2', 'x'))", .gpuInference, e5),
        ("SELECT pgml.embed(transformer => 'intfloat/e5-small-v2', text => 'x')", .gpuInference, e5),
        ("SELECT pgml.embed('intfloat/e5-small-v2', 'x') UNION ALL SELECT pgml.embed('intfloat/e5-small-v2', 'y')", .gpuInference, e5),
        ("EXPLAIN SELECT pgml.embed('intfloat/e5-small-v2', 'x')", .gpuInference, e5),
        ("COPY (SELECT pgml.embed('intfloat/e5-small-v2', body) FROM docs) TO STDOUT", .gpuInference, e5),
        ("DECLARE c CURSOR FOR SELECT pgml.embed('intfloat/e5-small-v2', body) FROM docs", .gpuInference, e5),
        // model keys from parameters and expressions
        ("SELECT pgml.embed($1, $2)", .gpuInference, .parameter(1, function: "embed")),
        ("SELECT pgml.transform(task => $1::jsonb, inputs => ARRAY[$2])", .gpuInference, .parameter(1, function: "transform")),
        ("SELECT pgml.predict($1, ARRAY[1, 2, 3])", .cpuInference, .parameter(1, function: "predict")),
        ("SELECT pgml.embed(m.name, 'x') FROM models m", .gpuInference, .unknown),
        ("SELECT pgml.predict(42, ARRAY[1, 2, 3])", .cpuInference, .model("model:42")),
        ("SELECT pgml.predict('42', ARRAY[1, 2, 3])", .cpuInference, .model("model:42")),
        // a number as a transformer name is the same key as that name quoted (one model, one home)
        ("SELECT pgml.embed(7::text, 'x')", .gpuInference, .model("7")),
        ("SELECT pgml.embed('7', 'x')", .gpuInference, .model("7")),
        ("SELECT pgml.transform('{\"task\": \"summarization\"}'::jsonb, inputs => ARRAY['x'])", .gpuInference, .model("task:summarization")),
        ("SELECT pgml.transform('translation_en_to_fr', inputs => ARRAY['hi'])", .gpuInference, .model("task:translation_en_to_fr")),
        // CPU inference
        ("SELECT pgml.predict_proba('churn', ARRAY[1, 2]::real[])", .cpuInference, .model("project:churn")),
        ("SELECT pgml.predict_joint('multi', ARRAY[1, 2]::real[])", .cpuInference, .model("project:multi")),
        ("SELECT pgml.decompose('pca', ARRAY[1, 2]::real[])", .cpuInference, .model("project:pca")),
        // writes
        ("SELECT * FROM pgml.train_joint('p', task => 'regression', relation_name => 't', y_column_name => ARRAY['a', 'b'])", .write, nil),
        ("SELECT * FROM pgml.snapshot('t', 'y')", .write, nil),
        ("SELECT pgml.load_all('/tmp/x')", .write, nil),
        ("SELECT pgml.dump_all('/tmp/x')", .write, nil),
        ("INSERT INTO docs (body, embedding) SELECT body, pgml.embed('intfloat/e5-small-v2', body) FROM staging", .write, nil),
        ("UPDATE docs SET embedding = pgml.embed('intfloat/e5-small-v2', body)", .write, nil),
        ("WITH e AS (SELECT pgml.embed('intfloat/e5-small-v2', 'x') AS v) INSERT INTO t SELECT v FROM e", .write, nil),
        ("CREATE TABLE t AS SELECT pgml.embed('intfloat/e5-small-v2', 'x')", .write, nil),
        ("SELECT pgml.embed('intfloat/e5-small-v2', body) INTO t FROM docs", .write, nil),
        ("SELECT pgml.predict('p', ARRAY[1]) FROM t FOR UPDATE", .write, nil),
        ("SELECT pgml.train('p', 'classification', 't', 'y'), pgml.embed('intfloat/e5-small-v2', 'x')", .write, nil),
        // nothing to do with pgml
        ("SELECT 1", .none, nil),
        ("SELECT embed('x')", .none, nil),
        ("SELECT * FROM pgml_notes", .none, nil),
        ("SELECT 'pgml.embed(''a'', ''b'')'", .none, nil),
        ("INSERT INTO t VALUES (1)", .none, nil),
        // hints
        ("/* ml_route: gpu */ SELECT heavy_wrapper(body) FROM docs", .gpuInference, nil),
        ("SELECT my_embed(body) /* ml_route: cpu */ FROM docs", .cpuInference, nil),
        ("/* ml_route: primary */ SELECT pgml.embed('intfloat/e5-small-v2', 'x')", .write, nil),
        ("/*ml_route=gpu*/ SELECT 1", .gpuInference, nil),
        ("SELECT 'ml_route: gpu'", .none, nil),
        ("-- ml_route: gpu\nSELECT 1", .none, nil),
    ]

    func testClassificationTable() {
        XCTAssertGreaterThanOrEqual(table.count, 60)
        for (sql, expectedClass, expectedKey) in table {
            let result = classify(sql)
            XCTAssertEqual(result.mlClass, expectedClass, sql)
            if expectedClass == .gpuInference || expectedClass == .cpuInference, expectedKey != nil || !result.hinted {
                XCTAssertEqual(result.modelKey, expectedKey, sql)
            }
        }
    }

    func testStreamingAndFunctionNames() {
        let stream = classify("SELECT pgml.transform_stream('{\"model\": \"m\"}'::jsonb, '{}'::jsonb, 'hi')")
        XCTAssertTrue(stream.streaming)
        XCTAssertEqual(stream.function, "transform_stream")
        XCTAssertEqual(stream.modelKey, .model("m"))
        XCTAssertEqual(classify("SELECT pgml.embed('a', 'b')").function, "embed")
    }

    func testParametersResolvedFromBind() {
        let text = Array("intfloat/e5-small-v2".utf8)[...]
        XCTAssertEqual(MLClassifier.resolve(.parameter(1, function: "embed"), parameters: [text], binary: [false]), e5)
        let task = Array("{\"task\": \"t\", \"model\": \"m1\"}".utf8)
        XCTAssertEqual(MLClassifier.resolve(.parameter(1, function: "transform"), parameters: [task[...]], binary: [false]),
                       .model("m1"))
        let binaryJSONB = ([1] + task)[...]  // version byte 1, then the text
        XCTAssertEqual(MLClassifier.resolve(.parameter(1, function: "transform"), parameters: [binaryJSONB], binary: [true]),
                       .model("m1"))
        XCTAssertEqual(MLClassifier.resolve(.parameter(2, function: "embed"), parameters: [text], binary: [false]), .unknown)
        XCTAssertEqual(MLClassifier.resolve(.parameter(1, function: "embed"), parameters: [nil], binary: [false]), .unknown)
        XCTAssertEqual(MLClassifier.resolve(.parameter(1, function: "predict"), parameters: [Array("7".utf8)[...]],
                                            binary: [false]), .model("model:7"))
    }

    func testPrefilter() {
        XCTAssertTrue(MLClassifier.mightInvolvePGML("select PGML.embed('a','b')"))
        XCTAssertTrue(MLClassifier.mightInvolvePGML("/* ml_route: gpu */ select 1"))
        XCTAssertFalse(MLClassifier.mightInvolvePGML("select abalance from pgbench_accounts where aid = 1"))
    }

    func testJSONFieldReader() {
        XCTAssertEqual(JSONField.string(named: "model", in: #"{"task": "x", "nested": {"model": "no"}, "model": "yes"}"#), "yes")
        XCTAssertEqual(JSONField.string(named: "model", in: #"{"arr": [1, {"a": "]"}], "model": "m"}"#), "m")
        XCTAssertNil(JSONField.string(named: "model", in: #"{"task": "x"}"#))
        XCTAssertNil(JSONField.string(named: "model", in: "not json"))
    }

    /// SQL-level PREPARE/EXECUTE: the prepared statement decides, the EXECUTE's constant arguments give the model.
    func testSQLLevelExecuteOfAPreparedStatement() throws {
        func classify(_ execute: String, of prepare: String) throws -> MLClassification {
            guard case .success(let executeFacts) = QueryParser.parse(execute),
                  case .success(let prepareFacts) = QueryParser.parse(prepare) else {
                XCTFail("does not parse")
                return .none
            }
            return MLClassifier.classify(execute: execute, facts: executeFacts, prepare: prepare, facts: prepareFacts)
        }
        let embed = "PREPARE e(text, text) AS SELECT pgml.embed($1, $2)"
        XCTAssertEqual(try classify("EXECUTE e('intfloat/e5-small-v2', 'hi')", of: embed).mlClass, .gpuInference)
        XCTAssertEqual(try classify("EXECUTE e('intfloat/e5-small-v2', 'hi')", of: embed).modelKey, e5)
        XCTAssertEqual(try classify("execute e ('intfloat/e5-small-v2'::text, 'hi')", of: embed).modelKey, e5)
        XCTAssertEqual(try classify("EXECUTE e(lower('X'), 'hi')", of: embed).modelKey, .unknown)
        XCTAssertEqual(try classify("EXECUTE e", of: embed).modelKey, .unknown)
        // A constant model in the prepared text needs no argument; `$2` names the second argument.
        XCTAssertEqual(try classify("EXECUTE c('x')", of: "PREPARE c AS SELECT pgml.embed('intfloat/e5-small-v2', $1)").modelKey, e5)
        XCTAssertEqual(try classify("EXECUTE p(1, 'Project A')", of: "PREPARE p AS SELECT pgml.predict($2, ARRAY[$1::real])").modelKey,
                       .model("project:Project A"))
        XCTAssertEqual(try classify("EXECUTE p(7)", of: "PREPARE p AS SELECT pgml.predict($1, ARRAY[1.0])").modelKey,
                       .model("model:7"))
        // Writes that run inference, pgml writes, hints in either text, and statements without pgml.
        XCTAssertEqual(try classify("EXECUTE w('intfloat/e5-small-v2')", of: "PREPARE w AS INSERT INTO t SELECT pgml.embed($1, 'x')").mlClass, .write)
        XCTAssertEqual(try classify("EXECUTE t", of: "PREPARE t AS SELECT * FROM pgml.train('p', 'regression', 't', 'y')").mlClass, .write)
        XCTAssertEqual(try classify("/* ml_route: gpu */ EXECUTE s", of: "PREPARE s AS SELECT 1").mlClass, .gpuInference)
        XCTAssertEqual(try classify("EXECUTE s", of: "PREPARE s AS SELECT 1 /* ml_route: cpu */").mlClass, .cpuInference)
        XCTAssertEqual(try classify("EXECUTE s", of: "PREPARE s AS SELECT 1").mlClass, .none)
        // The PREPARE itself runs no inference.
        guard case .success(let prepareFacts) = QueryParser.parse(embed) else { return XCTFail("does not parse") }
        XCTAssertEqual(MLClassifier.classify(text: embed, facts: prepareFacts).mlClass, .none)
    }
}
