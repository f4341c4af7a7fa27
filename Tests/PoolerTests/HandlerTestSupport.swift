/// Fixtures for handler tests on `EmbeddedChannel`s: a fake connector whose server connections live in embedded
/// channels on the same `EmbeddedEventLoop` as the clients, message builders for both directions, and a parser
/// that splits what a channel sent into frames.
import Atomics
import Config
import Logging
import NIOCore
import NIOEmbedded
import PostgresWire
import XCTest
@testable import Pooler

// MARK: - fake connector

/// Opens "server connections" as embedded channels on the test's loop. Only touched from the test thread.
final class FakeServerConnector: ServerConnector, @unchecked Sendable {
    struct Connect { var host: String; var port: Int; var channel: EmbeddedChannel; var handler: ServerConnection }
    struct Cancel: Equatable { var host: String; var port: Int; var key: BackendKeyData }

    let loop: EmbeddedEventLoop
    private(set) var connects: [Connect] = []
    private(set) var cancels: [Cancel] = []
    /// Connects fail (server unreachable) while set.
    var refuseConnections = false
    private(set) var refused = 0

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    func connect(host: String, port: Int, on eventLoop: EventLoop, timeout: TimeAmount,
                 handler: ServerConnection) -> EventLoopFuture<Void> {
        if refuseConnections {
            refused += 1
            return eventLoop.makeFailedFuture(ChannelError.connectTimeout(timeout))
        }
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        connects.append(Connect(host: host, port: port, channel: channel, handler: handler))
        // Activation starts the server login (ServerConnection sends its StartupMessage on channelActive).
        channel.connect(to: try! SocketAddress(ipAddress: "127.0.0.1", port: port), promise: nil)
        return eventLoop.makeSucceededFuture(())
    }

    /// Drops the record of connections made (a ServerConnection holds this connector: a reference cycle that
    /// long fuzz runs must break).
    func forgetConnections() {
        connects.removeAll()
    }

    func runBlocking(on eventLoop: EventLoop, _ work: @escaping @Sendable () -> Void) -> EventLoopFuture<Void> {
        work()
        return eventLoop.makeSucceededFuture(())
    }

    func sendCancel(host: String, port: Int, key: BackendKeyData, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        cancels.append(Cancel(host: host, port: port, key: key))
        return eventLoop.makeSucceededVoidFuture()
    }
}

// MARK: - wire messages

/// One regular protocol message as it crossed a channel.
struct WireMessage: Equatable, CustomStringConvertible {
    var id: UInt8
    var payload: ByteBuffer

    var description: String {
        "\(Character(Unicode.Scalar(id)))(\(payload.readableBytes) bytes)"
    }

    var idCharacter: Character { Character(Unicode.Scalar(id)) }

    /// Fields of an ErrorResponse or NoticeResponse, by field code.
    var errorFields: [Character: String] {
        var payload = payload
        var fields: [Character: String] = [:]
        while let code = payload.readInteger(as: UInt8.self), code != 0 {
            guard let value = payload.readNullTerminatedString() else { break }
            fields[Character(Unicode.Scalar(code))] = value
        }
        return fields
    }

    /// The status byte of a ReadyForQuery.
    var readyStatus: Character? {
        guard id == BackendID.readyForQuery, let byte = payload.getInteger(at: payload.readerIndex, as: UInt8.self)
        else { return nil }
        return Character(Unicode.Scalar(byte))
    }

    /// Name and value of a ParameterStatus.
    var parameterStatus: (name: String, value: String)? {
        guard id == BackendID.parameterStatus else { return nil }
        var payload = payload
        guard let name = payload.readNullTerminatedString(), let value = payload.readNullTerminatedString() else {
            return nil
        }
        return (name, value)
    }

    /// The SQL text of a Query.
    var queryText: String? {
        guard id == FrontendID.query else { return nil }
        var payload = payload
        return payload.readNullTerminatedString()
    }
}

/// Splits `buffer` into regular messages; fails the test on a trailing partial message.
func wireMessages(_ buffer: ByteBuffer, file: StaticString = #filePath, line: UInt = #line) -> [WireMessage] {
    var buffer = buffer
    var messages: [WireMessage] = []
    while buffer.readableBytes > 0 {
        guard let (id, length) = buffer.readMultipleIntegers(as: (UInt8, Int32).self), length >= 4,
              let payload = buffer.readSlice(length: Int(length) - 4) else {
            XCTFail("trailing partial message in \(buffer.readableBytes) bytes", file: file, line: line)
            break
        }
        messages.append(WireMessage(id: id, payload: payload))
    }
    return messages
}

