import Foundation
import Quill

/// `quill perplexity`: NLL per token, perplexity and bits per byte of a text or id sequence.
func runPerplexity(_ o: PerplexityOptions) throws -> ExitStatus {
    let threads = o.threads ?? ModelLoader.physicalCoreCount()
    let modelPath = try resolveModelPath(o.modelPath)
    let checkpoint = try Checkpoint(path: modelPath)
    var tokens: [Int]
    var bytes: Int?
    if let file = o.file {
        // The text is scored exactly as stored (no newline is dropped).
        let data: [UInt8]
        if file == "-" {
            guard let input = readAll(fd: 0) else { throw InputError("stdin: cannot read") }
            data = input
        } else {
            guard let contents = FileManager.default.contents(atPath: file) else { throw InputError("\(file): cannot read") }
            data = Array(contents)
        }
        guard let text = String(validating: data, as: UTF8.self) else { throw InputError("\(file): not valid UTF-8 text") }
        let tokenizerPath = o.tokenizerPath ?? Tokenizer.defaultPath(forCheckpoint: modelPath)
        guard let tokenizerPath else { throw InputError("no tokenizer for \(modelPath): give one with -z") }
        let tokenizer = try Tokenizer(path: tokenizerPath)
        guard tokenizer.vocabSize == checkpoint.config.vocabSize else {
            throw InputError("tokenizer \(tokenizerPath) has \(tokenizer.vocabSize) pieces but model \(modelPath) has a vocabulary of \(checkpoint.config.vocabSize)")
        }
        tokens = try tokenizer.encode(text)
        bytes = data.count
    } else if let ids = o.ids {
        tokens = ids
    } else {
        let path = o.idsFile!
        guard let contents = FileManager.default.contents(atPath: path) else { throw InputError("\(path): cannot read") }
        let text = String(decoding: contents, as: UTF8.self)
        tokens = []
        for part in text.split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
            guard let id = Int(part), id >= 0 else { throw InputError("\(path): '\(part)' is not a token id") }
            tokens.append(id)
        }
    }
    let transformer = Transformer(checkpoint: checkpoint, maxRows: o.batchSize, threads: threads)
    let result = try Perplexity.evaluate(tokens, transformer: transformer, stride: o.stride, keepPerToken: o.perToken)
    let bitsPerByte = bytes.map { result.bitsPerByte(bytes: $0) }
    if o.json {
        var fields: [(String, JSON)] = [
            ("tokens", .int(result.tokens)), ("scored", .int(result.scored)),
            ("nll_mean", .number(result.meanNLL, decimals: 6)), ("perplexity", .number(result.perplexity, decimals: 6)),
            ("bytes", bytes.map { .int($0) } ?? .null),
            ("bits_per_byte", bitsPerByte.map { .number($0, decimals: 6) } ?? .null),
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
        OutputStream.standardOutput.write(line + "\n")
    }
    return .success
}

/// The tokenizer for tokenize/detokenize: -z, else the one beside -m (or the default model).
private func tokenizerFor(_ o: TokenizeOptions) throws -> Tokenizer {
    if let path = o.tokenizerPath { return try Tokenizer(path: path) }
    let modelPath = try resolveModelPath(o.modelPath)
    guard let path = Tokenizer.defaultPath(forCheckpoint: modelPath) else {
        throw InputError("no tokenizer for \(modelPath): give one with -z")
    }
    return try Tokenizer(path: path)
}

/// `quill tokenize`: ids (default), pieces, or JSON of a text.
func runTokenize(_ o: TokenizeOptions) throws -> ExitStatus {
    let tokenizer = try tokenizerFor(o)
    let ids = try tokenizer.encode(try readPrompt(o.input), addBOS: o.addBOS)
    let output: String
    switch o.format {
    case .ids: output = ids.map(String.init).joined(separator: " ")
    case .pieces: output = ids.map { "\($0)\t\(tokenizer.piece($0) ?? "")" }.joined(separator: "\n")
    case .json:
        output = JSON.object([("ids", .array(ids.map { .int($0) })),
                              ("pieces", .array(ids.map { .string(tokenizer.piece($0) ?? "") }))]).encoded
    }
    OutputStream.standardOutput.write(output + "\n")
    return .success
}

