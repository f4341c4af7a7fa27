/// Recognises the SQL commands that change prepared statements: DEALLOCATE [PREPARE] name|ALL and DISCARD ALL.
import NIOCore

enum StatementCommand: Equatable {
    case deallocate(String)
    case deallocateAll
    case discardAll

    /// Cheap first look at a Query payload (no allocation): could it be DEALLOCATE or DISCARD?
    @inline(__always)
    static func mightMatch(_ query: ByteBuffer) -> Bool {
        var index = query.readerIndex
        let end = query.writerIndex
        while index < end, let byte = query.getInteger(at: index, as: UInt8.self),
              byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D {
            index += 1
        }
        guard let first = query.getInteger(at: index, as: UInt8.self) else { return false }
        return first | 0x20 == UInt8(ascii: "d")
    }

    /// `query` is a Query message payload (SQL text, NUL-terminated). Only a single, whole command matches.
    init?(query: ByteBuffer) {
        guard query.readableBytes < 512,
              var text = query.getString(at: query.readerIndex, length: query.readableBytes) else { return nil }
        if text.hasSuffix("\0") { text.removeLast() }
        var words = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }).map(String.init)
        if var last = words.last, last.hasSuffix(";") {
            last.removeLast()
            words[words.count - 1] = last
            if last.isEmpty { words.removeLast() }
        }
        guard let first = words.first?.lowercased() else { return nil }
        if first == "discard", words.count == 2, words[1].lowercased() == "all" {
            self = .discardAll
            return
        }
        guard first == "deallocate" else { return nil }
        var rest = Array(words.dropFirst())
        if rest.first?.lowercased() == "prepare" { rest.removeFirst() }
        guard rest.count == 1 else { return nil }
        let name = rest[0]
        if name.lowercased() == "all" {
            self = .deallocateAll
        } else if name.hasPrefix("\""), name.hasSuffix("\""), name.count >= 2 {
            self = .deallocate(String(name.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\""))
        } else {
            self = .deallocate(name.lowercased())
        }
    }
}
