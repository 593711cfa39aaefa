/// llama.cpp's names for the tensors of a model in GGUF files (gguf-py's `MODEL_TENSOR`
/// names): the one table the GGUF writer uses, the inverse of what GGUFArchitectures.swift reads.
extension TensorName {
    /// The GGUF tensor name for layer `layer` ("blk.3.attn_q.weight"; the layer is ignored by
    /// tensors that are not per layer); nil for llama2.c's stored RoPE table, which GGUF has not.
    public func ggufName(layer: Int) -> String? {
        switch self {
        case .tokenEmbedding: return "token_embd.weight"
        case .finalNorm: return "output_norm.weight"
        case .classifier: return "output.weight"
        case .ropeTables: return nil
        default: return "blk.\(layer).\(ggufStem!).weight"
        }
    }

    /// The per-layer stem ("attn_q"), shared by a weight and its bias; nil for whole-model tensors.
    var ggufStem: String? {
        switch self {
        case .attentionNorm: "attn_norm"
        case .wq: "attn_q"
        case .wk: "attn_k"
        case .wv: "attn_v"
        case .wo: "attn_output"
        case .ffnNorm: "ffn_norm"
        case .w1: "ffn_gate"
        case .w2: "ffn_down"
        case .w3: "ffn_up"
        case .tokenEmbedding, .finalNorm, .classifier, .ropeTables: nil
        }
    }
}

/// A piece of a model that a GGUF tensor holds: a tensor of Llama's table, or one of the vectors
/// and tables other architectures add (`LayerExtras`, `ModelWeights.positionEmbedding`).
public enum ModelTensorPart: Hashable, Sendable {
    /// A weight matrix or norm gain of Llama's table.
    case weight(TensorName)
    /// LayerNorm's bias beside the gain `TensorName` (attention, feed-forward or final norm).
    case normBias(TensorName)
    /// Gemma 2's norm gains after attention and after the feed-forward block.
    case postAttentionNorm, postFFNNorm
    /// The bias added after a projection.
    case bias(Architecture.Bias)
    /// GPT-2's learned positions, (contextLength, dim).
    case positionEmbedding
    /// Llama 3's per-pair RoPE frequency divisors (headSize / 2), from `ModelConfig`.
    case ropeFrequencyFactors

    /// Whether the part is a vector (stored as F32, as llama.cpp keeps them).
    public var isVector: Bool {
        switch self {
        case .weight(let name): name.isNorm
        case .normBias, .postAttentionNorm, .postFFNNorm, .bias, .ropeFrequencyFactors: true
        case .positionEmbedding: false
        }
    }

    /// Whether the part exists once per layer.
    public var isPerLayer: Bool {
        switch self {
        case .weight(let name), .normBias(let name): name.isPerLayer
        case .postAttentionNorm, .postFFNNorm, .bias: true
        case .positionEmbedding, .ropeFrequencyFactors: false
        }
    }

    /// A name for messages: "wq", "q bias", "position embedding".
    public var description: String {
        switch self {
        case .weight(let name): name.rawValue
        case .normBias(let name): "\(name.rawValue) bias"
        case .postAttentionNorm: "post-attention norm"
        case .postFFNNorm: "post-feed-forward norm"
        case .bias(let bias): "\(bias.rawValue) bias"
        case .positionEmbedding: "position embedding"
        case .ropeFrequencyFactors: "RoPE frequency factors"
        }
    }
}

extension ModelConfig {
    /// The shape of one part (rows = outputs, cols = inputs; a vector is one row).
    public func shape(of part: ModelTensorPart) -> (rows: Int, cols: Int) {
        switch part {
        case .weight(let name): shape(of: name)
        case .normBias, .postAttentionNorm, .postFFNNorm: (1, dim)
        case .bias(let bias): (1, biasWidth(bias))
        case .positionEmbedding: (contextLength, dim)
        case .ropeFrequencyFactors: (1, headSize / 2)
        }
    }
}

/// One tensor of a GGUF model file: its llama.cpp name, its layer (0 for whole-model tensors)
/// and the parts it holds one after another: the rows of Q, K and V in a fused `attn_qkv`, of
/// gate then up in Phi-3's `ffn_up`, the three biases in `attn_qkv.bias`; one part otherwise.
public struct GGUFModelTensor: Sendable {
    public let name: String
    public let layer: Int
    public let parts: [ModelTensorPart]

    /// Whether the tensor is a vector (norm gains, biases, RoPE factors).
    public var isVector: Bool { parts[0].isVector }

    /// The tensor's (rows, cols) in a model with `config`: the parts' rows stacked (a vector's
    /// values laid end to end, as one row).
    public func shape(_ config: ModelConfig) -> (rows: Int, cols: Int) {
        let shapes = parts.map { config.shape(of: $0) }
        return isVector ? (1, shapes.map(\.cols).reduce(0, +)) : (shapes.map(\.rows).reduce(0, +), shapes[0].cols)
    }

