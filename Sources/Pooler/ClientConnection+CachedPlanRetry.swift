/// Recovery from `cached plan must not change result type` (SQLSTATE 0A000). Server-side statements are shared by
/// a pool's clients and outlive them, so after a schema change (ALTER TABLE ... ADD COLUMN under `SELECT *`) a
/// client can meet a stale plan that it never prepared itself and that a direct connection would not have.
///
/// Whenever a Bind or Describe of a pooler-named statement fails that way, the server's copy is marked stale: it is
/// closed and prepared again before its next use on that connection. And when nothing of the batch reached the
/// client yet, the batch is retried once, invisibly: the error and its ReadyForQuery are held back, the statement is
/// re-prepared and the batch sent again. That needs a batch that
/// - starts (nothing else outstanding on the server) with the Bind or Describe of that statement, and contains only
///   Bind, Describe, Execute and Flush of it or of unnamed statements, then its Sync, and nothing after that Sync;
/// - describes what it runs (Describe of the portal or statement), so the client learns the new row shape rather
///   than decoding rows with the old one (a client without Describe gets the error, as it would from Postgres,
///   and its own retry then works because the server's copy was refreshed);
/// - ran outside a transaction block (ReadyForQuery says idle), so nothing else is lost with it.
import NIOCore
import PostgresWire

struct PlanRetryRecording {
    /// Server-side name and definition of the statement the batch starts with, and the client's name for it.
    let statement: String
    let definition: ByteBuffer
    let clientName: String
    /// The frames sent to the server from the start of the batch, as sent (renamed), Sync included.
    private(set) var frames: [ByteBuffer] = []
    private(set) var bytes = 0
    /// Tracker entries those frames created (Flush creates none).
    private(set) var entries = 0
    private(set) var describes = false
    private(set) var synced = false
    /// The ErrorResponse held back while the retry is decided.
    var heldError: ByteBuffer?
    /// Something of the batch's answer already reached the client (a Describe's ParameterDescription comes before
    /// the stale-plan error): sending the batch again would answer twice.
    var answered = false

    /// Recording stops being worth it past this size (the batch then fails as it would without the pooler).
    static let maxBytes = 64 * 1024

    init(statement: ClientStatement, named clientName: String, first frame: ByteBuffer) {
        self.statement = statement.serverName
        self.definition = statement.definition
        self.clientName = clientName
        _ = append(frame)
    }

    /// Adds a frame sent in this batch; false if the batch can no longer be retried.
    mutating func append(_ frame: ByteBuffer) -> Bool {
        guard !synced, let id = frame.getInteger(at: frame.readerIndex, as: UInt8.self) else { return false }
        switch id {
        case FrontendID.bind, FrontendID.execute:
            entries += 1
        case FrontendID.describe:
            entries += 1
            describes = true
        case FrontendID.flush:
            break
        case FrontendID.sync:
            entries += 1
            synced = true
        default:
            return false
        }
        bytes += frame.readableBytes
        guard bytes <= Self.maxBytes else { return false }
        frames.append(frame)
        return true
    }
}

extension ClientConnection {
    /// A renamed Bind or Describe was sent: start recording if it begins a batch, or add it to the recording.
    func recordForRetry(_ frame: ByteBuffer, using statement: ClientStatement, named name: String, startsBatch: Bool) {
        if var recording = planRetry {
            planRetry = nil
            guard recording.statement == statement.serverName, recording.append(frame) else { return }
            planRetry = recording
        } else if startsBatch {
            planRetry = PlanRetryRecording(statement: statement, named: name, first: frame)
        }
    }

    /// A frame passed through unchanged while a batch is being recorded (nil: it was not whole).
    func recordPassThrough(_ frame: ByteBuffer?) {
        guard var recording = planRetry else { return }
        planRetry = nil
        guard let frame, recording.append(frame) else { return }
        planRetry = recording
    }

    /// An ErrorResponse for a Bind/Describe of `statement` said its cached plan is stale: refresh the server's copy
    /// before its next use, and hold the error back if the batch can be retried. Returns whether it is held.
    func stalePlan(_ statement: String, error: ByteBuffer, on server: ServerConnection) -> Bool {
        server.statements.remove(statement)
        server.staleStatements.insert(statement)
        pool?.statementNames.reportStale(statement)  // (the other server connections' copies are as old)
        logger.debug("stale cached plan", metadata: ["statement": "\(statement)"])
        guard var recording = planRetry, recording.synced, recording.describes, recording.heldError == nil,
              !recording.answered, recording.statement == statement,
              server.tracker.pendingCount == recording.entries else {
            planRetry = nil
            return false
        }
        recording.heldError = error
        planRetry = recording
        return true
    }

    /// ReadyForQuery ended a recorded batch. Returns true if the batch was sent again (drop this ReadyForQuery);
    /// otherwise a held error is returned for the caller to send before it.
    func finishRecordedBatch(on server: ServerConnection) -> (retried: Bool, heldError: ByteBuffer?) {
        guard let recording = planRetry, recording.synced else { return (false, nil) }
        planRetry = nil
        guard let error = recording.heldError else { return (false, nil) }
        guard server.status == .idle, server.tracker.isEmpty else { return (false, error) }
        logger.debug("retrying a batch after re-preparing its stale statement",
                     metadata: ["statement": "\(recording.statement)"])
        prepareAgain(ClientStatement(serverName: recording.statement, definition: recording.definition), on: server)
        for frame in recording.frames {
            noteResent(frame, recording, on: server)
            server.send(frame)
        }
        server.flush()
        return (true, nil)
    }

    /// Tracker entry for a frame sent again.
    private func noteResent(_ frame: ByteBuffer, _ recording: PlanRetryRecording, on server: ServerConnection) {
        let statement = recording.statement
        var payload = frame.getSlice(at: frame.readerIndex + FrameHeader.size,
                                     length: frame.readableBytes - FrameHeader.size)!
        switch frame.getInteger(at: frame.readerIndex, as: UInt8.self) {
        case FrontendID.bind:
            _ = payload.readNullTerminatedString()
            let name = payload.readNullTerminatedString()
            server.tracker.append(.bind(statement: name == statement ? statement : nil))
        case FrontendID.describe:
            let kind = payload.readInteger(as: UInt8.self)
            let name = payload.readNullTerminatedString()
            if kind == UInt8(ascii: "S") {
                // (its answer is the new shape of the client's statement: the client learns it here)
                server.tracker.append(name == statement
                    ? .describeStatement(statement: statement, client: recording.clientName)
                    : .describeStatement(statement: nil))
            } else {
                server.tracker.sent(FrontendID.describe)
            }
        case let id?:
            server.tracker.sent(id)
        case nil:
            break
        }
    }

    /// Whether an ErrorResponse payload is PostgreSQL's `cached plan must not change result type` (0A000 from
    /// RevalidateCachedQuery; the routine name is not translated, the message may be).
    static func isStalePlanError(_ payload: ByteBuffer) -> Bool {
        guard let error = try? ErrorFields.decode(payload), error.sqlState == "0A000" else { return false }
        return error.fields[UInt8(ascii: "R")] == "RevalidateCachedQuery"
            || error.message == "cached plan must not change result type"
    }
}
