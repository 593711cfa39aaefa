import Quill

/// `quill logits`: prints {"tokens": [...], "logits": [[...], ...]}, one row per position.
func runLogits(_ options: LogitsOptions) throws -> ExitStatus {
    let threads = options.threads ?? ModelLoader.physicalCoreCount()
    let checkpoint = try Checkpoint(path: try resolveModelPath(options.modelPath))
    let config = checkpoint.config
    if let bad = options.ids.first(where: { $0 >= config.vocabSize }) {
        throw InputError("token id \(bad) is outside the vocabulary of \(checkpoint.path) (\(config.vocabSize) tokens)")
    }
    guard options.ids.count <= config.contextLength else {
        throw InputError("\(options.ids.count) ids but the context window is \(config.contextLength)")
    }
    let transformer = Transformer(checkpoint: checkpoint, maxRows: options.batchSize, threads: threads)
    var rows: [String] = []
    transformer.prefill(options.ids, startPosition: 0, cache: transformer.makeCache()) { _, logits, offset in
        let values = logits.array(offset: offset, length: config.vocabSize)
        rows.append("[" + values.map { "\($0)" }.joined(separator: ",") + "]")
    }
    let tokens = options.ids.map(String.init).joined(separator: ",")
    let json = "{\"tokens\":[\(tokens)],\"logits\":[\(rows.joined(separator: ","))]}\n"
    OutputStream.standardOutput.write(json)  // a closed reader ends the command quietly either way
    return .success
}
