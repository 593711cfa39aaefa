/// llama.cpp's names for the tensors of a `llama` model in GGUF files (gguf-py's
/// `MODEL_TENSOR` names), the one table the GGUF reader and writer share.
extension TensorName {
    /// The GGUF tensor name for layer `layer` ("blk.3.attn_q.weight"; the layer is ignored by
    /// tensors that are not per layer); nil for llama2.c's stored RoPE table, which GGUF has not.
    public func ggufName(layer: Int) -> String? {
        let stem: String
        switch self {
        case .tokenEmbedding: return "token_embd.weight"
        case .finalNorm: return "output_norm.weight"
        case .classifier: return "output.weight"
        case .ropeTables: return nil
        case .attentionNorm: stem = "attn_norm"
        case .wq: stem = "attn_q"
        case .wk: stem = "attn_k"
        case .wv: stem = "attn_v"
        case .wo: stem = "attn_output"
        case .ffnNorm: stem = "ffn_norm"
        case .w1: stem = "ffn_gate"
        case .w2: stem = "ffn_down"
        case .w3: stem = "ffn_up"
        }
        return "blk.\(layer).\(stem).weight"
    }

    /// The tensors of a model with `config` in GGUF file order (as llama.cpp's converter writes
    /// them: the embedding, each layer's tensors, the final norm, the classifier unless shared).
    public static func ggufOrder(_ config: ModelConfig) -> [(name: TensorName, layer: Int)] {
        let layered: [TensorName] = [.attentionNorm, .wq, .wk, .wv, .wo, .ffnNorm, .w1, .w2, .w3]
        var order: [(name: TensorName, layer: Int)] = [(.tokenEmbedding, 0)]
        for layer in 0..<config.layerCount { order += layered.map { ($0, layer) } }
        order.append((.finalNorm, 0))
        if !config.sharedClassifier { order.append((.classifier, 0)) }
        return order
    }
}
