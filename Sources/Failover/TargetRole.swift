/// Which servers of a shard a transaction may use, and how a query's read/write intent maps to it.
public enum TargetRole: String, Equatable, Sendable {
    case primary, replica, any
}

/// Read/write splitting as pure decisions (SPEC §1e): writes, locks, unparseable text and a plain BEGIN go to the
/// primary; reads go to replicas, or to any server when primary reads are enabled; BEGIN READ ONLY is a read.
public enum ReadWriteRouting {
    public enum Intent: Equatable, Sendable {
        case read, write, neutral
        case begin(readOnly: Bool?)
    }

    /// - Parameters:
    ///   - intent: what the query does (nil: not parsed, e.g. too long or the parser is off for it).
    ///   - primaryReads: reads may also use the primary.
    ///   - fallback: the role for statements that do not care (SET, SHOW, COMMIT) and for unparsed text when
    ///     `unparsedIsWrite` is false.
    public static func role(for intent: Intent?, primaryReads: Bool, fallback: TargetRole) -> TargetRole {
        switch intent {
        case .read?, .begin(readOnly: true)?:
            return primaryReads ? .any : .replica
        case .write?, .begin?, nil:
            return .primary
        case .neutral?:
            return fallback
        }
    }

    /// Several statements in one batch (Parse, Parse, ... Sync): the strictest wins.
    public static func combine(_ a: TargetRole, _ b: TargetRole) -> TargetRole {
        if a == .primary || b == .primary { return .primary }
        if a == .replica || b == .replica { return .replica }
        return .any
    }
}
