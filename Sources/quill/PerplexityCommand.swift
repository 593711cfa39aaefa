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
