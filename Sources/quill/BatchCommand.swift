#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Quill
import QuillCommandLine

/// `quill --batch FILE`: one request per line in, one JSON object per line out, in input order.
/// The input is streamed: each line is read when a sequence slot is free, and each result is
/// written as soon as it and every line before it are done. With `--output` the results go to
/// a `ResultFile` instead, each as soon as it is done, and `--resume` skips the ids it holds.
func runBatch(_ options: GenerateOptions, file: String, sampling: SamplingParameters) throws -> ExitStatus {
    let parallel = options.parallel ?? 8
    let stderr = OutputStream.standardError
    // Opened before the model loads, so a refused FILE is reported at once.
    let results = try options.outputFile.map {
        try ResultFile(path: $0, resume: options.resume, input: file == "-" ? nil : file)
    }
    defer { results?.sync() }
    if let results, results.removedBytes > 0 {
        stderr.write("quill: \(printable(results.path)): removed a cut-off last line (\(results.removedBytes) bytes) "
                     + "left by an interrupted run; its request runs again\n")
    }
    let model = try loadModel(modelFlag: options.modelPath, tokenizerFlag: options.tokenizerPath)
    let tokenizer = try model.requireTokenizer()
    let config = model.weights.config
    // Requests differ in length: the caches hold -c positions, else the whole context.
    let capacity = try contextSize(options.ctxSize, model: model) ?? config.contextLength
    let transformer = try model.makeTransformer(threads: options.threads ?? ModelLoader.physicalCoreCount(),
                                                maxRows: max(options.batchSize, parallel), maxLogitRows: parallel,
                                                cacheCapacity: capacity)
    let shift = contextShift(options, capacity: capacity)
    if let shift, !shift.fits(capacity: capacity) {
        throw UsageError("--keep \(shift.keep) leaves nothing to drop from a KV cache of \(capacity) positions "
                         + "(give --keep below \(capacity - 1) or a larger -c)")
    }
    if options.verbose {
        stderr.write("batch: KV cache \(capacity) positions, \(kvCacheDescription(transformer)) a sequence\n")
    }
    let generator = try BatchGenerator(transformer: transformer, tokenizer: tokenizer, parallel: parallel)
    let fd = file == "-" ? 0 : try openInput(file)
    defer { if fd != 0 { close(fd) } }
    // A JSON line may escape every character of a prompt as \uXXXX (6 bytes).
    let promptLimit = promptByteLimit(contextLength: config.contextLength)
    let name = file == "-" ? "stdin" : file
    var reader = LineReader(maximumLineBytes: 6 * promptLimit + (1 << 16), read: { buffer throws(InputError) in
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { if interrupted() { return 0 } else { continue } }
            if errno == EBADF && fd == 0 { return 0 }  // a closed stdin reads as empty
            throw InputError("\(name): cannot read: \(String(cString: strerror(errno)))")
        }
    }, readable: {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 0) > 0
    }, shouldStop: interrupted)
    let defaults = GenerationRequest(prompt: [], maxNewTokens: options.maxNewTokens, sampling: sampling,
                                     ignoreEOS: options.ignoreEOS, stopStrings: options.stopStrings, contextShift: shift,
                                     logprobs: options.logprobs)
    // Lines with "messages" use the chat template (made at the first such line: a model without
    // one then fails only those lines).
    var chat: Result<ChatTokenizer, Error>?

    let stdout = OutputStream.standardOutput
    let showProgress = stderr.isTerminal && !options.noProgress
    // Requests are numbered in input order from 0 (`order`); results wait in `waiting` until
    // every earlier one is written; `nextToWrite` is the first order not yet written. `ids`
    // holds each running request's "id" (its own, else its line index among non-blank lines).
    // With --output, `idLines` maps each id met in this run's input (encoded) to its line
    // number, so a repeated id is refused rather than written twice.
    var waiting: [Int: String] = [:]
    var ids: [Int: JSON] = [:]
    var idLines: [String: Int] = [:]
    var nextToWrite = 0
    var requestCount = 0, done = 0, generated = 0, failures = 0, skipped = 0
    var readFailure: Error?
    let start = DispatchTime.now()

    /// Records a finished request: appends it to the output file, or writes to stdout every
    /// result that is now complete in input order.
    func complete(_ index: Int, _ json: JSON) {
        done += 1
        if let results {
            results.append(json.encoded + "\n")  // completion order: nothing done waits in memory
        } else {
            waiting[index] = json.encoded + "\n"
            while let line = waiting.removeValue(forKey: nextToWrite) {
                stdout.write(line)  // one write per line: stdout only ever holds whole lines
                nextToWrite += 1
            }
        }
        if showProgress {
            let elapsed = seconds(since: start)
            let rate = elapsed > 0 ? Double(generated) / elapsed : 0
            stderr.write(String(format: "\r\u{1b}[K[%d done, %d read] %.1f tokens/s", done, requestCount, rate))
        }
    }

    /// The index of the next non-blank line among all non-blank lines, or nil when --shard
    /// leaves it to another process.
    var lineIndex = 0
    func take() -> Int? {
        defer { lineIndex += 1 }
        if let shard = options.shard, lineIndex % shard.count != shard.index { return nil }
        return lineIndex
    }

    /// The order of a request with `id` from line `number` among this run's requests, or nil
    /// when --resume finds its id already in the output file. A repeated id with --output
    /// sets `readFailure` (its second result could not be told from the first).
    func admit(_ id: JSON, line number: Int) -> Int? {
        if let results {
            let key = id.encoded
            if let first = idLines.updateValue(number, forKey: key) {
                readFailure = InputError("line \(number): id \(key) is also the id of line \(first); with --output every id "
                                         + "must be unique (a line without \"id\" has its index among non-blank lines from 0)")
                return nil
            }
            if results.doneIDs.contains(key) {
                skipped += 1
                return nil
            }
        }
        requestCount += 1
        return requestCount - 1
    }

    /// The next request for the generator. Lines that fail to parse are answered at once with
    /// an error object. No more is read while many results wait for an earlier one (so a slow
    /// first request cannot make memory grow with the input).
    func next(canWait: Bool) -> BatchInput {
        while true {
            if !canWait && waiting.count >= 4 * parallel { return .notReady }
            let item: LineReader.Item
            do { item = try reader.next(canWait: canWait) } catch {
                readFailure = error
                return .end
            }
            switch item {
            case .end: return .end
            case .notReady: return .notReady
            case .tooLong(let number):
                guard let index = take() else { continue }
                guard let order = admit(.int(index), line: number) else { if readFailure != nil { return .end } else { continue } }
                failures += 1
                complete(order, errorObject(id: .int(index), "line \(number) is longer than \(groupedDigits(reader.maximumLineBytes)) bytes"))
            case .line(let bytes, let number):
                if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }  // blank lines are skipped
                guard let index = take() else { continue }
                let parsed = Result { () throws(BatchLineError) in try BatchRequestLine.parse(bytes, defaults: defaults) }
                let id: JSON
                switch parsed {
                case .success(let line): id = line.id.map { .raw($0.encoded) } ?? .int(index)
                case .failure(let error): id = error.id.map { .raw($0.encoded) } ?? .int(index)
                }
                guard let order = admit(id, line: number) else { if readFailure != nil { return .end } else { continue } }
                do {
                    let line = try parsed.get()
                    ids[order] = id
                    var request = line.request
                    if let messages = line.messages {
                        if chat == nil { chat = Result { try chatTokenizer(options, model: model, tokenizer: tokenizer) } }
                        let formatter = try chat!.get()
                        let system = messages.first?.role == .system ? [] : options.systemPrompt.map { [ChatMessage(.system, $0)] } ?? []
                        request.prompt = try formatter.encode(system + messages, addBOS: model.addBOS)
                        request.endTokens = [formatter.endOfTurnID]
                    } else {
                        request.prompt = try tokenizer.encode(line.promptText, addBOS: model.addBOS)
                    }
                    try request.validate(for: config, capacity: capacity, canShift: transformer.canShift)
                    return .request(request, tag: order)
                } catch let error as BatchLineError {
                    failures += 1
                    complete(order, errorObject(id: id, "line \(number): \(error.message)"))
                } catch {
                    failures += 1
                    complete(order, errorObject(id: id, "line \(number): \(error)"))
                }
                ids[order] = nil
            }
        }
    }

    generator.run(next: next, finished: { result in
        let id = ids.removeValue(forKey: result.tag) ?? .int(result.tag)
        if let failure = result.failure {
            failures += 1
            complete(result.tag, errorObject(id: id, failure))
        } else {
            generated += result.stats.generatedTokens
            complete(result.tag, resultJSON(id: id, text: result.text, stats: result.stats, tokenizer: tokenizer))
        }
    }, shouldStop: { interrupted() || (results.map { $0.failure != nil } ?? !stdout.isOpen) })
    if showProgress { stderr.write("\n") }
    results?.sync()
    if let results, let failure = results.failure {
        throw InputError("\(results.path): cannot write: \(failure); it holds only complete results, "
                         + "so the same command with --resume finishes the batch once there is room")
    }
    if stdout.readerGone { return .success }
    if interrupted() { return .interrupted }
    if let readFailure { throw readFailure }
    if options.verbose {
        let elapsed = seconds(since: start)
        stderr.write(String(format: "batch: %d requests, %d generated tokens in %.2f s (%.2f tokens/s), %d parallel, %d failed\n",
                            requestCount, generated, elapsed, elapsed > 0 ? Double(generated) / elapsed : 0, parallel, failures))
        if results != nil { stderr.write("batch: \(skipped) requests skipped: their ids were already in the output file\n") }
    }
    return failures > 0 ? .failure : .success
}

private func errorObject(id: JSON, _ message: String) -> JSON {
    .object([("id", id), ("error", .string(message))])
}
