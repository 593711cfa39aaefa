import Foundation
import Quill
import QuillKernels
import QuillCommandLine

/// The model to use: -m, else $QUILL_MODEL, else the shipped model: `models/` under the working
/// directory, then beside the executable's build folder or install prefix
/// (`PREFIX/bin/quill` → `PREFIX/share/quill/`, which `make install` fills). A path Quill cannot
/// read but recognises (a safetensors file, a Hugging Face folder) is refused here, by content.
func resolveModelPath(_ flag: String?) throws -> String {
    if let flag { return try checkedModelPath(flag) }
    if let fromEnvironment = ProcessInfo.processInfo.environment["QUILL_MODEL"], !fromEnvironment.isEmpty {
        return try checkedModelPath(fromEnvironment)
    }
    // /proc/self/exe, not argv[0]: a `quill` found through PATH has no folder in argv[0].
    let candidates = ModelLoader.defaultModelCandidates(executablePath: "/proc/self/exe")
    if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
    let looked = candidates.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
    throw InputError("no model given: use -m FILE or set QUILL_MODEL (the default \(ModelLoader.defaultModelName) "
                     + "is in none of: \(looked.joined(separator: ", ")); 'make install' or 'make model' puts it there)")
}

/// `path` unless it is a model format Quill does not read but can name: a Hugging Face folder
/// (config.json inside) or a safetensors file (an 8-byte little-endian header length, then a
/// JSON header).
func checkedModelPath(_ path: String) throws -> String {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return path }
    if isFolder.boolValue {
        if FileManager.default.fileExists(atPath: path + "/config.json") {
            throw InputError("\(path) is a Hugging Face model folder, which Quill does not read: convert it with "
                             + "scripts/export.py (to a llama2.c or GGUF file) and pass that file to -m")
        }
        return path
    }
    // Only a regular file is looked into (opening a FIFO here would block). stat and read, not
    // FileManager's attributes, which also look up the owner's name in /etc/passwd (a millisecond).
    var info = stat()
    guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size >= 9 else { return path }
    let size = UInt64(info.st_size)
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { return path }
    defer { close(fd) }
    var head = [UInt8](repeating: 0, count: 9)
    guard head.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, 9, 0) }) == 9 else { return path }
    let headerLength = head[..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    if head[8] == UInt8(ascii: "{"), headerLength >= 2, headerLength <= size - 8 {
        throw InputError("\(path) is a safetensors file, which Quill does not read: convert its Hugging Face folder "
                         + "with scripts/export.py (to a llama2.c or GGUF file) and pass that file to -m")
    }
    return path
}

/// What the commands loaded stays alive until the process exits: exit() hands the memory back
/// at once, while freeing it piece by piece (SentencePiece's 32,000 strings for Llama 2) takes
/// milliseconds after the last token is out. Only the main thread loads models.
nonisolated(unsafe) private var keptUntilExit: [LoadedModel] = []

/// The checkpoint at -m (or the default) with its tokenizer. The model's path is named in the
/// message of a SIGBUS (the file truncated while mapped).
/// A file of at least `largeModelBytes` shows "loading …" on a terminal while it is mapped and checked.
func loadModel(modelFlag: String?, tokenizerFlag: String?, tokenizer: ModelLoader.TokenizerNeed = .required,
               showProgress: Bool = true) throws -> LoadedModel {
    let path = try resolveModelPath(modelFlag)
    setMappedModelPath(path)
    // stat, not FileManager's attributes, which also look up the owner's name (/etc/passwd).
    var info = stat()
    let size = stat(path, &info) == 0 ? Int(info.st_size) : 0
    let progress = ProgressLine(disabled: !showProgress || size < largeModelBytes)
    progress.update("loading \(printable(path)) (\(groupedDigits(size)) bytes)")
    defer { progress.finish() }
    let model: LoadedModel
    do {
        model = try ModelLoader.load(modelPath: path, tokenizerPath: tokenizerFlag, tokenizer: tokenizer)
    } catch let error as ModelLoadError where error.wantsTokenizerFile {
        throw InputError("\(error) (-z FILE gives one)")
    }
    keptUntilExit.append(model)
    return model
}

/// 32 MiB: from about this size mapping and checking the weights takes a noticeable moment.
let largeModelBytes = 32 << 20

/// Whether Ctrl-C or SIGTERM has asked to stop.
func interrupted() -> Bool { interruptRequested.load(ordering: .relaxed) }