    /// ggml's dimensions, innermost first: [count] for a vector, [cols, rows] for a matrix.
    public func dimensions(_ config: ModelConfig) -> [Int] {
        let (rows, cols) = shape(config)
        return isVector ? [cols] : [cols, rows]
    }

    /// The tensors of a model with `config` in file order, named as llama.cpp's converter names
    /// them: the embedding (and learned positions), each layer's tensors (with the biases,
    /// LayerNorm biases, post-norms and fused matrices its architecture has), the final norm,
    /// the classifier unless shared, the RoPE factors when there are any.
    public static func tensors(of config: ModelConfig) -> [GGUFModelTensor] {
        let a = config.architecture
        var tensors = [GGUFModelTensor(name: "token_embd.weight", layer: 0, parts: [.weight(.tokenEmbedding)])]
        if a.positions == .learned { tensors.append(.init(name: "position_embd.weight", layer: 0, parts: [.positionEmbedding])) }
        for l in 0..<config.layerCount {
            func weight(_ name: TensorName) -> GGUFModelTensor { .init(name: name.ggufName(layer: l)!, layer: l, parts: [.weight(name)]) }
            func named(_ stem: String, _ parts: [ModelTensorPart]) -> GGUFModelTensor { .init(name: "blk.\(l).\(stem)", layer: l, parts: parts) }
            // A gain, then its LayerNorm bias.
            func norm(_ name: TensorName) -> [GGUFModelTensor] {
                [weight(name)] + (a.norm == .layer ? [named(name.ggufStem! + ".bias", [.normBias(name)])] : [])
            }
            // A projection, then its bias when the architecture has one.
            func projection(_ name: TensorName, _ bias: Architecture.Bias) -> [GGUFModelTensor] {
                [weight(name)] + (a.biases.contains(bias) ? [named(name.ggufStem! + ".bias", [.bias(bias)])] : [])
            }
            tensors += norm(.attentionNorm)
            if a.fusedQKV {
                tensors.append(named("attn_qkv.weight", [.weight(.wq), .weight(.wk), .weight(.wv)]))
                // All three or none: a fused bias holds them together (requireWritable checks).
                if a.biases.contains(.query) { tensors.append(named("attn_qkv.bias", [.bias(.query), .bias(.key), .bias(.value)])) }
            } else {
                tensors += projection(.wq, .query) + projection(.wk, .key) + projection(.wv, .value)
            }
            tensors += projection(.wo, .output)
            if a.postNorms { tensors.append(named("post_attention_norm.weight", [.postAttentionNorm])) }
            tensors += norm(.ffnNorm)
            if a.feedForward.isGated && !a.fusedGateUp { tensors.append(weight(.w1)) }
            tensors += projection(.w2, .down)
            if a.fusedGateUp {
                tensors.append(named("ffn_up.weight", [.weight(.w1), .weight(.w3)]))  // gate rows first
                if a.biases.contains(.up) { tensors.append(named("ffn_up.bias", [.bias(.up)])) }
            } else {
                tensors += projection(.w3, .up)
            }
            if a.postNorms { tensors.append(named("post_ffw_norm.weight", [.postFFNNorm])) }
        }
        tensors.append(.init(name: "output_norm.weight", layer: 0, parts: [.weight(.finalNorm)]))
        if a.norm == .layer { tensors.append(.init(name: "output_norm.bias", layer: 0, parts: [.normBias(.finalNorm)])) }
        if !config.sharedClassifier { tensors.append(.init(name: "output.weight", layer: 0, parts: [.weight(.classifier)])) }
        if config.ropeFrequencyFactors != nil {
            tensors.append(.init(name: GGUFModel.ropeFactorsTensor, layer: 0, parts: [.ropeFrequencyFactors]))
        }
        return tensors
    }
}

extension ModelWeights {
    /// The float32 values of `part` of layer `layer` (dequantized when stored otherwise), row-major.
    public func values(of part: ModelTensorPart, layer: Int) -> [Float] {
        let e = part.isPerLayer ? layers[layer].extras : LayerExtras()
        switch part {
        case .weight(let name): return floatValues(name, layer: layer)
        case .normBias(.finalNorm): return finalNormBias!.array
        case .normBias(.attentionNorm): return e.attentionNormBias!.array
        case .normBias(.ffnNorm): return e.ffnNormBias!.array
        case .normBias(let name): preconditionFailure("\(name.rawValue) is not a norm")
        case .postAttentionNorm: return e.postAttentionNorm!.array
        case .postFFNNorm: return e.postFFNNorm!.array
        case .bias(let bias): return e[bias]!.array
        case .positionEmbedding:
            let table = positionEmbedding!
            if case .float32(let view) = table.storage { return view.array }
            return (0..<table.rows).flatMap { table.rowValues($0) }
        case .ropeFrequencyFactors: return config.ropeFrequencyFactors!
        }
    }
}
