/// The entry points the assembly layer uses to put pooler handlers on channels.
import NIOCore

extension PoolerRuntime {
    /// A fresh handler for an accepted client channel on `eventLoop`.
    public func makeClientHandler(on eventLoop: EventLoop) -> ChannelHandler {
        ClientConnection(runtime: self, eventLoop: eventLoop, logger: logger)
    }
}
