import Foundation
import Quill
import QuillCommandLine

/// `quill info`: what a model file is: format, sizes, hyperparameters, storage, tokenizer.
func runInfo(_ o: InfoOptions) throws -> ExitStatus {
    let modelPath = try resolveModelPath(o.modelPath)
    let model = try loadModel(modelFlag: modelPath, tokenizerFlag: nil, tokenizer: .optional)
    let c = model.weights.config
    var tokenizer = o.tokenizerPath ?? (model.gguf != nil && model.tokenizer != nil
        ? "in the file (\(model.tokenizer!.vocabSize) pieces)" : Tokenizer.defaultPath(forCheckpoint: modelPath))
    if o.tokenizerPath == nil, model.tokenizer == nil, let gguf = model.gguf,
       let kind = try? gguf.stringIfPresent("tokenizer.ggml.model"), kind != "llama" {
        // Qwen2's and GPT-2's byte-level BPE: the model runs, on token ids.
        tokenizer = "the file's (\(kind)) is not one Quill reads: run with token ids (--ids, perplexity, logits) "
            + "or give a SentencePiece model with -z"
    }
    let quantization: String
    switch model.checkpoint?.format {
    case .version2(let groupSize)?: quantization = "Q8_0 (int8, group size \(groupSize))"
    case .version0?, .version1?: quantization = "none (float32)"
    case nil: quantization = model.weights.storageSummary
    }
    let format = model.checkpoint != nil ? "llama2.c" : "GGUF"
    let version = model.checkpoint?.format.version ?? model.gguf?.version ?? 0
    var fields: [(String, JSON)] = [
        ("path", .string(modelPath)), ("format", .string(format)), ("version", .int(version)),
        ("bytes", .int(model.byteCount)), ("parameters", .int(c.parameterCount)),
        ("dim", .int(c.dim)), ("hidden_dim", .int(c.hiddenDim)), ("layers", .int(c.layerCount)),
        ("heads", .int(c.headCount)), ("kv_heads", .int(c.kvHeadCount)), ("head_size", .int(c.headSize)),
        ("vocab_size", .int(c.vocabSize)), ("context_length", .int(c.contextLength)),
        ("shared_classifier", .bool(c.sharedClassifier)), ("norm_epsilon", .number(Double(c.normEpsilon), decimals: 8)),
        ("rope_theta", .number(c.ropeTheta, decimals: 1)),
    ]
    // The rest of the RoPE description: scaling, per-pair frequency divisors, pairing. Values
    // are printed in full (shortest exact decimal of the double), so a reader gets them back.
    let scalingFactor: Double
    switch c.ropeScaling {
    case .none: scalingFactor = 1
    case .linear(let factor): scalingFactor = factor
    }
    let factors: JSON
    if let f = c.ropeFrequencyFactors {
        factors = o.json ? .array(f.map { .raw(String(Double($0))) })
            : .string("\(f.count) divisors from \(f.min()!) to \(f.max()!) (--json lists them)")
    } else {
        factors = o.json ? .null : .string("none")
    }
    fields += [
        ("rope_scaling", .string(c.ropeScaling == .none ? "none" : "linear")), ("rope_scaling_factor", .raw(String(scalingFactor))),
        ("rope_frequency_factors", factors), ("rope_pairing", .string(c.ropePairing.rawValue)),
    ]
    fields += architectureFields(c, json: o.json)
    fields += [
        ("quantization", .string(quantization)),
        ("tokenizer", tokenizer.map { .string($0) } ?? .null),
    ]
    if let gguf = model.gguf {
        // Storage types with tensor counts and bytes, then the file's own metadata.
        var storage: [String: (tensors: Int, bytes: Int)] = [:]
        for tensor in gguf.tensors {
            storage[tensor.type.name, default: (0, 0)].tensors += 1
            storage[tensor.type.name, default: (0, 0)].bytes += tensor.byteCount
        }
        fields.append(("storage", .object(storage.sorted { $0.value.bytes > $1.value.bytes }.map {
            ($0.key, .object([("tensors", .int($0.value.tensors)), ("bytes", .int($0.value.bytes))]))
        })))
        fields.append(("metadata", .object(gguf.metadata.map { ($0.key, metadataJSON($0.value)) })))
    }
    if o.json {
        OutputStream.standardOutput.write(JSON.object(fields).encoded + "\n")
    } else {
        let width = fields.map(\.0.count).max()!
        let lines = fields.map { key, value -> String in
            let text: String
            switch value {
            case .string(let s): text = s
            case .null: text = "none found"
            case .object(let members):  // storage and metadata: one member a line, indented
                return key + "\n" + members.map { name, member in
                    let shown: String
                    if case .string(let s) = member { shown = s } else { shown = member.encoded }
                    return "  " + name + "  " + shown
                }.joined(separator: "\n")
            default: text = value.encoded
            }
            return key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + text
        }
        OutputStream.standardOutput.write(lines.joined(separator: "\n") + "\n")
    }
    return .success
}

