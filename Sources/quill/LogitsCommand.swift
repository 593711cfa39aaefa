import Quill
import QuillCommandLine

/// `quill logits`: prints {"tokens": [...], "logits": [[...], ...]}, one row per position.
func runLogits(_ options: LogitsOptions) throws -> ExitStatus {
    let model = try loadModel(modelFlag: options.modelPath, tokenizerFlag: nil, tokenizer: .none)
    let config = model.weights.config
    if let bad = options.ids.first(where: { $0 >= config.vocabSize }) {
        throw InputError("token id \(bad) is outside the vocabulary of \(model.path) (\(config.vocabSize) tokens)")
    }
    guard options.ids.count <= config.contextLength else {
        throw InputError("\(options.ids.count) ids but the context window is \(config.contextLength)")
    }
    let transformer = try model.makeTransformer(threads: options.threads ?? ModelLoader.physicalCoreCount(),
                                                maxRows: options.batchSize, cacheCapacity: options.ids.count)
    var rows: [String] = []
    let fed = transformer.prefill(options.ids, startPosition: 0, cache: try transformer.makeCache(), stopWhen: interrupted,
                                  everyPosition: { _, logits, offset in
        let values = logits.array(offset: offset, length: config.vocabSize)
        rows.append("[" + values.map { "\($0)" }.joined(separator: ",") + "]")
    })
    guard fed != nil else { return .interrupted }
    let tokens = options.ids.map(String.init).joined(separator: ",")
    OutputStream.standardOutput.write("{\"tokens\":[\(tokens)],\"logits\":[\(rows.joined(separator: ","))]}\n")
    return .success
}
