/// The pooler's own event loop: one thread around a level-triggered epoll set, conforming to NIO's `EventLoop` so
/// that promises, futures, scheduled tasks and channel pipelines run on it unchanged.
///
/// Why not NIOPosix's loop: in the relay-floor benchmark (benchmarks/relay-floor) a relay that only moves bytes
/// through NIOPosix costs ~15 µs of user CPU per pgbench transaction at a fixed rate, the same relay through NIO's
/// pipeline on a loop like this one ~6.4 µs (PgBouncer: 6.2 µs for the whole pooler). The difference is NIOPosix's
/// selector and socket-channel machinery, not the pipeline.
///
/// Work from other threads goes through a locked queue; the loop is woken through an eventfd only while it sleeps in
/// epoll_wait. Timers live in a heap on the loop thread and set epoll_wait's timeout (rounded up to the millisecond,
/// so a task never runs before its deadline).
#if os(Linux)
import CEpoll
import Dispatch
import Glibc
import NIOConcurrencyHelpers
import NIOCore

/// Something in a loop's epoll set: a connected socket, a listener, a connect in progress. Called on the loop.
protocol EpollSource: AnyObject {
    /// epoll reported `events` (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP) for the source's descriptor.
    func epollReady(_ events: UInt32)
    /// The loop is shutting down: close.
    func loopClosing()
}

public final class EpollEventLoop: EventLoop, @unchecked Sendable {
    public let name: String
    private let epollDescriptor: CInt
    private let wakeDescriptor: CInt
    /// The loop's thread; written once before `init` returns.
    private var thread = pthread_t()

    // Guarded by `lock`.
    private let lock = NIOLock()
    private var queued: [@Sendable () -> Void] = []
    private var sleeping = false
    private var wakePending = false
    /// Cleared when the loop stops; from then on tasks are refused.
    private var acceptsTasks = true
    private var shutdownCallbacks: [(DispatchQueue, @Sendable (Error?) -> Void)] = []

    // The loop thread's own.
    private var running: [@Sendable () -> Void] = []
    private var timers = TimerHeap()
    private var timerOrder: UInt64 = 0
    /// Registered sources by descriptor. The slot's generation travels in the epoll event with the descriptor, so
    /// an event for a descriptor closed earlier in the same batch never reaches a new source with the same number.
    private var sources: [(source: EpollSource?, generation: UInt32)] = []
    private var stopping = false
    /// `finish()` runs: registrations are refused.
    private var closing = false
    /// Scratch iovecs for a channel's writev (loop thread only, one writev at a time).
    static let maxIOVectors = 64
    let ioVectors = UnsafeMutablePointer<iovec>.allocate(capacity: EpollEventLoop.maxIOVectors)

    deinit { ioVectors.deallocate() }

