/// What a statement asks of PostgresML, decided from the parser's facts (SPEC §3, reference/pgml.md §3.1): GPU
/// inference, CPU inference, a pgml write, a light pgml call, or nothing; the function and the model key that
/// affinity routes by. Pure.
import QueryParser

public enum MLClass: Int, Comparable, Sendable {
    case none = 0
    /// `pgml.version()`, vector helpers, `chunk`, metadata: ordinary read routing.
    case light
    /// `predict*`, `decompose`: ordinary read routing, affinity on the project.
    case cpuInference
    /// `embed`, `transform`, `transform_stream`, `rank`, `generate`: tagged servers through the inference pool.
    case gpuInference
    /// `train*`, `tune`, `deploy`, `snapshot`, `load_dataset`, `load_all`, or a write statement that runs
    /// inference: the primary.
    case write

    public static func < (a: MLClass, b: MLClass) -> Bool { a.rawValue < b.rawValue }
}

/// The key inference is routed by: a model, a task, or a project, as pgml caches them.
public enum ModelKey: Equatable, Hashable, Sendable {
    case model(String)
    /// Read from parameter `$n` of the Bind that executes the statement; `function` says how to read it.
    case parameter(Int, function: String)
    /// An expression: inference with no known model (placed by load only).
    case unknown

    /// The key's text for hashing, logs and SHOW ML_MODELS.
    public var name: String? {
        if case .model(let name) = self { return name }
        return nil
    }
}

public struct MLClassification: Equatable, Sendable {
    public var mlClass: MLClass
    /// The pgml function that decided the class (`embed`, `train`, ...).
    public var function: String?
    public var modelKey: ModelKey?
    /// `transform_stream`: rows arrive as tokens.
    public var streaming: Bool
    /// The class came from a `/* ml_route: ... */` hint.
    public var hinted: Bool

    public static let none = MLClassification(mlClass: .none, function: nil, modelKey: nil, streaming: false, hinted: false)
}

public enum MLClassifier {
    static let gpuFunctions: Set<Substring> = ["embed", "transform", "transform_stream", "rank", "generate"]
    static let cpuFunctions: Set<Substring> = ["predict", "predict_proba", "predict_joint", "predict_batch", "decompose"]
    static let writeFunctions: Set<Substring> = [
        "train", "train_joint", "tune", "deploy", "snapshot", "load_dataset", "load_all", "dump_all",
    ]

