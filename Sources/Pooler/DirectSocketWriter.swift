/// Relay writes straight to a plaintext socket with send(2), past NIO's outbound pipeline and pending-writes queue.
///
/// Why: in the profile of a relayed transaction NIO's write path (boxing into NIOAny, the pipeline walk, the
/// pending-writes queue, flush bookkeeping) was about a fifth of the pooler's user CPU for two small writes.
///
/// Order and backpressure stay NIO's: whatever the kernel does not take at once (a full socket buffer, an error) is
/// handed to NIO, and every later write goes through NIO too until NIO reports all of it written. NIO then also
/// keeps deciding writability (the relay's backpressure) from what it holds. Without a descriptor (TLS, a test
/// channel, a NIO whose internals the lookup does not recognise) every write goes through NIO as before.
///
/// Used on the channel's event loop only. The owner must call `stop()` before the channel's descriptor is closed or
/// reused: NIO closes it inside `close0` and fires `channelInactive` right after; in between only failed write
/// promises and `errorCaught` can run, and neither writes, so `stop()` in `channelInactive` is in time.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

final class DirectSocketWriter {
    /// The socket, or -1 while every write goes through NIO.
    private var descriptor: CInt = -1
    /// The generation of the last write handed to NIO that has not completed (0: NIO holds nothing of ours).
    private var outstanding = 0
    private var generation = 0
    /// Bytes queued for the next direct send (several small writes are copied into one buffer).
    private var queued: ByteBuffer?
    private var queuedIsCopy = false
    /// Bytes were handed to NIO since the last flush.
    private var wroteThroughNIO = false

    /// Above this much queued, a write is sent at once instead of growing the copy.
    static let coalesceLimit = 64 * 1024

    /// Whether writes currently bypass NIO (no descriptor, or NIO still holds bytes of ours: not).
    var isDirect: Bool { descriptor >= 0 && outstanding == 0 }

    /// Whether `flush(context:)` has anything to do. Callers check this first: most flushes find nothing queued,
    /// and skipping them skips the retains of the context and the loop they would take.
    var needsFlush: Bool { queued != nil || wroteThroughNIO }

    /// From now on, write to `descriptor` directly, after whatever NIO still holds for this channel.
    func start(descriptor: CInt, context: ChannelHandlerContext) {
        self.descriptor = descriptor
        markNIOWrite(context: context)  // completes once NIO wrote what it held before now
        context.flush()
    }

    /// The channel is closing: never touch the descriptor again.
    func stop() {
        descriptor = -1
        queued = nil
        queuedIsCopy = false
    }

    /// Queues `buffer` when that needs nothing from the channel: writes are direct and nothing is queued yet (the
    /// common case: one reply per flush). Returns false otherwise, and the caller goes on to `write(_:context:)`.
    /// Lets callers skip retaining their channel context for most writes.
    @inline(__always)
    func queueIfFirstDirect(_ buffer: ByteBuffer) -> Bool {
        guard queued == nil, isDirect else { return false }
        queued = buffer
        return true
    }

    func write(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        guard isDirect else {
            context.write(NIOAny(buffer), promise: nil)
            wroteThroughNIO = true
            return
        }
        guard var pending = queued else {
            queued = buffer
            return
        }
        if pending.readableBytes + buffer.readableBytes > Self.coalesceLimit {
            flush(context: context)
            write(buffer, context: context)
            return
        }
        if !queuedIsCopy {
            var copy = context.channel.allocator.buffer(capacity: max(1024, pending.readableBytes + buffer.readableBytes))
            copy.writeImmutableBuffer(pending)
            pending = copy
            queuedIsCopy = true
        }
        queued = nil  // (unique again, so the append does not copy)
        pending.writeImmutableBuffer(buffer)
        queued = pending
    }

    /// Sends what is queued; what the kernel does not take goes to NIO, which is then flushed.
    func flush(context: ChannelHandlerContext) {
        if var buffer = queued {
            queued = nil
            queuedIsCopy = false
            let sent = send(buffer)
            if sent < buffer.readableBytes {
                buffer.moveReaderIndex(forwardBy: sent)
                context.write(NIOAny(buffer), promise: nil)
                wroteThroughNIO = true
            }
        }
        guard wroteThroughNIO else { return }
        wroteThroughNIO = false
        if descriptor >= 0 { markNIOWrite(context: context) }
        context.flush()
    }

    /// An empty write after NIO's queue: its promise completes when NIO wrote everything before it.
    private func markNIOWrite(context: ChannelHandlerContext) {
        generation += 1
        let mark = generation
        outstanding = mark
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.write(NIOAny(ByteBuffer()), promise: promise)
        promise.futureResult.assumeIsolatedUnsafeUnchecked().whenSuccess { [self] in  // (on the channel's loop)
            // Writes handed to NIO after this mark but not flushed yet are still ahead of any direct send (the
            // next flush puts a new mark behind them).
            if outstanding == mark && !wroteThroughNIO { outstanding = 0 }
        }
    }

    /// As many bytes as the kernel takes now, without blocking; 0 on EAGAIN or an error (NIO meets the error too
    /// when it writes the rest, and closes the channel its usual way).
    private func send(_ buffer: ByteBuffer) -> Int {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let result = systemSend(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if result > 0 {
                    offset += result
                } else if result < 0 && errno == EINTR {
                    continue
                } else {
                    break
                }
            }
            return offset
        }
    }
}

/// send(2) without SIGPIPE for a peer that went away (the error is left to NIO's write).
@inline(__always)
private func systemSend(_ descriptor: CInt, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.send(descriptor, pointer, count, CInt(MSG_NOSIGNAL))
    #else
    return Darwin.send(descriptor, pointer, count, 0)
    #endif
}
