import Foundation
import Quill
import QuillKernels
import QuillCommandLine

/// The model to use: -m, else $QUILL_MODEL, else the model shipped in models/.
func resolveModelPath(_ flag: String?) throws -> String {
    if let flag { return flag }
    if let fromEnvironment = ProcessInfo.processInfo.environment["QUILL_MODEL"], !fromEnvironment.isEmpty {
        return fromEnvironment
    }
    // /proc/self/exe, not argv[0]: a `quill` found through PATH has no folder in argv[0].
    let candidates = ModelLoader.defaultModelCandidates(executablePath: "/proc/self/exe")
    if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
    throw InputError("no model given: use -m FILE or set QUILL_MODEL (the default models/\(ModelLoader.defaultModelName) was not found; run 'make model')")
}

/// Turns typed sampling flags into validated library parameters.
func samplingParameters(_ options: SamplingOptions) throws(UsageError) -> SamplingParameters {
    var parameters = SamplingParameters()
    if let v = options.temperature { parameters.temperature = v }
    if let v = options.topK { parameters.topK = v }
    if let v = options.topP { parameters.topP = v }
    if let v = options.minP { parameters.minP = v }
    if let v = options.repeatPenalty { parameters.repeatPenalty = v }
    if let v = options.repeatLastN { parameters.repeatLastN = v }
    parameters.seed = options.seed
    do { try parameters.validate() } catch { throw UsageError(error.description) }
    return parameters
}

/// The checkpoint at -m (or the default) with its tokenizer. The model's path is named in the
/// message of a SIGBUS (the file truncated while mapped).
func loadModel(modelFlag: String?, tokenizerFlag: String?, tokenizer: ModelLoader.TokenizerNeed = .required) throws -> LoadedModel {
    let path = try resolveModelPath(modelFlag)
    setMappedModelPath(path)
    return try ModelLoader.load(modelPath: path, tokenizerPath: tokenizerFlag, tokenizer: tokenizer)
}

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

/// The result object shared by --json and --batch.
func resultJSON(id: JSON?, text: [UInt8], stats: GenerationStats) -> JSON {
    var fields: [(String, JSON)] = []
    if let id { fields.append(("id", id)) }
    fields += [
        ("text", .string(String(decoding: text, as: UTF8.self))),
        ("token_ids", .array(stats.tokens.map { .int($0) })),
        ("tokens_prompt", .int(stats.promptTokens)),
        ("tokens_generated", .int(stats.generatedTokens)),
        ("stop_reason", .string(stats.stopReason.rawValue)),
        ("ms_prompt", .number(stats.promptSeconds * 1000, decimals: 3)),
        ("ms_generate", .number(stats.generateSeconds * 1000, decimals: 3)),
        ("seed", .raw(String(stats.seed))),  // UInt64: may exceed Int.max
    ]
    return .object(fields)
}

/// `quill [options] [PROMPT]`: stream generated text to stdout (or one JSON object).
func runGenerate(_ options: GenerateOptions) throws -> ExitStatus {
    let sampling = try samplingParameters(options.sampling)
    if let batchFile = options.batchFile { return try runBatch(options, file: batchFile, sampling: sampling) }
    let start = DispatchTime.now()
    let model = try loadModel(modelFlag: options.modelPath, tokenizerFlag: options.tokenizerPath)
    let tokenizer = try model.requireTokenizer()
    let config = model.weights.config
    var promptText = try readPrompt(options.prompt, limit: promptByteLimit(contextLength: config.contextLength))
    if options.escape, case .text = options.prompt { promptText = processEscapes(promptText) }
    let request = GenerationRequest(
        prompt: try tokenizer.encode(promptText, addBOS: model.addBOS), maxNewTokens: options.maxNewTokens, sampling: sampling,
        ignoreEOS: options.ignoreEOS, stopStrings: options.stopStrings)
    try request.validate(for: config)
    // The KV cache holds what this run can reach: the prompt and -n new tokens, within the context.
    let capacity = options.maxNewTokens < 0 ? config.contextLength : min(config.contextLength, request.prompt.count + options.maxNewTokens)
    let transformer: Transformer
    let generator: Generator
    do {
        transformer = try model.makeTransformer(threads: options.threads ?? ModelLoader.physicalCoreCount(),
                                                maxRows: min(options.batchSize, request.prompt.count), cacheCapacity: capacity)
        generator = try Generator(transformer: transformer, tokenizer: tokenizer)
    } catch let error as AllocationError {
        throw InputError("\(error); a smaller -n makes the KV cache smaller")
    }
    let loadSeconds = seconds(since: start)
    if options.verbose {
        OutputStream.standardError.write(String(format: "load: %.1f ms (%@, %d threads, KV cache %d positions)\n",
                                                loadSeconds * 1000, model.formatDescription, transformer.threads, capacity))
    }

    let stdout = OutputStream.standardOutput
    var lastByte: UInt8?
    var text: [UInt8] = []
    if options.echo && !promptText.isEmpty {
        stdout.write(promptText)
        lastByte = promptText.utf8.last
    }
    let stats = try generator.generate(request, shouldStop: interrupted) { bytes in
        if interrupted() || !stdout.isOpen { return .interrupted }
        guard !bytes.isEmpty else { return nil }
        if options.json {
            text += bytes
            return nil
        }
        guard stdout.write(bytes) else { return .interrupted }
        lastByte = bytes.last
        return nil
    }
    if options.json {
        stdout.write(resultJSON(id: nil, text: text, stats: stats).encoded + "\n")
    } else if lastByte != nil && lastByte != 0x0A {
        stdout.write([0x0A])
    }
    if stdout.readerGone { return .success }  // the reader has gone (e.g. `| head`): end quietly
    if options.verbose { printStatistics(stats) }
    return stats.stopReason == .interrupted && interrupted() ? .interrupted : .success
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
    ]
    OutputStream.standardError.write(lines.joined(separator: "\n") + "\n")
}
