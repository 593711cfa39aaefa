import Foundation
import Quill

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

func loadModel(modelFlag: String?, tokenizerFlag: String?, threads: Int?, batchSize: Int, parallel: Int = 1) throws -> LoadedModel {
    let threadCount = threads ?? ModelLoader.physicalCoreCount()
    return try ModelLoader.load(modelPath: try resolveModelPath(modelFlag), tokenizerPath: tokenizerFlag,
                                threads: threadCount, batchSize: batchSize, parallel: parallel)
}

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
    var promptText = try readPrompt(options.prompt)
    if options.escape, case .text = options.prompt { promptText = processEscapes(promptText) }
    let model = try loadModel(modelFlag: options.modelPath, tokenizerFlag: options.tokenizerPath,
                              threads: options.threads, batchSize: options.batchSize)
    let request = GenerationRequest(
        prompt: try model.tokenizer.encode(promptText), maxNewTokens: options.maxNewTokens, sampling: sampling,
        ignoreEOS: options.ignoreEOS, stopStrings: options.stopStrings)
    let generator = Generator(transformer: model.transformer, tokenizer: model.tokenizer)

    let stdout = OutputStream.standardOutput
    var outputClosed = false
    var lastByte: UInt8?
    var text: [UInt8] = []
    if options.echo && !promptText.isEmpty {
        outputClosed = !stdout.write(promptText)
        lastByte = promptText.utf8.last
    }
    let stats = try generator.generate(request) { bytes in
        if interruptRequested.load(ordering: .relaxed) { return .interrupted }
        if outputClosed { return .interrupted }
        guard !bytes.isEmpty else { return nil }
        if options.json {
            text += bytes
            return nil
        }
        guard stdout.write(bytes) else {
            outputClosed = true
            return .interrupted
        }
        lastByte = bytes.last
        return nil
    }
    if options.json {
        outputClosed = !stdout.write(resultJSON(id: nil, text: text, stats: stats).encoded + "\n")
    } else if !outputClosed && lastByte != 0x0A {
        stdout.write([0x0A])
    }
    if outputClosed { return .success }  // the reader has gone (e.g. `| head`): end quietly
    if options.verbose { printStatistics(stats, model: model) }
    return stats.stopReason == .interrupted ? .interrupted : .success
}

func printStatistics(_ stats: GenerationStats, model: LoadedModel) {
    func format(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
    let lines = [
        "load: \(format(model.loadSeconds * 1000, 1)) ms (\(model.checkpoint.format), \(model.transformer.threads) threads)",
        "prompt: \(stats.promptTokens) tokens in \(format(stats.promptSeconds * 1000, 1)) ms (\(format(stats.promptTokensPerSecond)) tokens/s)",
        "generate: \(stats.generatedTokens) tokens in \(format(stats.generateSeconds * 1000, 1)) ms (\(format(stats.generateTokensPerSecond)) tokens/s)",
        "seed: \(stats.seed)",
        "stop: \(stats.stopReason.rawValue)",
    ]
    OutputStream.standardError.write(lines.joined(separator: "\n") + "\n")
}