/// The design choices the forward pass follows, one field each, so a user sees what runs.
private func architectureFields(_ c: ModelConfig, json: Bool) -> [(String, JSON)] {
    let a = c.architecture
    func optional(_ value: Float?) -> JSON { value.map { .raw(String($0)) } ?? (json ? .null : .string("none")) }
    let windows: JSON
    if a.windows.allSatisfy({ $0 == nil }) {
        windows = .string("full attention in every layer")
    } else if json {
        windows = .array((0..<c.layerCount).map { a.window(layer: $0).map { .int($0) } ?? .null })
    } else {
        let sliding = (0..<c.layerCount).filter { a.window(layer: $0) != nil }
        let sizes = Set(sliding.compactMap { a.window(layer: $0) }).sorted().map(String.init).joined(separator: ", ")
        windows = .string("sliding window of \(sizes) on layers \(sliding.map(String.init).joined(separator: ", ")); "
                          + "full on the others (KV cache keeps a ring of the window)")
    }
    let biases = Architecture.Bias.allCases.filter { a.biases.contains($0) }.map(\.rawValue)
    var fused: [String] = []
    if a.fusedQKV { fused.append("QKV") }
    if a.fusedGateUp { fused.append("gate/up") }
    return [
        ("norm", .string(a.norm.rawValue + (a.norm == .layer ? " (with bias)" : ""))),
        ("norm_placement", .string(a.normPlacement.rawValue)),
        ("feed_forward", .string(a.feedForward.rawValue)),
        ("positions", .string(a.positions.rawValue)),
        ("biases", json ? .array(biases.map { .string($0) }) : .string(biases.isEmpty ? "none" : biases.joined(separator: ", "))),
        ("fused_matrices", json ? .array(fused.map { .string($0) }) : .string(fused.isEmpty ? "none" : fused.joined(separator: ", ") + " (split at load)")),
        ("attention_scale", .raw(String(c.attentionScale))),
        ("attention_softcap", optional(a.attentionSoftcap)),
        ("final_logit_softcap", optional(a.finalSoftcap)),
        ("embedding_scale", optional(a.embeddingScale)),
        ("attention_windows", windows),
    ]
}

/// A metadata value as JSON: scalars as they are, arrays of up to 16 elements in full, longer
/// ones (a vocabulary) as their type and length.
private func metadataJSON(_ value: GGUFValue) -> JSON {
    func number<T>(_ v: T) -> JSON where T: BinaryFloatingPoint & LosslessStringConvertible {
        v.isFinite ? .raw(String(v)) : .string(String(v))
    }
    switch value {
    case .uint8(let v): return .raw(String(v))
    case .int8(let v): return .raw(String(v))
    case .uint16(let v): return .raw(String(v))
    case .int16(let v): return .raw(String(v))
    case .uint32(let v): return .raw(String(v))
    case .int32(let v): return .raw(String(v))
    case .uint64(let v): return .raw(String(v))
    case .int64(let v): return .raw(String(v))
    case .float32(let v): return number(v)
    case .float64(let v): return number(v)
    case .bool(let v): return .bool(v)
    case .string(let v): return .string(v)
    case .array(let array):
        guard array.count <= 16 else {
            return .object([("type", .string(array.typeName)), ("count", .int(array.count))])
        }
        return .array(arrayElements(array).map(metadataJSON))
    }
}

private func arrayElements(_ array: GGUFArray) -> [GGUFValue] {
    switch array {
    case .uint8(let a): a.map { .uint8($0) }
    case .int8(let a): a.map { .int8($0) }
    case .uint16(let a): a.map { .uint16($0) }
    case .int16(let a): a.map { .int16($0) }
    case .uint32(let a): a.map { .uint32($0) }
    case .int32(let a): a.map { .int32($0) }
    case .float32(let a): a.map { .float32($0) }
    case .bool(let a): a.map { .bool($0) }
    case .string(let a): a.map { .string($0) }
    case .uint64(let a): a.map { .uint64($0) }
    case .int64(let a): a.map { .int64($0) }
    case .float64(let a): a.map { .float64($0) }
    case .array(let a): a.map { .array($0) }
    }
}