    /// Cheap first look at a text: could it involve pgml at all (a `pgml` word or an `ml_route` hint)?
    public static func mightInvolvePGML(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            let count = bytes.count
            guard count >= 4 else { return false }
            for index in 0..<(count - 3) {
                let p = bytes[index] | 0x20, g = bytes[index + 1] | 0x20, m = bytes[index + 2] | 0x20
                if p == UInt8(ascii: "p"), g == UInt8(ascii: "g"), m == UInt8(ascii: "m"),
                   bytes[index + 3] | 0x20 == UInt8(ascii: "l") { return true }
                if p == UInt8(ascii: "m"), g == UInt8(ascii: "l"), bytes[index + 2] == UInt8(ascii: "_") { return true }
            }
            return false
        }
    }

    /// Classifies a statement from its text (for the hint) and the parser's facts. `pgmlOnSearchPath`: the
    /// `search_path` names `pgml` as the text starts, so `embed(...)` without a schema is `pgml.embed(...)`; a SET
    /// of search_path in the text counts for the statements after it.
    public static func classify(text: String, facts: QueryFacts, pgmlOnSearchPath: Bool = false) -> MLClassification {
        var result = MLClassification.none
        var decisive: FunctionCall?
        var calls = facts.pgmlCalls
        for call in facts.unqualifiedPGMLCalls
        where SearchPath.includesPGML(at: call.statement, startingWith: pgmlOnSearchPath, changes: facts.searchPathChanges) {
            calls.append(call)
        }
        for call in calls {
            let base = call.baseName
            let callClass: MLClass
            if writeFunctions.contains(base) {
                callClass = .write
            } else if gpuFunctions.contains(base) {
                callClass = .gpuInference
            } else if cpuFunctions.contains(base) {
                callClass = .cpuInference
            } else {
                callClass = .light
            }
            if callClass > result.mlClass || (callClass == result.mlClass && decisive == nil) {
                result.mlClass = callClass
                result.function = String(base)
                decisive = call
            }
            if base == "transform_stream" { result.streaming = true }
        }
        if result.mlClass == .none, facts.tables.contains(where: { $0.hasPrefix("pgml.") }) {
            result.mlClass = .light  // pgml.deployed_models, pgml.models, ...
        }
        if let decisive, result.mlClass == .gpuInference || result.mlClass == .cpuInference {
            result.modelKey = modelKey(of: decisive)
        }
        // A write statement that also runs inference can only run on the primary.
        if facts.writes, result.mlClass == .gpuInference || result.mlClass == .cpuInference {
            result.mlClass = .write
        }
        if let hint = MLHint(text: text) {
            result.hinted = true
            switch hint {
            case .gpu: result.mlClass = .gpuInference
            case .cpu: result.mlClass = .cpuInference
            case .primary: result.mlClass = .write
            }
        }
        return result
    }

    /// SQL-level `EXECUTE name(...)` of `PREPARE name AS statement`: the prepared statement's class, its `$n` model
    /// key read from the EXECUTE's argument (a constant; anything else leaves the model unknown). A hint counts in
    /// either text, the EXECUTE's first.
    public static func classify(execute: String, facts executeFacts: QueryFacts, prepare: String,
                                facts prepareFacts: QueryFacts, pgmlOnSearchPath: Bool = false) -> MLClassification {
        guard let statement = prepareFacts.preparedStatement else { return .none }
        let hintText = MLHint(text: execute) != nil ? execute : prepare
        var result = classify(text: hintText, facts: statement, pgmlOnSearchPath: pgmlOnSearchPath)
        if let key = result.modelKey, case .parameter = key {
            result.modelKey = resolve(key, arguments: executeFacts.executeArguments ?? [])
        }
        return result
    }

    /// The affinity key of an inference call (reference/pgml.md §3.1).
    static func modelKey(of call: FunctionCall) -> ModelKey {
        let base = call.baseName
        let argument: FunctionCall.Argument?
        switch base {
        case "embed", "rank": argument = call.argument(0, named: "transformer")
        case "transform", "transform_stream": argument = call.argument(0, named: "task")
        default: argument = call.argument(0, named: "project_name")
        }
        switch argument {
        case .string(let text)?: return .model(keyText(text, function: String(base)))
        case .integer(let id)?: return .model(keyText(String(id), function: String(base)))  // as the same text quoted
        case .parameter(let number)?: return .parameter(number, function: String(base))
        case .expression?, nil: return .unknown
        }
    }

    /// The key for an argument's text: a transformer name as is; a transform task's `model` (or `task:<task>`);
    /// a project for predict/generate/decompose.
    public static func keyText(_ text: String, function: String) -> String {
        switch function {
        case "embed", "rank":
            return text
        case "transform", "transform_stream":
            if let model = JSONField.string(named: "model", in: text) { return model }
            if let task = JSONField.string(named: "task", in: text) { return "task:\(task)" }
            return "task:\(text)"
        default:
            return Int64(text).map { "model:\($0)" } ?? "project:\(text)"
        }
    }

    /// A parameter's value from an SQL-level EXECUTE's arguments as a model key: constants as in the call itself.
    public static func resolve(_ key: ModelKey, arguments: [FunctionCall.Argument]) -> ModelKey {
        guard case .parameter(let number, let function) = key else { return key }
        let index = number - 1
        guard index >= 0, index < arguments.count else { return .unknown }
        switch arguments[index] {
        case .string(let text): return .model(keyText(text, function: function))
        case .integer(let id): return .model(keyText(String(id), function: function))
        case .parameter, .expression: return .unknown
        }
    }

    /// A parameter's value from Bind (text format, or binary text/jsonb) as a model key.
    public static func resolve(_ key: ModelKey, parameters: [ArraySlice<UInt8>?], binary: [Bool]) -> ModelKey {
        guard case .parameter(let number, let function) = key else { return key }
        let index = number - 1
        guard index >= 0, index < parameters.count, var bytes = parameters[index] else { return .unknown }
        if index < binary.count, binary[index], bytes.first == 1, function.hasPrefix("transform") {
            bytes = bytes.dropFirst()  // binary jsonb: a version byte, then the text
        }
        return .model(keyText(String(decoding: bytes, as: UTF8.self), function: function))
    }
}

/// `/* ml_route: gpu|cpu|primary */` in a comment overrides the classification.
enum MLHint: Equatable {
    case gpu, cpu, primary

    init?(text: String) {
        guard let range = text.range(of: "ml_route", options: .caseInsensitive) else { return nil }
        // Only inside a /* */ comment.
        let before = text[..<range.lowerBound]
        guard let open = before.range(of: "/*", options: .backwards),
              before[open.upperBound...].range(of: "*/") == nil else { return nil }
        var rest = text[range.upperBound...].drop(while: { $0 == " " })
        guard rest.first == ":" || rest.first == "=" else { return nil }
        rest = rest.dropFirst().drop(while: { $0 == " " })
        let word = rest.prefix(while: { $0.isLetter }).lowercased()
        switch word {
        case "gpu": self = .gpu
        case "cpu": self = .cpu
        case "primary": self = .primary
        default: return nil
        }
    }
}

import Foundation
