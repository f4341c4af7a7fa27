/// Reads YAML (through Yams) into a `ConfigNode` tree, with YAML 1.2 core-schema scalars and `<<` merge keys.
///
/// YAML 1.1's surprises are off: `yes`/`no`/`on`/`off` are strings, `0755` is the decimal 755, `1:30` is a string.
/// A plain scalar that looks like a number or boolean is one; quote it to make it a string.

import Foundation
import Yams

enum YAMLReader {
    static func read(_ text: String) throws(ConfigError) -> ConfigNode {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text, resolver)
        } catch {
            throw ConfigError(problems: [ConfigProblem(keyPath: "", reason: "YAML syntax error: \(describe(error))")])
        }
        guard let root else { return .table([]) }
        var sink = ProblemSink()
        let node = convert(root, path: "", sink: &sink)
        if !sink.problems.isEmpty { throw ConfigError(problems: sink.problems) }
        return node
    }

    // Rules are tried in order; the first match gives the tag. Anything unmatched is a string.
    // swiftlint:disable force_try
    static let resolver: Resolver = Resolver.basic
        .appending(try! .init(.null, "^(?:~|null|Null|NULL|)$"))
        .appending(try! .init(.bool, "^(?:true|True|TRUE|false|False|FALSE)$"))
        .appending(try! .init(.int, "^(?:[-+]?[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+)$"))
        .appending(try! .init(.float, """
            ^(?:[-+]?(?:\\.[0-9]+|[0-9][0-9_]*(?:\\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?\
            |[-+]?\\.(?:inf|Inf|INF)|\\.(?:nan|NaN|NAN))$
            """))
        .appending(try! .init(.merge, "^<<$"))
    // swiftlint:enable force_try

    /// Turns Yams' multi-line message ("3:7: error: parser: <context>\n<problem>:\n<snippet>\n ^") into one line:
    /// "line 3, column 7: <problem> (<context>)".
    static func describe(_ error: Error) -> String {
        let lines = String(describing: error).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let first = lines.first else { return "\(error)" }
        let parts = first.split(separator: ":", maxSplits: 4).map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.count == 5, let line = Int(parts[0]), let column = Int(parts[1]), parts[2] == "error",
           lines.count > 1 {
            var problem = lines[1]
            if problem.hasSuffix(":") { problem.removeLast() }
            let context = parts[4].isEmpty ? "" : " (\(parts[4]))"
            return "line \(line), column \(column): \(problem)\(context)"
        }
        // Duplicate keys: "Parser: expected all keys to be unique ...\nContext:\n<snippet>\n in line 1, column 1".
        if let last = lines.last, last.hasPrefix("in line"), lines.count > 1 {
            return "\(first) (\(last))"
        }
        return first
    }

    private static func convert(_ node: Node, path: String, sink: inout ProblemSink) -> ConfigNode {
        switch node {
        case .scalar(let scalar):
            return convertScalar(scalar, tag: node.tag.description, path: path, sink: &sink)
        case .sequence(let sequence):
            return .array(sequence.enumerated().map { convert($1, path: joinPath(path, String($0)), sink: &sink) })
        case .mapping(let mapping):
            return .table(convertMapping(mapping, path: path, sink: &sink))
        case .alias:
            // Yams resolves aliases while composing; an unresolved one cannot reach here.
            return .null
        }
    }

    private static func convertMapping(
        _ mapping: Node.Mapping, path: String, sink: inout ProblemSink
    ) -> [ConfigEntry] {
        var entries: [ConfigEntry] = []
        var merged: [ConfigEntry] = []
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                sink.add(path, "mapping keys must be plain values, not lists or mappings\(line(keyNode))")
                continue
            }
            if keyNode.tag.description == Tag.Name.merge.rawValue {
                merged.append(contentsOf: mergeSources(valueNode, path: path, sink: &sink))
                continue
            }
            let key = keyScalar.string
            let childPath = joinPath(path, key)
            if entries.contains(where: { $0.key == key }) {
                sink.add(childPath, "duplicate key\(line(keyNode))")
                continue
            }
            entries.append(ConfigEntry(key: key, value: convert(valueNode, path: childPath, sink: &sink)))
        }
        // Explicit keys win over merged ones; earlier merge sources win over later ones (YAML merge semantics).
        for entry in merged where !entries.contains(where: { $0.key == entry.key }) {
            entries.append(entry)
        }
        return entries
    }

    private static func mergeSources(_ node: Node, path: String, sink: inout ProblemSink) -> [ConfigEntry] {
        let sources: [Node]
        switch node {
        case .mapping: sources = [node]
        case .sequence(let sequence): sources = Array(sequence)
        default: sources = []
        }
        var result: [ConfigEntry] = []
        for source in sources {
            guard case .mapping(let mapping) = source else {
                sink.add(joinPath(path, "<<"), "a merge key needs a mapping or a list of mappings\(line(source))")
                return []
            }
            for entry in convertMapping(mapping, path: path, sink: &sink)
            where !result.contains(where: { $0.key == entry.key }) {
                result.append(entry)
            }
        }
        if sources.isEmpty {
            sink.add(joinPath(path, "<<"), "a merge key needs a mapping or a list of mappings\(line(node))")
        }
        return result
    }

    private static func convertScalar(
        _ scalar: Node.Scalar, tag: String, path: String, sink: inout ProblemSink
    ) -> ConfigNode {
        let text = scalar.string
        switch tag {
        case Tag.Name.null.rawValue:
            return .null
        case Tag.Name.bool.rawValue:
            switch text.lowercased() {
            case "true": return .bool(true)
            case "false": return .bool(false)
            default: break
            }
        case Tag.Name.int.rawValue:
            if let value = parseInt(text) { return .integer(value) }
        case Tag.Name.float.rawValue:
            if let value = parseFloat(text) { return .float(value) }
            if let value = parseInt(text) { return .float(Double(value)) }
        default:
            return .string(text)
        }
        sink.add(path, "'\(text)' is not a valid \(tag.split(separator: ":").last ?? "value")\(line(.scalar(scalar)))")
        return .null
    }

    static func parseInt(_ text: String) -> Int? {
        var body = Substring(text.replacingOccurrences(of: "_", with: ""))
        var negative = false
        if let first = body.first, first == "+" || first == "-" {
            negative = first == "-"
            body = body.dropFirst()
        }
        var radix = 10
        if body.hasPrefix("0x") {
            radix = 16
            body = body.dropFirst(2)
        } else if body.hasPrefix("0o") {
            radix = 8
            body = body.dropFirst(2)
        }
        guard !body.isEmpty, let magnitude = Int(body, radix: radix) else { return nil }
        return negative ? -magnitude : magnitude
    }

    static func parseFloat(_ text: String) -> Double? {
        let lower = text.lowercased()
        switch lower {
        case ".inf", "+.inf": return .infinity
        case "-.inf": return -.infinity
        case ".nan": return .nan
        default: return Double(lower.replacingOccurrences(of: "_", with: ""))
        }
    }

    private static func line(_ node: Node) -> String {
        node.mark.map { " (line \($0.line))" } ?? ""
    }
}
