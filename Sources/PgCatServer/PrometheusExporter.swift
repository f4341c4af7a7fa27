/// `GET /metrics` on `general.host:prometheus_exporter_port` (PgCat's exporter): PgCat's metric names and labels
/// from the pooler's counters and latency histograms, plus swift-metrics histograms (ML), in the Prometheus text
/// format via swift-prometheus.
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Pooler
import Prometheus

final class PrometheusExporter: @unchecked Sendable {
    let registry: PrometheusCollectorRegistry
    private let runtime: PoolerRuntime
    private let lock = NIOLock()
    private var counters: [String: Prometheus.Counter] = [:]
    private var gauges: [String: Prometheus.Gauge] = [:]

    init(registry: PrometheusCollectorRegistry, runtime: PoolerRuntime) {
        self.registry = registry
        self.runtime = runtime
    }

    /// Refreshes PgCat's metrics from the runtime and renders everything in the registry.
    /// A series name as the pooler gives it (PgCat's names already end in their unit), with no help text.
    private static func descriptor(_ name: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: "")
    }

    func render() -> [UInt8] {
        let samples = runtime.metricSamples()
        return lock.withLock {
            var seenCounters: Set<String> = []
            var seenGauges: Set<String> = []
            for sample in samples {
                let key = sample.name + "{" + sample.labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
                switch sample.kind {
                case .counter:
                    let counter = counters[key] ?? registry.makeCounter(descriptor: Self.descriptor(sample.name), labels: sample.labels)
                    counters[key] = counter
                    counter.reset()  // counters are totals kept by the pooler: set, not add
                    if let exact = sample.exactValue {
                        counter.increment(by: exact)
                    } else {
                        counter.increment(by: Int64(sample.value))
                    }
                    seenCounters.insert(key)
                case .gauge:
                    let gauge = gauges[key] ?? registry.makeGauge(descriptor: Self.descriptor(sample.name), labels: sample.labels)
                    gauges[key] = gauge
                    if let exact = sample.exactValue { gauge.set(exact) } else { gauge.set(Int64(sample.value)) }
                    seenGauges.insert(key)
                }
            }
            // Series of pools or servers that are gone (reload) disappear.
            for (key, counter) in counters where !seenCounters.contains(key) {
                registry.unregisterCounter(counter)
                counters[key] = nil
            }
            for (key, gauge) in gauges where !seenGauges.contains(key) {
                registry.unregisterGauge(gauge)
                gauges[key] = nil
            }
            var buffer: [UInt8] = []
            buffer.reserveCapacity(64 * 1024)
            registry.emit(into: &buffer)
            buffer.append(contentsOf: LatencyHistogram.renderAll())
            return buffer
        }
    }

    func start(host: String, port: Int, group: EventLoopGroup, logger: Logger) async throws -> Channel {
        let exporter = self
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMapThrowing {
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(exporter: exporter))
                }
            }
            .bind(host: host, port: port).get()
        logger.info("prometheus exporter listening", metadata: ["host": "\(host)", "port": "\(port)"])
        return channel
    }
}

/// Answers `GET /metrics`; anything else is 404 (405 for other methods on /metrics).
final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let exporter: PrometheusExporter
    private var head: HTTPRequestHead?

    init(exporter: PrometheusExporter) {
        self.exporter = exporter
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
        case .body:
            break
        case .end:
            guard let request = head else { return }
            head = nil
            let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
            if path == "/metrics" && (request.method == .GET || request.method == .HEAD) {
                let body = exporter.render()
                respond(context, request, status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8",
                        body: request.method == .HEAD ? [] : body, length: body.count)
            } else {
                let status: HTTPResponseStatus = path == "/metrics" ? .methodNotAllowed : .notFound
                let body = Array("\(status.code) \(status.reasonPhrase)\n".utf8)
                respond(context, request, status: status, contentType: "text/plain", body: body, length: body.count)
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, status: HTTPResponseStatus,
                         contentType: String, body: [UInt8], length: Int) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(length))
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
                      promise: nil)
        if !body.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}
