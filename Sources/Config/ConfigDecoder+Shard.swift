/// Decoding of `pools.<name>.shards.<n>`: the database, servers (`[host, port, role]` or objects) and mirrors.

extension DecodeContext {
    func decodeShard(_ r: inout TableReader) -> ShardConfig {
        var shard = ShardConfig()
        r.require("database", into: &shard.database)
        switch r.node("servers") {
        case nil:
            sink.add(r.path("servers"), "is required (at least one server)")
        case .array(let items)?:
            for (i, item) in items.enumerated() {
                // Kept even when invalid so positions (and key paths in later problems) stay aligned.
                shard.servers.append(decodeServer(item, path: joinPath(r.path("servers"), String(i))))
            }
        case let other?:
            sink.add(r.path("servers"), "expected a list of servers, found \(other.kindDescription)")
        }
        switch r.node("mirrors") {
        case nil:
            break
        case .array(let items)?:
            for (i, item) in items.enumerated() {
                shard.mirrors.append(decodeMirror(item, path: joinPath(r.path("mirrors"), String(i))))
            }
        case let other?:
            sink.add(r.path("mirrors"), "expected a list of mirrors, found \(other.kindDescription)")
        }
        return shard
    }

    /// `[host, port, role]` or `{host, port, role, tags, weight}`.
    /// An entry that could not be read comes back with placeholders (its problems are already recorded).
    private func decodeServer(_ node: ConfigNode, path: String) -> ServerConfig {
        var server = ServerConfig(host: "", port: 0, role: .replica)
        guard let table = positional(node, path: path, names: ["host", "port", "role"]),
              var r = TableReader(table, path: path, context: self) else { return server }
        defer { r.finish() }
        r.require("host", into: &server.host)
        r.require("port", into: &server.port)
        r.require("role", into: &server.role)
        r.read("tags", into: &server.tags)
        r.read("weight", into: &server.weight)
        return server
    }

    /// `[host, port, mirroring_target_index]` or `{host, port, mirroring_target_index}`.
    private func decodeMirror(_ node: ConfigNode, path: String) -> MirrorConfig {
        var mirror = MirrorConfig(host: "", port: 0, mirroringTargetIndex: 0)
        let names = ["host", "port", "mirroring_target_index"]
        guard let table = positional(node, path: path, names: names),
              var r = TableReader(table, path: path, context: self) else { return mirror }
        defer { r.finish() }
        r.require("host", into: &mirror.host)
        r.require("port", into: &mirror.port)
        r.require("mirroring_target_index", into: &mirror.mirroringTargetIndex)
        return mirror
    }

    /// Turns the positional array form into the equivalent table, so both forms are decoded (and named) alike.
    private func positional(_ node: ConfigNode, path: String, names: [String]) -> ConfigNode? {
        let form = "[" + names.joined(separator: ", ") + "]"
        switch node {
        case .table:
            return node
        case .array(let items):
            guard items.count == names.count else {
                sink.add(path, "expected \(form), found a list of \(items.count) values", unusable: true)
                return nil
            }
            return .table(zip(names, items).map { ConfigEntry(key: $0, value: $1) })
        default:
            sink.add(path, "expected \(form) or a table, found \(node.kindDescription)", unusable: true)
            return nil
        }
    }
}
