/// The running pooler: event loops, the client listener, the janitor, and graceful shutdown.
import Config
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Metrics
import NIOPosix
#if os(Linux)
import EpollTransport
#endif
import Pooler
import Prometheus

public final class PoolerServer: @unchecked Sendable {
    public let runtime: PoolerRuntime
    /// The loops that run client and server connections (`io_engine`).
    let engine: IOEngineLoops
    var group: EventLoopGroup { engine.group }
    let keepalive: TCPKeepalive
    let threadPool: NIOThreadPool
    let logger: Logger
    private var closeListener: (() -> EventLoopFuture<Void>)?
    private var exporter: PrometheusExporter?
    private var exporterChannel: Channel?

    /// swift-metrics can be bootstrapped once per process.
    private static let metricsBootstrapped = NIOLockedValueBox(false)
    private var janitor: RepeatedTask?
    private var statsSampler: RepeatedTask?
    private let healthTask = NIOLockedValueBox<Scheduled<Void>?>(nil)
    private let stopped = NIOLockedValueBox(false)
    private var autoreloader: RepeatedTask?

    public init(config: PgCatConfig, logger: Logger) {
        let threads = Self.eventLoopThreads(configured: config.general.workerThreads)
        self.engine = IOEngineLoops(config.general.ioEngine, threads: threads, logger: logger)
        self.logger = logger
        let general = config.general
        let keepalive = TCPKeepalive(idle: general.tcpKeepalivesIdle, interval: general.tcpKeepalivesInterval,
                                     count: general.tcpKeepalivesCount, userTimeout: general.tcpUserTimeout)
        self.keepalive = keepalive
        // PBKDF2 and other blocking work never runs on an event loop.
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        self.threadPool = threadPool
        var registry: PrometheusCollectorRegistry?
        if general.enablePrometheusExporter {
            // Before the pools exist: their ML histograms are swift-metrics Timers, made when the pools are built.
            let prometheus = PrometheusCollectorRegistry()
            let bootstrapped = Self.metricsBootstrapped.withLockedValue { done in
                defer { done = true }
                return done
            }
            if !bootstrapped { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: prometheus)) }
            LatencyHistogram.startRecording()
            registry = prometheus
        }
        let connector = NIOServerConnector(keepalive: keepalive, threadPool: threadPool)
        self.runtime = PoolerRuntime(config: config, connector: connector, logger: logger)
        runtime.tlsPreparer = { general in Self.prepareTLS(general, connector: connector) }
        // The command validated the TLS files before starting; a file that changed since then leaves TLS off.
        if case .success(let tls) = Self.prepareTLS(general, connector: connector) { runtime.install(tls) }
        if let registry { self.exporter = PrometheusExporter(registry: registry, runtime: runtime) }
    }

    /// Loads the TLS files of `general`; the result goes into force with `PoolerRuntime.install`.
    static func prepareTLS(_ general: GeneralConfig, connector: NIOServerConnector) -> Result<PreparedTLS, ReloadError> {
        do {
            let built = try TLSContexts.build(general)
            return .success(PreparedTLS(client: built.client, installServerSide: {
                connector.serverTLS.withLockedValue { $0 = built.server }
            }))
        } catch let error as ConfigError {
            return .failure(ReloadError(error.problems.map(\.description).joined(separator: "; ")))
        } catch {
            return .failure(ReloadError("TLS: \(error)"))
        }
    }

    /// `worker_threads: 0` means one event loop per two cores: measured on 2 cores, a second loop costs ~10% more
    /// CPU per transaction (less batching per wake-up) while the kernel's TCP work needs the other core anyway.
    static func eventLoopThreads(configured: Int) -> Int {
        configured > 0 ? configured : max(1, System.coreCount / 2)
    }

    static let clientRecvAllocator = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536)

    /// Starts the Prometheus exporter, binds the listener and starts the janitor. Returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        let general = runtime.config.general
        let runtime = self.runtime
        let keepalive = self.keepalive
        // The exporter first: once the pooler's port accepts clients, their metrics can be scraped.
        if let exporter {
            do {
                exporterChannel = try await exporter.start(host: general.host, port: general.prometheusExporterPort,
                                                           group: engine.nioGroup, logger: logger)
            } catch {
                throw ListenError(what: "the Prometheus exporter", keys: "general.host, general.prometheus_exporter_port",
                                  host: general.host, port: general.prometheusExporterPort, underlying: error)
            }
        }
        let initializer: @Sendable (Channel) -> EventLoopFuture<Void> = { channel in
            // Each channel keeps its receive buffer between reads: start small (NIO's default is 2 KiB) so
            // that thousands of idle clients cost little; the allocator grows it for clients that send more.
            keepalive.apply(to: channel, recvAllocator: Self.clientRecvAllocator, fromListener: true).flatMapThrowing {
                try channel.pipeline.syncOperations.addHandler(runtime.makeClientHandler(on: channel.eventLoop))
            }
        }
        let boundPort: Int?
        do {
            boundPort = try await listen(general, initializer)
        } catch {
            _ = try? await exporterChannel?.close().get()  // (the process is about to exit: leave nothing bound)
            throw ListenError(what: "clients", keys: "general.host, general.port", host: general.host,
                              port: general.port, underlying: error)
        }
        let loops = group
        janitor = group.next().scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .seconds(1)) { _ in
            runtime.sweep(loops: { loops.next() })
        }
        scheduleHealthCheck(after: .zero)
        statsSampler = group.next().scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(15)) { _ in
            runtime.sampleStats()
        }
        if let interval = general.autoreload, interval > 0 {
            // Re-reads the file every `autoreload` ms; applies it only when it differs (a bad file is logged once).
            let lastError = NIOLockedValueBox<String?>(nil)
            autoreloader = group.next().scheduleRepeatedTask(initialDelay: .milliseconds(Int64(interval)),
                                                             delay: .milliseconds(Int64(interval))) { _ in
                guard let handler = runtime.reloadHandler else { return }
                switch handler() {
                case .success(let config):
                    lastError.withLockedValue { $0 = nil }
                    if config != runtime.config { _ = runtime.apply(config) }
                case .failure(let error):
                    let isNew = lastError.withLockedValue { last in
                        defer { last = error.message }
                        return last != error.message
                    }
                    if isNew { runtime.logger.error("autoreload: keeping the current config", metadata: ["error": "\(error.message)"]) }
                }
            }
        }
        let port = boundPort ?? general.port
        logger.info("pgcat listening", metadata: ["host": "\(general.host)", "port": "\(port)",
                                                  "worker_threads": "\(Self.eventLoopThreads(configured: general.workerThreads))",
                                                  "io_engine": "\(engine.name)"])
        return port
    }

    /// Health-check rounds, re-armed each time (the interval follows reloads of `healthcheck_delay`).
    private func scheduleHealthCheck(after delay: TimeAmount) {
        let loop = group.next()
        let task = loop.scheduleTask(in: delay) { [weak self] in
            guard let self, !self.stopped.withLockedValue({ $0 }) else { return }
            self.runtime.checkHealth(on: loop)
            self.scheduleHealthCheck(after: self.runtime.healthCheckInterval)
        }
        healthTask.withLockedValue { $0 = task }
    }

    /// Graceful shutdown: new clients are refused with 57P01 while open sessions finish, up to `timeout`.
    public func drain(timeout: TimeAmount) async {
        runtime.beginShutdown()
        runtime.closeIdleServers()
        let deadline = NIODeadline.now() + timeout
        while runtime.connectedClients > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        logger.info("drain finished", metadata: ["clients_left": "\(runtime.connectedClients)"])
        let parser = runtime.queryParser.cacheStats
        logger.info("query parser", metadata: ["cache_hits": "\(parser.hits)", "cache_misses": "\(parser.misses)",
                                               "quick_reads": "\(runtime.queryParser.quickReads)"])
    }

    public func stop() async {
        stopped.withLockedValue { $0 = true }
        healthTask.withLockedValue { $0?.cancel() }
        janitor?.cancel()
        statsSampler?.cancel()
        autoreloader?.cancel()
        runtime.closeIdleServers()
        try? await closeListener?().get()
        try? await exporterChannel?.close()
        await engine.shutdown()
        try? await threadPool.shutdownGracefully()
    }

    /// Binds the clients' listener; returns its port.
    private func listen(_ general: GeneralConfig,
                        _ initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>) async throws -> Int? {
        switch engine {
        case .nio(let group):
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 1024)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer(initializer)
                .bind(host: general.host, port: general.port).get()
            closeListener = { channel.close() }
            return channel.localAddress?.port
        #if os(Linux)
        case .epoll(let group, _):
            let listener = try await EpollListener.bind(
                host: general.host, port: general.port, backlog: 1024, group: group,
                socketOptions: keepalive.allOptions.map { ($0.level, $0.name, $0.value) },
                childInitializer: initializer).get()
            closeListener = { listener.close() }
            return listener.localAddress?.port
        #endif
        }
    }
}

/// A port the pooler could not listen on, named with the config keys that chose it.
public struct ListenError: Error, CustomStringConvertible {
    var what: String
    var keys: String
    var host: String
    var port: Int
    var underlying: Error

    public var description: String {
        "cannot listen on \(host):\(port) for \(what) (\(keys)): \(underlying)"
    }
}
