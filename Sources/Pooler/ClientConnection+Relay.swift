/// Client -> server: dispatching the client's messages, checking out a server when one is needed,
/// and answering locally what needs no server (a lone Sync or Flush, Terminate, errors the pooler raised).
import Config
import NIOCore
import PostgresWire

extension ClientConnection {
    /// Processes as much of `inbox` as the current state allows.
    func drive() {
        guard case .ready = phase else { return }
        while !waiting, case .ready = phase, var buffer = inbox, buffer.readableBytes > 0 {
            inbox = nil
            let progressed: Bool
            do {
                if discardUntilSync {
                    progressed = try discard(&buffer)
                } else if let server {
                    progressed = try relay(&buffer, to: server)
                } else {
                    progressed = try dispatchIdle(&buffer)
                }
            } catch {
                fatal(.protocolViolation, "invalid message from client: \(error)")
                return
            }
            if case .closed = phase { return }
            if buffer.readableBytes > 0 {
                if let pending = inbox {  // a callback queued more bytes meanwhile; keep order
                    var pending = pending
                    buffer.writeBuffer(&pending)
                }
                inbox = buffer
            }
            if !progressed { break }
        }
    }

    /// Checks a frame header from the client.
    private func check(_ header: FrameHeader) throws(WireError) {
        guard FrontendID.isValid(header.id), header.id != FrontendID.password else {
            throw WireError(.unexpectedMessage(header.id))
        }
    }

    /// With a server: forward whole runs of frames as one slice, noting each request in the server's tracker.
    private func relay(_ buffer: inout ByteBuffer, to server: ServerConnection) throws(WireError) -> Bool {
        var terminate = false
        var unsynced = server.unsynced
        let count = try scanner.scan(buffer, limit: maxMessageSize, classify: { header throws(WireError) in
            try check(header)
            switch header.id {
            case FrontendID.terminate:
                terminate = true
                return .stop
            case FrontendID.describe:
                return .inspect  // Describe 'S' and 'P' are answered differently
            case FrontendID.sync:
                unsynced = false
            case FrontendID.query, FrontendID.functionCall, FrontendID.flush,
                 FrontendID.copyData, FrontendID.copyDone, FrontendID.copyFail:
                break
            default:
                unsynced = true
            }
            server.tracker.sent(header.id)
            return .passThrough
        }, frame: { header, payload in
            unsynced = true
            let kind = payload.getInteger(at: payload.readerIndex, as: UInt8.self)
            server.tracker.sent(header.id, describesStatement: kind == UInt8(ascii: "S"))
            return true
        })
        server.unsynced = unsynced
        if count > 0 {
            server.send(buffer.readSlice(length: count)!)
        }
        if terminate {
            buffer.clear()
            closeClient()
            return false
        }
        return count > 0
    }

    /// Without a server: answer what needs none, otherwise check one out.
    private func dispatchIdle(_ buffer: inout ByteBuffer) throws(WireError) -> Bool {
        guard let header = FrameHeader.peek(buffer, at: buffer.readerIndex) else { return false }
        try header.validate(limit: maxMessageSize)
        try check(header)
        if idleTimeoutFired {
            idleTimeoutFired = false
            sendError(.idleInTransactionSessionTimeout, "idle transaction timeout")
            discardUntilSync = true
            return true
        }
        switch header.id {
        case FrontendID.terminate:
            buffer.clear()
            closeClient()
            return false
        case FrontendID.sync:
            // Nothing is pending on any server: Postgres would just say it is idle.
            buffer.moveReaderIndex(forwardBy: header.frameSize)
            sendReady()
            return true
        case FrontendID.flush, FrontendID.copyData, FrontendID.copyDone, FrontendID.copyFail:
            // Nothing to flush; copy messages outside COPY are ignored by Postgres too.
            guard buffer.readableBytes >= header.frameSize else { return false }
            buffer.moveReaderIndex(forwardBy: header.frameSize)
            return true
        default:
            // Leased at once: the next round relays the buffer. Otherwise drive() keeps it until the lease.
            return requestServer()
        }
    }

    /// Drops client messages after a pooler-made error, up to and including the next Sync or Query,
    /// which is answered with ReadyForQuery (as Postgres does after an error).
    private func discard(_ buffer: inout ByteBuffer) throws(WireError) -> Bool {
        var reachedSync = false
        var terminate = false
        let count = try scanner.scan(buffer, limit: maxMessageSize, classify: { header throws(WireError) in
            try check(header)
            switch header.id {
            case FrontendID.sync, FrontendID.query, FrontendID.functionCall:
                return .inspect
            case FrontendID.terminate:
                terminate = true
                return .stop
            default:
                return .passThrough
            }
        }, frame: { _, _ in
            reachedSync = true
            return false
        })
        buffer.moveReaderIndex(forwardBy: count)
        if reachedSync {
            discardUntilSync = false
            sendReady()
            return true
        }
        if terminate {
            buffer.clear()
            closeClient()
            return false
        }
        return count > 0
    }
}