extension EmbeddedChannel {
    /// Everything flushed to this channel's outbound side since the last call, as one buffer.
    func drainOutbound() -> ByteBuffer {
        var all = ByteBuffer()
        while let next = try? readOutbound(as: ByteBuffer.self) {
            var next = next
            all.writeBuffer(&next)
        }
        return all
    }

    /// Everything flushed since the last call, split into messages.
    func drainMessages(file: StaticString = #filePath, line: UInt = #line) -> [WireMessage] {
        wireMessages(drainOutbound(), file: file, line: line)
    }
}

func ids(_ messages: [WireMessage]) -> String {
    String(messages.map(\.idCharacter))
}

// MARK: - message builders

/// Messages a client sends.
enum Frontend {
    static func startup(_ parameters: [(String, String)]) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.startupMessage(parameters: parameters, into: &buffer)
        return buffer
    }

    static func sslRequest() -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.sslRequest(into: &buffer)
        return buffer
    }

    static func gssEncRequest() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(Int32(8), ProtocolCode.gssEncRequest)
        return buffer
    }

    static func cancelRequest(_ key: BackendKeyData) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.cancelRequest(key, into: &buffer)
        return buffer
    }

    static func query(_ sql: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.query(sql, into: &buffer)
        return buffer
    }

    static func parse(statement: String = "", _ sql: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.parse, into: &buffer) {
            $0.writeNullTerminatedString(statement)
            $0.writeNullTerminatedString(sql)
            $0.writeInteger(Int16(0))
        }
        return buffer
    }

    static func bind(portal: String = "", statement: String = "") -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.bind, into: &buffer) {
            $0.writeNullTerminatedString(portal)
            $0.writeNullTerminatedString(statement)
            $0.writeMultipleIntegers(Int16(0), Int16(0), Int16(0))  // formats, parameters, result formats
        }
        return buffer
    }

    static func closeStatement(_ name: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.close, into: &buffer) {
            $0.writeInteger(UInt8(ascii: "S"))
            $0.writeNullTerminatedString(name)
        }
        return buffer
    }

    static func describeStatement(_ name: String = "") -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.describe, into: &buffer) {
            $0.writeInteger(UInt8(ascii: "S"))
            $0.writeNullTerminatedString(name)
        }
        return buffer
    }

    static func execute(portal: String = "", maxRows: Int32 = 0) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.execute, into: &buffer) {
            $0.writeNullTerminatedString(portal)
            $0.writeInteger(maxRows)
        }
        return buffer
    }

    static func copyData(_ text: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(FrontendID.copyData, into: &buffer) { $0.writeString(text) }
        return buffer
    }

    static func copyDone() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(FrontendID.copyDone, Int32(4))
        return buffer
    }

    static func flush() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(FrontendID.flush, Int32(4))
        return buffer
    }

    static func sync() -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.sync(into: &buffer)
        return buffer
    }

    static func terminate() -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.terminate(into: &buffer)
        return buffer
    }
}

/// Messages a server sends.
enum Backend {
    static func authenticationOK() -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.authenticationOK(into: &buffer)
        return buffer
    }

    static func parameterStatus(_ name: String, _ value: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.parameterStatus(name, value, into: &buffer)
        return buffer
    }

    static func backendKeyData(_ key: BackendKeyData) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.backendKeyData(key, into: &buffer)
        return buffer
    }

    static func ready(_ status: TransactionStatus = .idle) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.readyForQuery(status, into: &buffer)
        return buffer
    }

    static func commandComplete(_ tag: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.commandComplete(tag, into: &buffer)
        return buffer
    }

    static func error(_ state: SQLState, _ message: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.errorResponse(severity: .error, state: state, message: message, into: &buffer)
        return buffer
    }

    /// RowDescription with text columns of type `text` (oid 25).
    static func rowDescription(_ columns: [String]) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(BackendID.rowDescription, into: &buffer) {
            $0.writeInteger(Int16(columns.count))
            for column in columns {
                $0.writeNullTerminatedString(column)
                $0.writeMultipleIntegers(Int32(0), Int16(0), Int32(25), Int16(-1), Int32(-1), Int16(0))
            }
        }
        return buffer
    }

    static func dataRow(_ values: [String?]) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.dataRow(values, into: &buffer)
        return buffer
    }

    static func parameterDescription(_ types: [Int32] = []) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(BackendID.parameterDescription, into: &buffer) {
            $0.writeInteger(Int16(types.count))
            for type in types { $0.writeInteger(type) }
        }
        return buffer
    }

    /// CopyInResponse (text format) for `columns` columns.
    static func copyInResponse(columns: Int16 = 1) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(BackendID.copyInResponse, into: &buffer) {
            $0.writeInteger(UInt8(0))
            $0.writeInteger(columns)
            for _ in 0..<columns { $0.writeInteger(Int16(0)) }
        }
        return buffer
    }

    /// CopyOutResponse (text format) for `columns` columns.
    static func copyOutResponse(columns: Int16 = 1) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(BackendID.copyOutResponse, into: &buffer) {
            $0.writeInteger(UInt8(0))
            $0.writeInteger(columns)
            for _ in 0..<columns { $0.writeInteger(Int16(0)) }
        }
        return buffer
    }

    static func copyData(_ text: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.frame(BackendID.copyData, into: &buffer) { $0.writeString(text) }
        return buffer
    }

    static func fatal(_ state: SQLState, _ message: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        MessageEncoder.errorResponse(severity: .fatal, state: state, message: message, into: &buffer)
        return buffer
    }

    /// A message with an empty payload (ParseComplete, BindComplete, NoData, ...).
    static func empty(_ id: UInt8) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeMultipleIntegers(id, Int32(4))
        return buffer
    }
}

