import Foundation
import Quill
import QuillCommandLine

/// The tokenizer for tokenize/detokenize: -z, else the one beside -m (or the default model).
private func tokenizerFor(_ o: TokenizeOptions) throws -> Tokenizer {
    if let path = o.tokenizerPath { return try Tokenizer(path: path) }
    // The model's own tokenizer: beside a llama2.c checkpoint, or inside a GGUF file.
    return try loadModel(modelFlag: o.modelPath, tokenizerFlag: nil).requireTokenizer()
}

/// `quill tokenize`: ids (default), pieces, or JSON of a text.
func runTokenize(_ o: TokenizeOptions) throws -> ExitStatus {
    let tokenizer = try tokenizerFor(o)
    if o.addBOS && tokenizer.bosID < 0 {
        throw InputError("\(tokenizer.path): the tokenizer has no beginning-of-sequence piece (<s>); "
                         + "tokenize without it with --no-bos")
    }
    // Exactly the bytes given (a final newline of a file or stdin is text too), as perplexity reads them.
    let text = try decodeText(try readInputBytes(o.input, limit: textInputByteLimit), name: sourceName(o.input))
    let ids = try tokenizer.encode(text, addBOS: o.addBOS)
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

/// `quill detokenize`: ids (separated by spaces, commas or newlines) back to text, as
/// SentencePiece decodes them: `detokenize(tokenize(x))` is `x`, with or without BOS.
func runDetokenize(_ o: TokenizeOptions) throws -> ExitStatus {
    let tokenizer = try tokenizerFor(o)
    var ids: [Int] = []
    let list = try decodeText(try readInputBytes(o.input, limit: textInputByteLimit), name: sourceName(o.input))
    for part in list.split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
        guard let id = Int(part), id >= 0, id < tokenizer.vocabSize else {
            throw InputError("'\(part)' is not a token id of \(tokenizer.path) (0..<\(tokenizer.vocabSize))")
        }
        ids.append(id)
    }
    OutputStream.standardOutput.write(tokenizer.decode(ids))
    return .success
}
