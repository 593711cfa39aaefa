import Foundation
import Quill
import QuillCommandLine

/// `quill info`: what a checkpoint is.
func runInfo(_ o: InfoOptions) throws -> ExitStatus {
    let modelPath = try resolveModelPath(o.modelPath)
    let checkpoint = try loadModel(modelFlag: modelPath, tokenizerFlag: nil, tokenizer: .none).checkpoint
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