/// Concatenates messages into one buffer (one network read or write).
func concat(_ buffers: ByteBuffer...) -> ByteBuffer {
    var all = ByteBuffer()
    for var buffer in buffers { all.writeBuffer(&buffer) }
    return all
}

// MARK: - the harness

/// One runtime with one pool (`app`/`alice`, trust, on server `pg.test:5432` database `appdb`), its clients and
/// fake servers, all on one `EmbeddedEventLoop`.
final class PoolerHarness {
    static let database = "app"
    static let user = "alice"
    static let serverDatabase = "appdb"
    static let serverParameters: [(String, String)] = [
        ("application_name", "pgcat"), ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"), ("server_version", "15.4"), ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
    ]

    let loop = EmbeddedEventLoop()
    let connector: FakeServerConnector
    let runtime: PoolerRuntime

    struct Options {
        var poolSize = 1
        var connectTimeout = 1000
        var idleClientInTransactionTimeout = 0
        var queryTimeout = 0
        var maxMessageSize = 64 * 1024 * 1024
        var poolMode: PoolMode = .transaction
        var maxClientConn = 0
        var statementCacheSize = 500
        var idleTimeout = 600_000
        var healthcheckDelay = 30_000
        var healthcheckTimeout = 1_000
    }

    init(_ options: Options = Options()) {
        connector = FakeServerConnector(loop: loop)
        runtime = PoolerRuntime(config: Self.config(options), connector: connector,
                                logger: Logger(label: "handler-tests", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    static func config(_ options: Options) -> PgCatConfig {
        var general = GeneralConfig()
        general.connectTimeout = options.connectTimeout
        general.idleClientInTransactionTimeout = options.idleClientInTransactionTimeout
        general.queryTimeout = options.queryTimeout
        general.maxMessageSize = options.maxMessageSize
        general.maxClientConn = options.maxClientConn
        general.idleTimeout = options.idleTimeout
        general.healthcheckDelay = options.healthcheckDelay
        general.healthcheckTimeout = options.healthcheckTimeout
        general.adminUsername = "admin"
        general.adminAuthType = .trust
        var user = UserConfig()
        user.username = Self.user
        user.authType = .trust
        user.poolSize = options.poolSize
        var shard = ShardConfig()
        shard.database = Self.serverDatabase
        shard.servers = [ServerConfig(host: "pg.test", port: 5432, role: .primary)]
        var pool = PoolConfig()
        pool.poolMode = options.poolMode
        pool.preparedStatementsCacheSize = options.statementCacheSize
        pool.users = [user]
        pool.shards = [shard]
        return PgCatConfig(general: general, pools: [NamedPool(name: Self.database, config: pool)])
    }

    var pool: ConnectionPool { runtime.pool(database: Self.database, user: Self.user)! }

    /// Fake server channels opened so far, in order.
    var serverChannels: [EmbeddedChannel] { connector.connects.map(\.channel) }

    /// A connected client channel with a fresh client handler.
    func makeClient() -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: runtime.makeClientHandler(on: loop), loop: loop)
        channel.connect(to: try! SocketAddress(ipAddress: "127.0.0.1", port: 40000), promise: nil)
        loop.run()
        return channel
    }

    /// Sends `bytes` to `channel` in two reads split at a random byte: a message may arrive in two parts, as over
    /// TCP (the relay fuzzers' servers answer this way).
    func sendSplitAtAnyByte<R: RandomNumberGenerator>(_ bytes: ByteBuffer, to channel: EmbeddedChannel,
                                                      using rng: inout R) {
        let split = Int.random(in: 0...bytes.readableBytes, using: &rng)
        for part in [bytes.getSlice(at: bytes.readerIndex, length: split)!,
                     bytes.getSlice(at: bytes.readerIndex + split, length: bytes.readableBytes - split)!]
        where part.readableBytes > 0 {
            send(part, to: channel)
        }
    }

    /// Writes `buffers` to the pooler as one read from the client (or server) side and runs pending tasks.
    func send(_ buffers: ByteBuffer..., to channel: EmbeddedChannel, file: StaticString = #filePath,
              line: UInt = #line) {
        var all = ByteBuffer()
        for var buffer in buffers { all.writeBuffer(&buffer) }
        XCTAssertNoThrow(try channel.writeInbound(all), file: file, line: line)
        loop.run()
    }

    /// Sends a StartupMessage for `app`/`alice` (plus `extra` parameters).
    func sendStartup(_ client: EmbeddedChannel, database: String = PoolerHarness.database,
                     extra: [(String, String)] = []) {
        send(Frontend.startup([("user", Self.user), ("database", database)] + extra), to: client)
    }

    /// Plays a server's side of login on `server`: checks the StartupMessage it got, then AuthenticationOk,
    /// ParameterStatus, BackendKeyData and ReadyForQuery(I).
    func playServerStartup(_ server: EmbeddedChannel, key: BackendKeyData = BackendKeyData(processID: 4242, secretKey: 99),
                           file: StaticString = #filePath, line: UInt = #line) {
        var startup = server.drainOutbound()
        let packet = try? StartupPacket.decode(from: &startup)
        guard case .startup(let parameters)? = packet else {
            XCTFail("the server did not get a StartupMessage: \(String(describing: packet))", file: file, line: line)
            return
        }
        XCTAssertTrue(parameters.contains { $0 == ("user", Self.user) }, file: file, line: line)
        XCTAssertTrue(parameters.contains { $0 == ("database", Self.serverDatabase) }, file: file, line: line)
        var reply = Backend.authenticationOK()
        for (name, value) in Self.serverParameters {
            var status = Backend.parameterStatus(name, value)
            reply.writeBuffer(&status)
        }
        var keyData = Backend.backendKeyData(key)
        var ready = Backend.ready(.idle)
        reply.writeBuffer(&keyData)
        reply.writeBuffer(&ready)
        send(reply, to: server, file: file, line: line)
    }

    /// First login on this runtime: the pool borrows a new server connection to learn its parameters.
    /// Returns the client (its welcome drained) and the fake server channel (its outbound drained).
    func loginFirstClient(extra: [(String, String)] = [], file: StaticString = #filePath,
                          line: UInt = #line) -> (client: EmbeddedChannel, server: EmbeddedChannel) {
        let client = makeClient()
        sendStartup(client, extra: extra)
        XCTAssertEqual(connector.connects.count, 1, "login opens one server connection", file: file, line: line)
        let server = serverChannels[0]
        playServerStartup(server, file: file, line: line)
        let welcome = client.drainMessages(file: file, line: line)
        XCTAssertEqual(welcome.last?.readyStatus, "I", "welcome ends with ReadyForQuery(I)", file: file, line: line)
        XCTAssertTrue(server.drainOutbound().readableBytes == 0, file: file, line: line)
        return (client, server)
    }

    /// A later login: the pool's parameters are known, so no server is needed. Returns the client, welcome drained.
    func loginClient(extra: [(String, String)] = [], file: StaticString = #filePath,
                     line: UInt = #line) -> EmbeddedChannel {
        let client = makeClient()
        sendStartup(client, extra: extra)
        let welcome = client.drainMessages(file: file, line: line)
        XCTAssertEqual(welcome.last?.readyStatus, "I", "welcome ends with ReadyForQuery(I)", file: file, line: line)
        return client
    }

    /// The client handler on `channel`.
    func handler(of channel: EmbeddedChannel) -> ClientConnection? {
        try? channel.pipeline.syncOperations.handler(type: ClientConnection.self)
    }
}

/// Seeded randomness for the fuzz tests: the pooler's own SplitMix64 (`PoolRandom`) started from a fixed state, so
/// a failing seed reproduces.
extension PoolRandom {
    init(seed: UInt64) { self.init(state: ManagedAtomic(seed)) }
}
