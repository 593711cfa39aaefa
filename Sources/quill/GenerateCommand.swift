import Foundation
import Quill

/// The model to use: -m, else $QUILL_MODEL, else the model shipped in models/.
func resolveModelPath(_ flag: String?) throws -> String {
    if let flag { return flag }
    if let fromEnvironment = ProcessInfo.processInfo.environment["QUILL_MODEL"], !fromEnvironment.isEmpty {
        return fromEnvironment
    }
    let candidates = ModelLoader.defaultModelCandidates(executablePath: CommandLine.arguments[0])
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
    parameters.seed = options.seed
    do { try parameters.validate() } catch { throw UsageError(error.description) }
    return parameters
}

func loadModel(modelFlag: String?, tokenizerFlag: String?, threads: Int?, batchSize: Int) throws -> LoadedModel {
    let threadCount = threads ?? ModelLoader.physicalCoreCount()
    ModelLoader.setBLASThreads(threadCount)
    return try ModelLoader.load(modelPath: try resolveModelPath(modelFlag), tokenizerPath: tokenizerFlag,
                                threads: threadCount, batchSize: batchSize)
}

/// `quill [options] [PROMPT]`: stream generated text to stdout.
func runGenerate(_ options: GenerateOptions) throws -> ExitStatus {
    let sampling = try samplingParameters(options.sampling)
    let promptText = try readPrompt(options.prompt)
    let model = try loadModel(modelFlag: options.modelPath, tokenizerFlag: options.tokenizerPath,
                              threads: options.threads, batchSize: options.batchSize)
    let prompt = try model.tokenizer.encode(promptText)
    let generator = Generator(transformer: model.transformer, tokenizer: model.tokenizer)

    let stdout = OutputStream.standardOutput
    var outputClosed = false
    var lastByte: UInt8?
    let stats = try generator.generate(prompt: prompt, maxNewTokens: options.maxNewTokens, sampling: sampling) { _, bytes in
        if interruptRequested.load(ordering: .relaxed) { return .interrupted }
        guard !bytes.isEmpty else { return nil }
        guard stdout.write(bytes) else {
            outputClosed = true
            return .interrupted
        }
        lastByte = bytes.last
        return nil
    }
    if outputClosed { return .success }  // the reader has gone (e.g. `| head`): end quietly
    if lastByte != 0x0A { stdout.write([0x0A]) }
    if options.verbose {
        printStatistics(stats, model: model)
    }
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
