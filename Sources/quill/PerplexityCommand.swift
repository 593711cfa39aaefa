import Foundation
import Quill
import QuillCommandLine

/// `quill perplexity`: NLL per token, perplexity and bits per byte of a text or id sequence.
/// Ctrl-C stops within one prefill block and prints the figures of the tokens scored so far,
/// marked partial, with exit status 130.
func runPerplexity(_ o: PerplexityOptions) throws -> ExitStatus {
    let model = try loadModel(modelFlag: o.modelPath, tokenizerFlag: o.tokenizerPath,
                              tokenizer: o.file != nil ? .required : .none, showProgress: !o.noProgress)
    let config = model.weights.config
    var tokens: [Int]
    var bytes: Int?
    if let file = o.file {
        // The text is scored exactly as stored (no newline is dropped).
        let source: PromptSource = file == "-" ? .standardInput : .file(file)
        let data = try readInputBytes(source, limit: textInputByteLimit)
        let text = try decodeText(data, name: sourceName(source))
        tokens = try model.requireTokenizer().encode(text, addBOS: model.addBOS)
        bytes = data.count
    } else if let ids = o.ids {
        tokens = ids
    } else {
        let path = o.idsFile!
        let source: PromptSource = path == "-" ? .standardInput : .file(path)
        let text = try decodeText(try readInputBytes(source, limit: textInputByteLimit), name: sourceName(source))
        tokens = []
        for part in text.split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
            guard let id = Int(part), id >= 0 else { throw InputError("\(path): '\(part)' is not a token id") }
            tokens.append(id)
        }
    }
    let threads = o.threads ?? ModelLoader.physicalCoreCount()
    // The cache (the window, or the rolling cache of --stream): -c, else the text within the context.
    let capacity = try contextSize(o.ctxSize, model: model) ?? min(config.contextLength, max(1, tokens.count))
    let shift = ContextShift(keep: o.keep ?? 4)
    if o.stream && tokens.count > capacity {
        guard model.canShift else {
            throw InputError("--stream needs positions that can shift (RoPE or none); \(model.path) has "
                             + "\(config.architecture.positions.rawValue) positions")
        }
        guard shift.fits(capacity: capacity) else {
            throw UsageError("--keep \(shift.keep) leaves nothing to drop from a KV cache of \(capacity) positions "
                             + "(give --keep below \(capacity - 1) or a larger -c)")
        }
    }
    if let stride = o.stride, stride > capacity {
        throw UsageError("--stride \(stride) is larger than the window of \(capacity) positions")
    }
    let transformer = try model.makeTransformer(threads: threads, maxRows: min(o.batchSize, capacity), cacheCapacity: capacity)
    if o.verbose {
        let how = o.stream ? "one rolling cache of \(capacity) positions keeping \(shift.keep) sinks"
            : "windows of \(capacity) (stride \(o.stride ?? max(1, capacity / 2)))"
        OutputStream.standardError.write(
            "perplexity: scoring \(tokens.count) tokens in \(how), \(kvCacheDescription(transformer)), \(threads) threads\n")
    }
    // The library checks `shouldStop` before each prefill block: the progress line counts them.
    let progress = ProgressLine(disabled: o.noProgress)
    var blocks = 0
    let blockRows = min(o.batchSize, capacity)
    func shouldStop() -> Bool {
        progress.update("perplexity: \(blocks) blocks of up to \(blockRows) tokens scored, of \(tokens.count) tokens")
        blocks += 1
        return interrupted()
    }
    let result = o.stream
        ? try Perplexity.evaluateStreaming(tokens, transformer: transformer, shift: shift, keepPerToken: o.perToken,
                                           shouldStop: shouldStop)
        : try Perplexity.evaluate(tokens, transformer: transformer, stride: o.stride, keepPerToken: o.perToken,
                                  shouldStop: shouldStop)
    progress.finish()
    let bitsPerByte = bytes.map { result.bitsPerByte(bytes: $0) }
    if o.json {
        var fields: [(String, JSON)] = [
            ("tokens", .int(result.tokens)), ("scored", .int(result.scored)),
            ("nll_mean", .number(result.meanNLL, decimals: 6)), ("perplexity", .number(result.perplexity, decimals: 6)),
            ("bytes", bytes.map { .int($0) } ?? .null),
            ("bits_per_byte", bitsPerByte.map { .number($0, decimals: 6) } ?? .null),
            ("partial", .bool(!result.complete)),
        ]
        if o.perToken {
            fields.append(("per_token", .array(result.perToken.map {
                .object([("position", .int($0.position)), ("id", .int($0.id)), ("logprob", .number($0.logProbability, decimals: 8))])
            })))
        }
        OutputStream.standardOutput.write(JSON.object(fields).encoded + "\n")
    } else {
        var line = String(format: "tokens %d, scored %d, mean NLL %.6f nats/token, perplexity %.4f",
                          result.tokens, result.scored, result.meanNLL, result.perplexity)
        if let bitsPerByte { line += String(format: ", %.6f bits/byte over %d bytes", bitsPerByte, bytes!) }
        if !result.complete { line += " (partial: interrupted)" }
        OutputStream.standardOutput.write(line + "\n")
    }
    return result.complete ? .success : .interrupted
}
