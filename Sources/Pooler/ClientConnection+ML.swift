/// The ML router on the client side: what the messages starting a transaction ask of pgml (classified by the
/// parser and MLRouter, the model read from a constant or from the Bind's parameters), and leasing from the
/// inference pools with their queue limit, queue timeout and fallback.
import Config
import Failover
import MLRouter
import NIOCore
import PostgresWire
import QueryParser

/// An inference lease in progress or held.
struct InferenceLease {
    var model: String?
    var server: String = ""
    var started: NIODeadline = .now()
    var spilled = false
    var failed = false
    /// Fires the CancelRequest of the per-model `statement_timeout`.
    var timer: Scheduled<Void>?
    /// A CancelRequest was sent (its 57014 is reported as the model's statement timeout).
    var cancelSent = false
    /// Where the statement waits, counted (the pool's ML counters), while it waits.
    var queuedIn: ConnectionPool?

    var label: String { model ?? "(unknown model)" }
}

extension ClientConnection {
    /// The pgml classification of the statements up to the first Sync (or the Query) at the front of `buffer`,
    /// with the model key resolved from Bind parameters; nil when ML routing is off or nothing involves pgml.
    func mlClassification(for buffer: ByteBuffer) -> (MLClassification, model: String?)? {
        guard let pool, pool.mlEnabled else { return nil }
        // A new transaction: a SET search_path of an earlier one was undone with its server connection's reset
        // (`cleanup_server_connections`), and the login's settings are applied again.
        pgmlOnSearchPath = pgmlOnLoginSearchPath
        var best: MLClassification?
        var pendingParameterKey = false
        var unnamedText: String?
        var writesElsewhere = false
        var otherTexts: [String] = []
        var index = buffer.readerIndex
        // Only well-formed whole frames: the relay validates each frame before sending it; a bad one found here
        // just ends the look-ahead (the relay then refuses it with 08P01).
        scan: while let header = FrameHeader.peek(buffer, at: index), header.length >= 4,
                    header.frameSize <= maxMessageSize, buffer.writerIndex - index >= header.frameSize {
            guard var payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize) else { break }
            let original = payload
            var text: String?
            switch header.id {
            case FrontendID.query:
                text = payload.readNullTerminatedString()
                if let sql = text, StatementCommand.mightMatch(original), let command = StatementCommand(query: original),
                   case .execute(let name) = command, let prepared = sqlStatements[name] {
                    // EXECUTE: what was PREPAREd decides, with the model from the EXECUTE's arguments.
                    if let found = classifyExecute(sql, of: prepared) {
                        if best.map({ found.mlClass > $0.mlClass }) ?? true { best = found }
                    } else {
                        otherTexts.append(sql)
                    }
                    text = nil
                }
            case FrontendID.parse:
                let name = payload.readNullTerminatedString() ?? ""
                text = payload.readNullTerminatedString()
                if name.isEmpty { unnamedText = text }
            case FrontendID.bind:
                guard let bind = BindMessage(payload) else { break }
                if pendingParameterKey, var current = best, case .parameter? = current.modelKey {
                    current.modelKey = MLClassifier.resolve(current.modelKey!, parameters: bind.values, binary: bind.binary)
                    best = current
                    pendingParameterKey = false
                    break
                }
                // (the unnamed statement of this batch, or of an earlier unit: lib/pq, pgx, asyncpg's long texts)
                text = bind.statement.isEmpty ? unnamedText ?? knownText(ofStatement: "") : knownText(ofStatement: bind.statement)
                if let text, let found = classify(text), best.map({ found.mlClass > $0.mlClass }) ?? true {
                    var resolved = found
                    if let key = found.modelKey, case .parameter = key {
                        resolved.modelKey = MLClassifier.resolve(key, parameters: bind.values, binary: bind.binary)
                    }
                    best = resolved
                }
                text = nil
            case FrontendID.describe:
                // asyncpg prepares with Parse, Describe, Flush and binds later: the Parse was answered here (the
                // statement cache), so the Describe is what leases (the Bind is classified again where it goes).
                // (an unnamed statement parsed in this batch was classified with its Parse)
                guard let name = payload.readStatementName(), !name.isEmpty || unnamedText == nil else { break }
                text = knownText(ofStatement: name)
            case FrontendID.sync:
                break scan
            default:
                break
            }
            if let text {
                if let found = classify(text) {
                    if opensReadWriteTransaction(text) { writesElsewhere = true }  // BEGIN; SELECT pgml.embed(...)
                    if best.map({ found.mlClass > $0.mlClass }) ?? true {
                        best = found
                        if case .parameter? = found.modelKey { pendingParameterKey = true }
                    }
                } else {
                    otherTexts.append(text)  // whether they write matters only if the batch has inference
                }
            }
            if header.id == FrontendID.query { break scan }
            index += header.frameSize
        }
        guard var best, best.mlClass != .none else { return nil }
        if !writesElsewhere, otherTexts.contains(where: writes) { writesElsewhere = true }
        if writesElsewhere, best.mlClass == .gpuInference || best.mlClass == .cpuInference {
            best.mlClass = .write  // another statement of the batch writes (or opens a read-write transaction)
        }
        return (best, best.modelKey?.name)
    }

    /// GPU inference inside a transaction routed elsewhere runs where the transaction is (a transaction cannot move);
    /// counted, so operators see it (`pgcat_ml_misplaced_total`).
    func noteMisplacedInference(_ header: FrameHeader, in buffer: ByteBuffer, at index: Int) {
        guard var payload = buffer.getSlice(at: index + FrameHeader.size, length: header.payloadSize) else { return }
        if header.id == FrontendID.parse { _ = payload.readNullTerminatedString() }
        guard let text = payload.readNullTerminatedString(), let found = classify(text), found.mlClass == .gpuInference
        else { return }
        pool?.mlStats.misplacedOne()
    }

    /// A plain BEGIN in the text: the whole transaction belongs on the primary (SPEC §1e).
    private func opensReadWriteTransaction(_ text: String) -> Bool {
        guard case .success(let facts) = runtime.queryParser.facts(text), case .begin(let readOnly)? = facts.begins
        else { return false }
        return readOnly != true
    }

    /// A statement without pgml that must run on the primary (a write, or a BEGIN that is not READ ONLY).
    private func writes(_ text: String) -> Bool {
        switch runtime.queryParser.intent(text) {
        case .write?, nil: return true
        case .begin(let readOnly)?: return readOnly != true
        case .read?, .neutral?: return false
        }
    }

    /// Classifies `text` under the search_path as it starts, and follows the text's own changes of search_path for
    /// the texts after it (a SET that fails still counts). Without pgml on the path, a text that could put it
    /// there names `pgml`, so the cheap look skips no such change.
    private func classify(_ text: String) -> MLClassification? {
        let onPath = pgmlOnSearchPath
        // With pgml on the search_path a call needs no `pgml` in its text: every statement is parsed (cached).
        guard onPath || MLClassifier.mightInvolvePGML(text) else { return nil }
        let key = MLClassificationKey(text: text, pgmlOnSearchPath: onPath)
        let entry: MLClassificationEntry
        if let known = runtime.mlClassifications.withLockedValue({ $0[key] }) {
            entry = known
        } else {
            guard case .success(let facts) = runtime.queryParser.facts(text) else { return nil }
            entry = MLClassificationEntry(
                classification: MLClassifier.classify(text: text, facts: facts, pgmlOnSearchPath: onPath),
                pgmlOnSearchPathAfter: SearchPath.includesPGML(at: .max, startingWith: onPath,
                                                               changes: facts.searchPathChanges))
            runtime.mlClassifications.withLockedValue { cache in
                if cache.count >= 10_000 { cache.removeAll(keepingCapacity: true) }  // bounded; texts repeat in practice
                cache[key] = entry
            }
        }
        pgmlOnSearchPath = entry.pgmlOnSearchPathAfter
        return entry.classification.mlClass == .none ? nil : entry.classification
    }

    /// An SQL-level `EXECUTE` of the `PREPARE` text `prepared`, classified under the search_path in force now.
    private func classifyExecute(_ execute: String, of prepared: String) -> MLClassification? {
        guard pgmlOnSearchPath || MLClassifier.mightInvolvePGML(prepared) || MLClassifier.mightInvolvePGML(execute),
              case .success(let prepareFacts) = runtime.queryParser.facts(prepared),
              case .success(let executeFacts) = runtime.queryParser.facts(execute) else { return nil }
        let found = MLClassifier.classify(execute: execute, facts: executeFacts, prepare: prepared, facts: prepareFacts,
                                          pgmlOnSearchPath: pgmlOnSearchPath)
        return found.mlClass == .none ? nil : found
    }

    /// Leases a server for the statements at the front of `buffer` when they involve pgml; nil when they do not
    /// (ordinary routing applies). Returns the same as `requestServer`.
    func requestForML(_ buffer: ByteBuffer) -> Bool? {
        if let current = pool, current.isRetired { adoptReloadedPool() }
        // Inference pools serve transactions: not session mode, not a pinned session, not a client that chose a
        // fixed role (SET SERVER ROLE), and not a client whose own recent write must be read on the primary.
        guard pool?.mlEnabled == true, releasesAfterTransaction, routing.role == nil, !withinReadYourWritesWindow else {
            return nil
        }
        guard let (classification, model) = mlClassification(for: buffer) else { return nil }
        switch classification.mlClass {
        case .gpuInference:
            return requestInference(model: model)
        case .write:
            return requestServer(role: .primary)  // pgml writes, and writes that run inference: the primary
        case .cpuInference:
            // Ordinary read routing, with affinity on the project so its model stays loaded on few backends.
            guard let model else { return nil }
            return requestServer(role: targetRole(for: buffer), affinityKey: model)
        case .light, .none:
            return nil
        }
    }

    /// Leases from the inference pools; applies `queue_max` and `fallback`.
    func requestInference(model: String?) -> Bool {
        guard let pool, let ml = pool.ml else { return requestServer(role: .any) }
        leaseRole = nil
        let label = model ?? "(unknown model)"
        switch pool.leaseInference(for: self, model: model) {
        case .leased(let server, let spilled):
            inference = InferenceLease(model: model, spilled: spilled)
            attachForInference(server)
            return true
        case .waiting(let spilled):
            inference = InferenceLease(model: model, spilled: spilled, queuedIn: pool)
            pool.mlStats.queue(model: label, delta: 1)
            waiting = true
            stats.startWaiting(now: eventLoop.now)
            let deadline = eventLoop.now + .milliseconds(Int64(ml.queueTimeout))
            waitDeadline = deadline
            armWaitTimer(deadline)
            return false
        case .queueFull(let depth):
            pool.mlStats.rejectedOne()
            sendError(.configurationLimitExceeded, "inference queue full for model \(label): \(depth) statements "
                      + "waiting (ml_routing.queue_max \(ml.queueMax))")
            discardUntilSync = true
            return true
        case .noServer:
            let fallback = pool.modelOverride(for: model)?.fallback ?? ml.fallback
            pool.mlStats.fellBack()
            logger.warning("no healthy inference server", metadata: ["model": "\(label)", "fallback": "\(fallback.rawValue)"])
            switch fallback {
            case .replicas, .primary:
                let leased = requestServer(role: fallback == .primary ? .primary : .replica)
                inferenceFallback = true  // (after requestServer, which clears it for every new lease)
                return leased
            case .error:
                sendError(.connectionFailure, "no healthy server tagged \(ml.targetTags) for inference of model \(label) "
                          + "(ml_routing.fallback: error)")
                discardUntilSync = true
                return true
            }
        }
    }

    /// An inference connection was leased (at once or after waiting).
    func attachForInference(_ server: ServerConnection) {
        guard let pool, var lease = inference else { return }
        if let queue = lease.queuedIn {
            queue.mlStats.queue(model: lease.label, delta: -1)
            queue.inferenceWaitEnded(self)
            lease.queuedIn = nil
        }
        pool.inferenceWaitEnded(self)
        let address = "\(server.address.host):\(server.address.port)"
        lease.server = address
        lease.started = eventLoop.now
        inference = lease
        if let model = lease.model {
            let cold = server.markLoaded(model)  // the first statement for this model on this backend
            pool.mlStats.started(model: model, server: address, cold: cold, spilled: lease.spilled)
        }
        let timeout = pool.modelOverride(for: lease.model)?.statementTimeout ?? pool.ml?.statementTimeout ?? 0
        if timeout > 0 {
            inference?.timer = eventLoop.scheduleTask(in: .milliseconds(Int64(timeout))) { [weak self, weak server] in
                guard let self, let server else { return }
                self.inferenceStatementTimedOut(server, after: timeout)
            }
        }
        attachLeased(server)
    }

    /// The model's `statement_timeout` passed with the statement still running: cancel it on the server (the
    /// client gets Postgres' own 57014).
    private func inferenceStatementTimedOut(_ server: ServerConnection, after timeout: Int) {
        guard server === self.server, inference != nil, server.tracker.pendingSyncPoints > 0,
              server.backendKey != nil else { return }
        inference?.failed = true
        inference?.cancelSent = true
        logger.warning("inference statement timeout: cancelling", metadata: [
            "model": "\(inference?.model ?? "(unknown model)")", "timeout_ms": "\(timeout)"])
        server.sendCancel(on: eventLoop)  // the connection goes back to the pool once the cancel is done
    }

    /// The inference transaction ended (or its server went away).
    func finishInference() {
        guard let lease = inference else { return }
        inference = nil
        lease.timer?.cancel()
        guard let pool, let model = lease.model, !lease.server.isEmpty else { return }
        let micros = Int((eventLoop.now - lease.started).nanoseconds / 1000)
        pool.mlStats.finished(model: model, server: lease.server, micros: micros, failed: lease.failed)
    }

    /// An inference wait that got no connection ends: it no longer counts in the queue or as loading a model.
    func abandonInferenceWait() {
        guard let lease = inference else { return }
        inference = nil
        lease.timer?.cancel()
        if let queue = lease.queuedIn {
            queue.mlStats.queue(model: lease.label, delta: -1)
            queue.inferenceWaitEnded(self)
        }
        pool?.inferenceWaitEnded(self)
    }

    /// `queue_timeout` passed while waiting for an inference connection: 53400 naming the model and the queue.
    func inferenceWaitExpired() {
        guard waiting, let pool, inference != nil, pool.cancelWait(self) else { return }
        waiting = false
        stats.stopWaiting(now: eventLoop.now)
        stats.set(.idle)
        let label = inference?.label ?? "(unknown model)"
        pool.mlStats.rejectedOne()
        abandonInferenceWait()
        failRequest(.configurationLimitExceeded, "timed out after \(pool.ml?.queueTimeout ?? 0) ms waiting for an "
                    + "inference connection for model \(label) (queue depth \(pool.inferenceQueueDepth))")
    }
}