    /// Starts the loop's thread.
    public init(name: String) throws {
        self.name = name
        epollDescriptor = epoll_create1(CInt(EPOLL_CLOEXEC))
        guard epollDescriptor >= 0 else { throw IOError(errnoCode: errno, reason: "epoll_create1") }
        wakeDescriptor = eventfd(0, CInt(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wakeDescriptor >= 0 else {
            let code = errno
            Glibc.close(epollDescriptor)
            throw IOError(errnoCode: code, reason: "eventfd")
        }
        // The sockets are written with MSG_NOSIGNAL; this covers any other write to a reset peer (NIOPosix does the
        // same when it creates a socket, and with this engine it may create none).
        _ = signal(SIGPIPE, SIG_IGN)
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Self.wakeToken
        guard epoll_ctl(epollDescriptor, EPOLL_CTL_ADD, wakeDescriptor, &event) == 0 else {
            let code = errno
            Glibc.close(wakeDescriptor)
            Glibc.close(epollDescriptor)
            throw IOError(errnoCode: code, reason: "epoll_ctl")
        }
        do {
            try startThread()
        } catch {
            Glibc.close(wakeDescriptor)
            Glibc.close(epollDescriptor)
            throw error
        }
    }

    /// The eventfd's token in epoll events (no source has this generation).
    private static let wakeToken = UInt64.max

    // MARK: EventLoop

    public var inEventLoop: Bool { pthread_equal(pthread_self(), thread) != 0 }

    public func execute(_ task: @escaping @Sendable () -> Void) {
        _ = enqueue(task)  // refused once stopped: dropped, as NIOPosix does
    }

    /// Queues `task`; false once the loop has stopped (every task accepted before that runs).
    private func enqueue(_ task: @escaping @Sendable () -> Void) -> Bool {
        let onLoop = inEventLoop  // the loop runs its queue before it sleeps: no wake-up needed
        return lock.withLock {
            guard acceptsTasks else { return false }
            queued.append(task)
            if !onLoop && sleeping && !wakePending {
                wakePending = true
                // Under the lock: the descriptor is closed only after `acceptsTasks` was cleared under it.
                var one: UInt64 = 1
                _ = Glibc.write(wakeDescriptor, &one, 8)
            }
            return true
        }
    }

    public func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        let promise: EventLoopPromise<T> = makePromise()
        let timer = LoopTimer(
            deadline: deadline.uptimeNanoseconds,
            fire: {  // on this loop: the value never crosses threads
                do { promise.assumeIsolatedUnsafeUnchecked().succeed(try task()) } catch { promise.fail(error) }
            },
            abandon: { promise.fail($0) })
        // Weak: a fired timer's task is not kept alive by the `Scheduled`. Until it fires, the heap (or the queued
        // insertion) holds it.
        let scheduled = Scheduled(promise: promise, cancellationTask: { [self, weak timer] in
            guard let timer else { return }
            if inEventLoop { cancel(timer) } else { execute { self.cancel(timer) } }
        })
        if inEventLoop {
            insert(timer)
        } else if !enqueue({ self.insert(timer) }) {
            promise.fail(EventLoopError.shutdown)
        }
        return scheduled
    }

    public func scheduleTask<T>(in delay: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        scheduleTask(deadline: .now() + delay, task)
    }

    public func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable (Error?) -> Void) {
        let alreadyStopped = lock.withLock { () -> Bool in
            if !acceptsTasks { return true }
            shutdownCallbacks.append((queue, callback))
            return false
        }
        if alreadyStopped {
            queue.async { callback(nil) }
            return
        }
        execute { self.stopping = true }
    }

    // MARK: registration (loop thread only)

    func register(_ descriptor: CInt, _ source: EpollSource, events: UInt32) throws {
        guard !closing else { throw EventLoopError.shutdown }
        let index = Int(descriptor)
        if index >= sources.count {
            let empty: (source: EpollSource?, generation: UInt32) = (nil, 0)
            sources.append(contentsOf: repeatElement(empty, count: index + 1 - sources.count + 64))
        }
        let generation = sources[index].generation &+ 1
        var event = Self.event(descriptor, generation: generation, events: events)
        guard epoll_ctl(epollDescriptor, EPOLL_CTL_ADD, descriptor, &event) == 0 else {
            throw IOError(errnoCode: errno, reason: "epoll_ctl(ADD)")
        }
        sources[index] = (source, generation)
    }

    func modify(_ descriptor: CInt, events: UInt32) {
        let index = Int(descriptor)
        guard index >= 0, index < sources.count, sources[index].source != nil else { return }
        var event = Self.event(descriptor, generation: sources[index].generation, events: events)
        _ = epoll_ctl(epollDescriptor, EPOLL_CTL_MOD, descriptor, &event)
    }

    /// Takes the descriptor out of the set (before it is closed or handed to another source).
    func deregister(_ descriptor: CInt) {
        let index = Int(descriptor)
        guard index >= 0, index < sources.count, sources[index].source != nil else { return }
        sources[index].source = nil
        var event = epoll_event()
        _ = epoll_ctl(epollDescriptor, EPOLL_CTL_DEL, descriptor, &event)
    }

    private static func event(_ descriptor: CInt, generation: UInt32, events: UInt32) -> epoll_event {
        var event = epoll_event()
        event.events = events
        event.data.u64 = UInt64(UInt32(bitPattern: descriptor)) | UInt64(generation) << 32
        return event
    }

    // MARK: timers

    private func insert(_ timer: LoopTimer) {
        guard !timer.cancelled else { return }  // cancelled before its insertion ran
        if stopping {
            timer.abandon(EventLoopError.shutdown)
            return
        }
        timerOrder &+= 1
        timer.order = timerOrder
        timers.insert(timer)
    }

    private func cancel(_ timer: LoopTimer) {
        timer.cancelled = true
        timers.remove(timer)
    }

    /// Fires the timers due at the current time; returns that time (0 without timers: no clock read).
    private func runDueTimers() -> UInt64 {
        guard !timers.isEmpty else { return 0 }
        let now = NIODeadline.now().uptimeNanoseconds
        while let timer = timers.popDue(now: now) { timer.fire() }
        return now
    }

