import Foundation
import Quill
import QuillCommandLine

/// `quill info`: what a model file is: format, sizes, hyperparameters, storage, tokenizer.
func runInfo(_ o: InfoOptions) throws -> ExitStatus {
    let modelPath = try resolveModelPath(o.modelPath)
    let model = try loadModel(modelFlag: modelPath, tokenizerFlag: nil, tokenizer: .optional)
    let c = model.weights.config
    let tokenizer = o.tokenizerPath ?? (model.gguf != nil && model.tokenizer != nil
        ? "in the file (\(model.tokenizer!.vocabSize) pieces)" : Tokenizer.defaultPath(forCheckpoint: modelPath))
    let quantization: String
    switch model.checkpoint?.format {
    case .version2(let groupSize)?: quantization = "Q8_0 (int8, group size \(groupSize))"
    case .version0?, .version1?: quantization = "none (float32)"
    case nil: quantization = model.weights.storageSummary
    }
    let format = model.checkpoint != nil ? "llama2.c" : "GGUF"
    let version = model.checkpoint?.format.version ?? model.gguf?.version ?? 0
    let fields: [(String, JSON)] = [
        ("path", .string(modelPath)), ("format", .string(format)), ("version", .int(version)),
        ("bytes", .int(model.byteCount)), ("parameters", .int(c.parameterCount)),
        ("dim", .int(c.dim)), ("hidden_dim", .int(c.hiddenDim)), ("layers", .int(c.layerCount)),
        ("heads", .int(c.headCount)), ("kv_heads", .int(c.kvHeadCount)), ("head_size", .int(c.headSize)),
        ("vocab_size", .int(c.vocabSize)), ("context_length", .int(c.contextLength)),
        ("shared_classifier", .bool(c.sharedClassifier)), ("norm_epsilon", .number(Double(c.normEpsilon), decimals: 8)),
        ("rope_theta", .number(c.ropeTheta, decimals: 1)), ("quantization", .string(quantization)),
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