/// `-e`: the escapes \n, \t and \\ in a prompt typed on the command line.
func processEscapes(_ text: String) -> String {
    var out = ""
    var iterator = text.makeIterator()
    while let c = iterator.next() {
        guard c == "\\" else { out.append(c); continue }
        switch iterator.next() {
        case "n": out.append("\n")
        case "t": out.append("\t")
        case "\\": out.append("\\")
        case let other?: out.append("\\"); out.append(other)
        case nil: out.append("\\")
        }
    }
    return out
}

/// The result object shared by --json and --batch. `bytesSkipped`: the bytes of a long prompt
/// never tokenized (its middle), when there were any: `tokens_dropped` then counts only the
/// tokens of the head and tail it dropped.
/// `tokenizer` gives the text of each token's log-probability entry (when the request asked for
/// them: `--logprobs`).
func resultJSON(id: JSON?, text: [UInt8], stats: GenerationStats, bytesSkipped: Int = 0, tokenizer: Tokenizer? = nil) -> JSON {
    var fields: [(String, JSON)] = []
    if let id { fields.append(("id", id)) }
    fields += [
        ("text", .string(String(decoding: text, as: UTF8.self))),
        ("token_ids", .array(stats.tokens.map { .int($0) })),
        ("tokens_prompt", .int(stats.promptTokens)),
        ("tokens_generated", .int(stats.generatedTokens)),
        ("stop_reason", .string(stats.stopReason.rawValue)),
        ("tokens_dropped", .int(stats.tokensDropped)),
        ("context_shifts", .int(stats.shifts)),
        ("ms_prompt", .number(stats.promptSeconds * 1000, decimals: 3)),
        ("ms_generate", .number(stats.generateSeconds * 1000, decimals: 3)),
        ("seed", .raw(String(stats.seed))),  // UInt64: may exceed Int.max
    ]
    if bytesSkipped > 0 { fields.append(("prompt_bytes_not_tokenized", .int(bytesSkipped))) }
    if let tokenizer, !stats.logprobs.isEmpty {
        fields.append(("logprobs", .array(zip(stats.tokens, stats.logprobs).map { id, logprobs in
            .object(logprobsFields(id: id, text: tokenizer.bytes(of: id), logprobs: logprobs, tokenizer: tokenizer))
        })))
    }
    return .object(fields)
}

/// One token's entry of `--logprobs` output (and of a `--json-stream` line): its id, its text,
/// its log-probability; with `logprobs.top` not empty, also the raw model's and the alternatives.
func logprobsFields(id: Int, text: [UInt8], logprobs: TokenLogprobs?, tokenizer: Tokenizer, withTop: Bool = true) -> [(String, JSON)] {
    // 6 decimals: a log-probability's float32 source has about 7 significant digits.
    var fields: [(String, JSON)] = [("token_id", .int(id)), ("text", .string(String(decoding: text, as: UTF8.self)))]
    guard let logprobs else { return fields }
    fields.append(("logprob", .number(logprobs.logprob, decimals: 6)))
    fields.append(("raw_logprob", .number(logprobs.rawLogprob, decimals: 6)))
    if withTop {
        fields.append(("top_logprobs", .array(logprobs.top.map { alternative in
            .object([("token_id", .int(alternative.id)),
                     ("text", .string(String(decoding: tokenizer.bytes(of: alternative.id), as: UTF8.self))),
                     ("logprob", .number(alternative.logprob, decimals: 6))])
        })))
    }
    return fields
}