/// `quill detokenize`: ids (separated by spaces, commas or newlines) back to text.
func runDetokenize(_ o: TokenizeOptions) throws -> ExitStatus {
    let tokenizer = try tokenizerFor(o)
    var ids: [Int] = []
    for part in try readPrompt(o.input).split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
        guard let id = Int(part), id >= 0, id < tokenizer.vocabSize else {
            throw InputError("'\(part)' is not a token id of \(tokenizer.path) (0..<\(tokenizer.vocabSize))")
        }
        ids.append(id)
    }
    OutputStream.standardOutput.write(tokenizer.decode(ids))
    return .success
}

/// `quill info`: what a checkpoint is.
func runInfo(_ o: InfoOptions) throws -> ExitStatus {
    let modelPath = try resolveModelPath(o.modelPath)
    let checkpoint = try Checkpoint(path: modelPath)
    let c = checkpoint.config
    let tokenizer = o.tokenizerPath ?? Tokenizer.defaultPath(forCheckpoint: modelPath)
    let quantization: String
    if case .version2(let groupSize) = checkpoint.format { quantization = "Q8_0 (int8, group size \(groupSize))" } else {
        quantization = "none (float32)"
    }
    let fields: [(String, JSON)] = [
        ("path", .string(modelPath)), ("format", .string("llama2.c")), ("version", .int(checkpoint.format.version)),
        ("bytes", .int(checkpoint.byteCount)), ("parameters", .int(c.parameterCount)),
        ("dim", .int(c.dim)), ("hidden_dim", .int(c.hiddenDim)), ("layers", .int(c.layerCount)),
        ("heads", .int(c.headCount)), ("kv_heads", .int(c.kvHeadCount)), ("head_size", .int(c.headSize)),
        ("vocab_size", .int(c.vocabSize)), ("context_length", .int(c.contextLength)),
        ("shared_classifier", .bool(c.sharedClassifier)), ("quantization", .string(quantization)),
        ("tokenizer", tokenizer.map { .string($0) } ?? .null),
    ]
    if o.json {
        OutputStream.standardOutput.write(JSON.object(fields).encoded + "\n")
    } else {
        let width = fields.map(\.0.count).max()!
        let lines = fields.map { key, value -> String in
            let text: String
            switch value {
            case .string(let s): text = s
            case .null: text = "none found"
            default: text = value.encoded
            }
            return key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + text
        }
        OutputStream.standardOutput.write(lines.joined(separator: "\n") + "\n")
    }
    return .success
}

/// `quill quantize IN OUT`.
func runQuantize(_ o: QuantizeOptions) throws -> ExitStatus {
    let start = DispatchTime.now()
    let checkpoint = try Checkpoint(path: o.input)
    let groupSize = o.groupSize ?? Quantizer.defaultGroupSize(for: checkpoint.config)
    let temporary = o.output + ".partial"
    do {
        try Quantizer.quantize(checkpoint, groupSize: groupSize, to: temporary)
        if FileManager.default.fileExists(atPath: o.output) { try FileManager.default.removeItem(atPath: o.output) }
        try FileManager.default.moveItem(atPath: temporary, toPath: o.output)
    } catch {
        try? FileManager.default.removeItem(atPath: temporary)
        throw error
    }
    let written = try Checkpoint(path: o.output)  // re-read: the file must load
    OutputStream.standardError.write(String(
        format: "quantized %@ (%@ bytes) → %@ (%@ bytes, Q8_0 group %d) in %.1f s\n", o.input,
        groupedDigits(checkpoint.byteCount), o.output, groupedDigits(written.byteCount), groupSize, seconds(since: start)))
    return .success
}