    /// epoll_wait's timeout in milliseconds: -1 without timers, rounded up so that no timer fires early. `now` may
    /// be a little old (the tasks since ran): the wait is then that much longer, never shorter.
    private func waitTimeout(now: UInt64) -> CInt {
        guard let deadline = timers.firstDeadline else { return -1 }
        let now = now > 0 ? now : NIODeadline.now().uptimeNanoseconds
        guard deadline > now else { return 0 }
        let milliseconds = (deadline - now + 999_999) / 1_000_000
        return CInt(min(milliseconds, UInt64(CInt.max)))
    }

    // MARK: the loop

    /// Runs the queued tasks and what they queue, in bounded rounds so that tasks queuing tasks cannot starve I/O.
    /// Returns true when the queue was found empty; `sleeping` was then set in the same critical section, so a task
    /// queued from now on wakes the loop.
    private func runTasks() -> Bool {
        for _ in 0..<16 {
            let idle = lock.withLock { () -> Bool in
                swap(&queued, &running)
                sleeping = running.isEmpty
                return sleeping
            }
            if idle { return true }
            for task in running { task() }
            running.removeAll(keepingCapacity: true)
        }
        return false
    }

    private func run() {
        // Allocated once: an array here would be checked for uniqueness on every turn.
        let events = UnsafeMutableBufferPointer<epoll_event>.allocate(capacity: 256)
        events.initialize(repeating: epoll_event())
        defer { events.deallocate() }
        while true {
            let now = runDueTimers()
            let idle = runTasks()
            if stopping {
                finish()
                return
            }
            let timeout = idle ? waitTimeout(now: now) : 0
            let count = epoll_wait(epollDescriptor, events.baseAddress, CInt(events.count), timeout)
            for i in 0..<max(0, Int(count)) {
                let token = events[i].data.u64
                if token == Self.wakeToken {
                    var value: UInt64 = 0
                    _ = Glibc.read(wakeDescriptor, &value, 8)
                    lock.withLock { wakePending = false }
                    continue
                }
                let index = Int(UInt32(truncatingIfNeeded: token))
                guard index < sources.count, sources[index].generation == UInt32(truncatingIfNeeded: token >> 32),
                      let source = sources[index].source else { continue }
                source.epollReady(events[i].events)
            }
        }
    }

    /// Closes every source, fails the timers left, runs what that queues, and releases the descriptors.
    private func finish() {
        // From here on nothing registers (`closing`) and no timer is inserted (`stopping`), so one pass over the
        // sources and the heap is enough; the tasks they queue (a connect under way fails) run until none is left.
        closing = true
        for entry in sources { entry.source?.loopClosing() }
        for timer in timers.removeAll() { timer.abandon(EventLoopError.shutdown) }
        for _ in 0..<64 { if runTasks() { break } }
        let (callbacks, accepted) = lock.withLock {
            () -> ([(DispatchQueue, @Sendable (Error?) -> Void)], [@Sendable () -> Void]) in
            acceptsTasks = false
            defer {
                shutdownCallbacks = []
                queued = []
            }
            return (shutdownCallbacks, queued)
        }
        // Tasks accepted before the stop still run (a timer queued for insertion fails its promise); what they
        // queue now is refused.
        for task in accepted { task() }
        Glibc.close(wakeDescriptor)
        Glibc.close(epollDescriptor)
        for (queue, callback) in callbacks { queue.async { callback(nil) } }
    }

    private final class ThreadStart {
        let loop: EpollEventLoop
        let started = DispatchSemaphore(value: 0)
        init(loop: EpollEventLoop) { self.loop = loop }
    }

    private func startThread() throws {
        let start = ThreadStart(loop: self)
        var handle = pthread_t()
        let argument = Unmanaged.passRetained(start)
        let result = pthread_create(&handle, nil, { argument in
            let start = Unmanaged<ThreadStart>.fromOpaque(argument!).takeRetainedValue()
            let loop = start.loop
            loop.thread = pthread_self()
            _ = cepoll_name_thread(String(loop.name.prefix(15)))
            start.started.signal()
            loop.run()
            return nil
        }, argument.toOpaque())
        guard result == 0 else {
            argument.release()
            throw IOError(errnoCode: result, reason: "pthread_create")
        }
        pthread_detach(handle)
        start.started.wait()
    }
}

extension EpollEventLoop: CustomStringConvertible {
    public var description: String { "EpollEventLoop(\(name))" }
}
#endif