/// `quill [options] [PROMPT]`: stream generated text to stdout (or one JSON object).
func runGenerate(_ options: GenerateOptions) throws -> ExitStatus {
    let sampling = options.sampling  // checked by the parser, through the parameter table
    if let name = options.chatTemplate, ChatTemplate(rawValue: name) == nil {
        throw UsageError("--chat-template '\(name)' is not one Quill knows: \(ChatTemplate.names)")
    }
    if let batchFile = options.batchFile { return try runBatch(options, file: batchFile, sampling: sampling) }
    if options.interactive { return try runInteractive(options, sampling: sampling) }
    let start = DispatchTime.now()
    let model = try loadModel(modelFlag: options.modelPath, tokenizerFlag: options.tokenizerPath)
    let tokenizer = try model.requireTokenizer()
    let config = model.weights.config
    let requestedSize = try contextSize(options.ctxSize, model: model)
    var shift = contextShift(options, capacity: requestedSize ?? config.contextLength)
    let canShift = shift != nil && model.canShift
    // With a shift, a stream of any length is read as its head and a bounded tail (memory stays
    // flat); without one, a prompt longer than the context is refused after a bounded read.
    let byteLimit = promptByteLimit(contextLength: requestedSize ?? config.contextLength)
    // The tail must give the cache's tokens: 64 bytes a token is more than any piece takes.
    let input = try readPromptHeadAndTail(options.prompt, limit: byteLimit, keepTail: canShift,
                                          tailBytes: max(1 << 12, (requestedSize ?? config.contextLength) * 64))
    var promptText = input.text
    if options.escape, case .text = options.prompt { promptText = processEscapes(promptText) }
    var promptTokens = try tokenizer.encode(promptText, addBOS: model.addBOS)
    var droppedWhileReading = 0
    if let tail = input.tail {
        // The middle was never read into memory: the head gives the sinks, the tail the rest.
        let keep = shift!.keep
        let tailTokens = try tokenizer.encode(tail, addBOS: false)
        let capacity = requestedSize ?? config.contextLength
        let tailKept = min(tailTokens.count, max(0, capacity - keep))
        droppedWhileReading = max(0, promptTokens.count - keep) + tailTokens.count - tailKept
        promptTokens = Array(promptTokens.prefix(keep)) + tailTokens.suffix(tailKept)
    }
    // The KV cache holds -c positions, else what this run can reach: the prompt and -n new
    // tokens, within the context (the whole context for -n -1).
    let capacity = requestedSize ?? (options.maxNewTokens < 0 ? config.contextLength
                                     : min(config.contextLength, promptTokens.count + options.maxNewTokens))
    shift = contextShift(options, capacity: capacity)
    let request = GenerationRequest(
        prompt: promptTokens, maxNewTokens: options.maxNewTokens, sampling: sampling,
        ignoreEOS: options.ignoreEOS, stopStrings: options.stopStrings, contextShift: shift,
        logprobs: options.jsonStream ? options.logprobs ?? 0 : options.logprobs)
    let mayFill = options.maxNewTokens < 0 || request.prompt.count + options.maxNewTokens > capacity
    if let shift, canShift, mayFill, !shift.fits(capacity: capacity) {
        throw UsageError("--keep \(shift.keep) leaves nothing to drop from a KV cache of \(capacity) positions "
                         + "(give --keep below \(capacity - 1) or a larger -c)")
    }
    try request.validate(for: config, capacity: capacity, canShift: model.canShift)
    let transformer: Transformer
    let generator: Generator
    do {
        transformer = try model.makeTransformer(threads: options.threads ?? ModelLoader.physicalCoreCount(),
                                                maxRows: min(options.batchSize, request.prompt.count, capacity),
                                                cacheCapacity: capacity)
        generator = try Generator(transformer: transformer, tokenizer: tokenizer)
    } catch let error as AllocationError {
        throw InputError("\(error); a smaller -c or -n makes the KV cache smaller")
    }
    let loadSeconds = seconds(since: start)
    if options.verbose {
        OutputStream.standardError.write(String(format: "load: %.1f ms (%@, %d threads, KV cache %d positions, %@)\n",
                                                loadSeconds * 1000, model.formatDescription, transformer.threads, capacity,
                                                kvCacheDescription(transformer)))
    }
    let promptDropped = max(0, request.prompt.count - capacity) + droppedWhileReading
    if promptDropped > 0 || input.skippedBytes > 0 {
        var line = "quill: warning: the prompt is longer than the KV cache (\(capacity) positions): dropped \(promptDropped) tokens "
            + "after its first \(shift?.keep ?? 0)"
        if input.skippedBytes > 0 { line += " and \(input.skippedBytes) bytes between head and tail that were not tokenized" }
        OutputStream.standardError.write(line + "\n")
    }

    let stdout = OutputStream.standardOutput
    var lastByte: UInt8?
    var text: [UInt8] = []
    if options.echo && !promptText.isEmpty {
        stdout.write(promptText)
        lastByte = promptText.utf8.last
    }
    var stats = try generator.generate(request, shouldStop: interrupted, onToken: { token in
        if options.jsonStream { writeStreamLine(token, options: options, tokenizer: tokenizer) }
    }) { bytes in
        if interrupted() || !stdout.isOpen { return .interrupted }
        guard !bytes.isEmpty else { return nil }
        if options.json || options.jsonStream {
            text += bytes
            return nil
        }
        guard stdout.write(bytes) else { return .interrupted }
        lastByte = bytes.last
        return nil
    }
    stats.tokensDropped += droppedWhileReading
    if stats.stopReason == .context && shift != nil && !model.canShift {
        OutputStream.standardError.write("quill: note: the KV cache is full and \(config.architecture.positions.rawValue) positions "
                                         + "cannot shift: stopped after \(stats.generatedTokens) tokens (a larger -c goes further)\n")
    }
    if options.json || options.jsonStream {
        stdout.write(resultJSON(id: nil, text: text, stats: stats, bytesSkipped: input.skippedBytes,
                                tokenizer: options.logprobs == nil ? nil : tokenizer).encoded + "\n")
    } else if lastByte != nil && lastByte != 0x0A {
        stdout.write([0x0A])
    }
    if stdout.readerGone { return .success }  // the reader has gone (e.g. `| head`): end quietly
    if options.verbose { printStatistics(stats) }
    return stats.stopReason == .interrupted && interrupted() ? .interrupted : .success
}

