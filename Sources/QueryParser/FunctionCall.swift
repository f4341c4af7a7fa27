/// A call of a `pgml.*` function found in a parse tree, with the arguments routing can read: string and integer
/// constants (also cast, e.g. `'{...}'::jsonb`) and `$n` parameters, positional or named (`task => ...`).
public struct FunctionCall: Equatable, Sendable {
    public enum Argument: Equatable, Sendable {
        case string(String)
        case integer(Int64)
        /// `$n`: its value arrives with Bind.
        case parameter(Int)
        /// Anything else (a column, an expression).
        case expression
    }

    /// Lower-case, schema-qualified as written: `pgml.embed`.
    public var name: String
    public var arguments: [Argument]
    /// Named arguments (`task => ...`), by lower-case name.
    public var named: [String: Argument]
    /// The index of its statement in the text (`QueryFacts.statementKinds`).
    public var statement = 0

    /// The function name without its schema.
    public var baseName: Substring {
        name.split(separator: ".").last ?? Substring(name)
    }

    /// The argument in position `index`, or the named one.
    public func argument(_ index: Int, named label: String) -> Argument? {
        if let value = named[label] { return value }
        return index < arguments.count ? arguments[index] : nil
    }
}

extension FunctionCall {
    /// Reads a `FuncCall` node's name and arguments.
    init?(funcCall node: ParseTreeJSON, name: String) {
        self.name = name
        arguments = []
        named = [:]
        for argument in node["args"]?.arrayValue ?? [] {
            if let namedArgument = argument["NamedArgExpr"] {
                let label = namedArgument["name"]?.stringValue?.lowercased() ?? ""
                named[label] = Self.value(of: namedArgument["arg"])
            } else {
                arguments.append(Self.value(of: argument))
            }
        }
    }

    static func value(of node: ParseTreeJSON?) -> Argument {
        guard let node else { return .expression }
        if let constant = node["A_Const"] {
            if let text = constant["sval"]?["sval"]?.stringValue { return .string(text) }
            if case .number(let digits)? = constant["ival"]?["ival"], let value = Int64(digits) { return .integer(value) }
            if constant["ival"] != nil { return .integer(0) }  // 0 is left out of the JSON
            return .expression
        }
        if let cast = node["TypeCast"] { return value(of: cast["arg"]) }
        // A sign the parser did not fold into the constant: `-5::int` is -(5::int), `+1` is +(1).
        if let expression = node["A_Expr"], expression["lexpr"] == nil, expression["kind"]?.stringValue == "AEXPR_OP",
           let sign = expression["name"]?.arrayValue.first?["String"]?["sval"]?.stringValue, sign == "-" || sign == "+",
           case .integer(let magnitude) = value(of: expression["rexpr"]) {
            if sign == "+" { return .integer(magnitude) }
            return magnitude == .min ? .expression : .integer(-magnitude)
        }
        if let parameter = node["ParamRef"], case .number(let digits)? = parameter["number"], let number = Int(digits) {
            return .parameter(number)
        }
        return .expression
    }
}