/// The parts of a Bind the ML router reads: the statement and the parameter values with their formats.
struct BindMessage {
    var statement: String
    var values: [ArraySlice<UInt8>?]
    var binary: [Bool]

    init?(_ payload: ByteBuffer) {
        var payload = payload
        guard payload.readNullTerminatedString() != nil, let statement = payload.readNullTerminatedString(),
              let formatCount = payload.readInteger(as: Int16.self), formatCount >= 0 else { return nil }
        var formats: [Int16] = []
        for _ in 0..<formatCount {
            guard let format = payload.readInteger(as: Int16.self) else { return nil }
            formats.append(format)
        }
        guard let count = payload.readInteger(as: Int16.self), count >= 0 else { return nil }
        var values: [ArraySlice<UInt8>?] = []
        for _ in 0..<count {
            guard let length = payload.readInteger(as: Int32.self) else { return nil }
            if length < 0 { values.append(nil); continue }
            guard let bytes = payload.readBytes(length: Int(length)) else { return nil }
            values.append(bytes[...])
        }
        self.statement = statement
        self.values = values
        // No formats: all text; one: all alike; else one per parameter.
        self.binary = (0..<Int(count)).map { index in
            let format = formats.isEmpty ? 0 : formats.count == 1 ? formats[0] : (index < formats.count ? formats[index] : 0)
            return format == 1
        }
    }
}

/// A statement text classified under a search_path with or without `pgml` (the same text can mean either).
struct MLClassificationKey: Hashable {
    let text: String
    let pgmlOnSearchPath: Bool
}

/// What a text asks of pgml, and whether pgml is on the search_path after it.
struct MLClassificationEntry {
    let classification: MLClassification
    let pgmlOnSearchPathAfter: Bool
}