/// One `--json-stream` line for a generated token, written at once (stdout is unbuffered), so
/// a reader follows the tokens as they come. The summary line that ends the stream carries
/// `"logprobs"` only when `--logprobs` asked; each line has the token's log-probability always.
func writeStreamLine(_ token: GeneratedToken, options: GenerateOptions, tokenizer: Tokenizer) {
    let fields = logprobsFields(id: token.id, text: token.bytes, logprobs: token.logprobs, tokenizer: tokenizer,
                                withTop: options.logprobs != nil)
    OutputStream.standardOutput.write(JSON.object(fields).encoded + "\n")
}

/// The context shift of a run whose caches hold `capacity` positions: none with
/// `--no-context-shift`; `--keep N` as given (checked against the cache later); by default keep 4,
/// unless the cache is too small to keep 4 and drop any (under 6 positions): such a run stops
/// when full, as without a shift.
func contextShift(_ options: GenerateOptions, capacity: Int) -> ContextShift? {
    guard options.contextShift else { return nil }
    if let keep = options.keep { return ContextShift(keep: keep) }
    let shift = ContextShift()
    return shift.fits(capacity: capacity) ? shift : nil
}

/// `-c N` checked against the model: at most its context (a RoPE model's trained positions; a
/// learned table's rows). nil when not given.
func contextSize(_ requested: Int?, model: LoadedModel) throws(UsageError) -> Int? {
    guard let requested else { return nil }
    let config = model.weights.config
    guard requested <= config.contextLength else {
        let what = config.architecture.positions == .learned ? "its learned position table has" : "it was trained on"
        throw UsageError("-c \(requested) is beyond the context of \(model.path): \(what) \(config.contextLength) positions "
                         + "(a context shift keeps a longer run within -c)")
    }
    return requested
}

/// "4.0 MB (K and V of 6 layers)": the bytes of one sequence's KV cache.
func kvCacheDescription(_ transformer: Transformer) -> String {
    let bytes = KVCache.byteCount(config: transformer.config, capacity: transformer.cacheCapacity, blockRows: transformer.maxRows)
    return String(format: "KV cache %d bytes (%.1f MB)", bytes, Double(bytes) / 1e6)
}

func printStatistics(_ stats: GenerationStats) {
    func format(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
    // "K/N" when Ctrl-C stopped the prompt part-way.
    let prompt = stats.promptTokensProcessed < stats.promptTokens
        ? "\(stats.promptTokensProcessed)/\(stats.promptTokens)" : "\(stats.promptTokens)"
    let lines = [
        "prompt: \(prompt) tokens in \(format(stats.promptSeconds * 1000, 1)) ms (\(format(stats.promptTokensPerSecond)) tokens/s)",
        "generate: \(stats.generatedTokens) tokens in \(format(stats.generateSeconds * 1000, 1)) ms (\(format(stats.generateTokensPerSecond)) tokens/s)",
        "seed: \(stats.seed)",
        "stop: \(stats.stopReason.rawValue)",
    ] + (stats.shifts > 0 ? ["context shifts: \(stats.shifts)"] : [])
    OutputStream.standardError.write(lines.joined(separator: "\n") + "\n")
}
