import Foundation
import QuillKernels

/// What each llama.cpp architecture Quill reads means, as llama.cpp's own loader and graph
/// (src/models/ARCH.cpp) define it: the choices its name fixes, and the ones its metadata
/// and tensors set. One function an architecture family, so adding one is one more case.
extension GGUFModel {
    /// The RoPE pairing of `architecture`: llama.cpp runs `llama` in its normal mode (adjacent
    /// pairs, its converter permutes Q and K for it) and the others in NEOX mode (halves).
    static func ropePairing(of architecture: String) -> RoPEPairing {
        architecture == "llama" ? .adjacent : .halves
    }

    /// The key holding the norm epsilon: LayerNorm models name it differently.
    static func epsilonKey(of architecture: String) -> String {
        architecture == "gpt2" ? "\(architecture).attention.layer_norm_epsilon" : "\(architecture).attention.layer_norm_rms_epsilon"
    }

    /// The design choices of `architecture` that metadata decides or its name fixes; the
    /// biases and fused matrices are found from the tensors (see `readLayer`).
    static func architecture(
        of gguf: GGUFFile, _ a: String, dim: Int, heads: Int, headSize: Int, layers: Int, context: Int
    ) throws(CheckpointError) -> Architecture {
        var arch = Architecture()
        func softcap(_ key: String) throws(CheckpointError) -> Float? {
            guard let value = try gguf.float32IfPresent(key) else { return nil }
            guard value.isFinite && value > 0 else { throw gguf.error("metadata '\(key)' is \(value); a soft cap must be positive") }
            return value
        }
        let windowKey = "\(a).attention.sliding_window"
        let window = try gguf.integerIfPresent(windowKey)
        if let window, window < 0 { throw gguf.error("metadata '\(windowKey)' is \(window); a window must be positive") }
        switch a {
        case "llama":
            // Mistral's window, on every layer. llama.cpp's `llama` graph ignores the key, so a file
            // with it runs there as if the window were the whole context.
            if let window, window > 0 && window < context { arch.windows = Array(repeating: window, count: layers) }
        case "qwen2", "phi3":
            // llama.cpp runs both with full attention whatever the file says (phi3 warns and drops the
            // window); Hugging Face would not, so a window shorter than the context is refused.
            if let window, window > 0 && window < context {
                throw gguf.error("metadata '\(windowKey)' is \(window); llama.cpp runs \(a) with full attention and Hugging Face "
                                 + "with the window, so which one the file means is a guess")
            }
        case "gemma", "gemma2":
            arch.feedForward = .geglu
            arch.embeddingScale = Float(dim).squareRoot()
            if a == "gemma2" {
                arch.normPlacement = .preAndPost
                // llama.cpp's gemma2 always caps; the keys only change its defaults (50 and 30).
                arch.attentionSoftcap = try softcap("\(a).attn_logit_softcapping") ?? 50
                arch.finalSoftcap = try softcap("\(a).final_logit_softcapping") ?? 30
                // llama.cpp's default window when the key is absent, on even layers (layer 0 slides).
                let w = window ?? 4096
                guard w > 0 else { throw gguf.error("metadata '\(windowKey)' is 0; Gemma 2 slides on every other layer") }
                arch.windows = (0..<layers).map { $0 % 2 == 0 ? w : nil }
                // The query scale llama.cpp derives (it writes no key): 1/√(dim/heads) for the 27B
                // model (46 layers), else 1/√headSize. export.py folds Hugging Face's
                // query_pre_attn_scalar into attn_q so that this rule holds.
                arch.attentionScale = 1 / Float(layers == 46 ? dim / heads : headSize).squareRoot()
            } else if let window, window > 0 {
                throw gguf.error("metadata '\(windowKey)' is \(window); Gemma has no sliding window")
            }
        case "gpt2":
            arch.norm = .layer
            arch.feedForward = .gelu
            arch.positions = .learned
            if let window, window > 0 { throw gguf.error("metadata '\(windowKey)' is \(window); GPT-2 has no sliding window") }
        default:
            throw gguf.error("architecture '\(a)' is not one Quill runs (it runs: \(architectures.joined(separator: ", ")))")
        }
        if a != "gemma2" {
            for key in ["\(a).attn_logit_softcapping", "\(a).final_logit_softcapping"] where try softcap(key) != nil {
                throw gguf.error("metadata '\(key)' is set, which llama.cpp's \(a) does not use; refusing to guess")
            }
        }
        return arch
    }

    /// The tensors of layer `l`, by llama.cpp's names: separate or fused (`attn_qkv`, and a
    /// `ffn_up` of 2 · hidden rows with no `ffn_gate`: gate rows first) matrices, split into views;
    /// biases where the file has them; LayerNorm biases and Gemma 2's post-norms where the
    /// architecture has them. `loader` marks each tensor it reads as used.
    static func readLayer(_ l: Int, config c: ModelConfig, loader: TensorLoader) throws(CheckpointError) -> LayerWeights {
        let p = "blk.\(l)."
        let a = c.architecture
        var e = LayerExtras()
        func bias(_ name: String, _ kind: Architecture.Bias) throws(CheckpointError) {
            if loader.has(p + name + ".bias") { e[kind] = try loader.vector(p + name + ".bias", count: c.biasWidth(kind)) }
        }
        let wq, wk, wv: WeightMatrix
        if loader.has(p + "attn_qkv.weight") {
            let qkv = try loader.matrix(p + "attn_qkv.weight", rows: c.qDim + 2 * c.kvDim, cols: c.dim)
            wq = qkv.rows(0..<c.qDim)
            wk = qkv.rows(c.qDim..<c.qDim + c.kvDim)
            wv = qkv.rows(c.qDim + c.kvDim..<c.qDim + 2 * c.kvDim)
            if loader.has(p + "attn_qkv.bias") {
                let b = try loader.vector(p + "attn_qkv.bias", count: c.qDim + 2 * c.kvDim)
                e.queryBias = b.slice(offset: 0, count: c.qDim)
                e.keyBias = b.slice(offset: c.qDim, count: c.kvDim)
                e.valueBias = b.slice(offset: c.qDim + c.kvDim, count: c.kvDim)
            }
        } else {
            wq = try loader.matrix(p + "attn_q.weight", rows: c.qDim, cols: c.dim)
            wk = try loader.matrix(p + "attn_k.weight", rows: c.kvDim, cols: c.dim)
            wv = try loader.matrix(p + "attn_v.weight", rows: c.kvDim, cols: c.dim)
            try bias("attn_q", .query)
            try bias("attn_k", .key)
            try bias("attn_v", .value)
        }
        try bias("attn_output", .output)
        let wo = try loader.matrix(p + "attn_output.weight", rows: c.dim, cols: c.qDim)
        let hidden = c.hiddenDim
        let w1, w3: WeightMatrix
        if !a.feedForward.isGated {
            w1 = WeightMatrix.empty(cols: c.dim)
            w3 = try loader.matrix(p + "ffn_up.weight", rows: hidden, cols: c.dim)
        } else if loader.has(p + "ffn_gate.weight") {
            w1 = try loader.matrix(p + "ffn_gate.weight", rows: hidden, cols: c.dim)
            w3 = try loader.matrix(p + "ffn_up.weight", rows: hidden, cols: c.dim)
        } else {
            let gateUp = try loader.matrix(p + "ffn_up.weight", rows: 2 * hidden, cols: c.dim)
            w1 = gateUp.rows(0..<hidden)
            w3 = gateUp.rows(hidden..<2 * hidden)
        }
        try bias("ffn_up", .up)
        try bias("ffn_down", .down)
        let w2 = try loader.matrix(p + "ffn_down.weight", rows: c.dim, cols: hidden)
        if a.norm == .layer {
            e.attentionNormBias = try loader.vector(p + "attn_norm.bias", count: c.dim)
            e.ffnNormBias = try loader.vector(p + "ffn_norm.bias", count: c.dim)
        }
        if a.postNorms {
            e.postAttentionNorm = try loader.vector(p + "post_attention_norm.weight", count: c.dim)
            e.postFFNNorm = try loader.vector(p + "post_ffw_norm.weight", count: c.dim)
        }
        return LayerWeights(attentionNorm: try loader.vector(p + "attn_norm.weight", count: c.dim), wq: wq, wk: wk, wv: wv,
                            wo: wo, ffnNorm: try loader.vector(p + "ffn_norm.weight", count: c.dim),
                            w1: w1, w2: w2, w3: w3, extras: e)
    }

    /// Which projections of layer 0 carry a bias and which matrices are fused: the rest of the
    /// architecture, read from the tensor names (ModelWeights checks every layer agrees).
    static func tensorChoices(of gguf: GGUFFile, into arch: inout Architecture) {
        let p = "blk.0."
        let has = { (name: String) in gguf.tensorIfPresent(p + name) != nil }
        arch.fusedQKV = has("attn_qkv.weight")
        arch.fusedGateUp = arch.feedForward.isGated && !has("ffn_gate.weight")
        var biases: Set<Architecture.Bias> = []
        if arch.fusedQKV {
            if has("attn_qkv.bias") { biases.formUnion([.query, .key, .value]) }
        } else {
            for (name, bias) in [("attn_q", Architecture.Bias.query), ("attn_k", .key), ("attn_v", .value)] where has(name + ".bias") {
                biases.insert(bias)
            }
        }
        for (name, bias) in [("attn_output", Architecture.Bias.output), ("ffn_up", .up), ("ffn_down", .down)] where has(name + ".bias") {
            biases.insert(bias)
        }
        arch.biases = biases
    }
}

/// Reads tensors of a GGUF file by name, checking their shapes, and remembers which it read so
/// that a tensor nobody reads is refused rather than ignored.
final class TensorLoader {
    let gguf: GGUFFile
    private(set) var used: Set<String> = []

    init(_ gguf: GGUFFile) { self.gguf = gguf }

    func has(_ name: String) -> Bool { gguf.tensorIfPresent(name) != nil }

    private func info(_ name: String) throws(CheckpointError) -> GGUFTensorInfo {
        used.insert(name)
        return try gguf.tensor(name)
    }

    /// A vector of `count` F32 values (norm gains and biases).
    func vector(_ name: String, count: Int) throws(CheckpointError) -> FloatView {
        let t = try info(name)
        guard t.dimensions == [count] else { throw gguf.error("tensor '\(name)' has dimensions \(t.dimensions), expected [\(count)]") }
        guard t.type == .f32 else { throw gguf.error("tensor '\(name)' is \(t.type.name); Quill reads norm weights and biases stored as F32") }
        try gguf.requireReadable(t)
        return gguf.file.floats(at: t.dataOffset, count: count)
    }

    /// A (rows, cols) matrix: ggml lists dimensions innermost first, so it is stored as [cols, rows].
    func matrix(_ name: String, rows: Int, cols: Int) throws(CheckpointError) -> WeightMatrix {
        let t = try info(name)
        guard t.dimensions == [cols, rows] else {
            throw gguf.error("tensor '\(name)' has dimensions \(t.dimensions), expected [\(cols), \(rows)]")
        }
        return try GGUFModel.weightMatrix(t, rows: rows, cols: cols, in: gguf)
    }

    /// Marks a tensor read elsewhere (RoPE factors) as used.
    func markUsed(_ name: String) { used.insert(name) }
}

extension WeightMatrix {
    /// Rows `range` of the matrix as a view of the same storage: a fused matrix (QKV, gate/up)
    /// split into its parts without copying, since every storage keeps rows back to back.
    func rows(_ range: Range<Int>) -> WeightMatrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "row range outside the matrix")
        let n = range.count
        switch storage {
        case .float32(let view):
            return WeightMatrix(rows: n, cols: cols, storage: .float32(view.slice(offset: range.lowerBound * cols, count: n * cols)))
        case .q8(let values, let scales, let groupSize):
            let groups = cols / groupSize
            return WeightMatrix(rows: n, cols: cols, storage: .q8(
                values: values.slice(offset: range.lowerBound * cols, count: n * cols),
                scales: scales.slice(offset: range.lowerBound * groups, count: n * groups), groupSize: groupSize))
        case .ggml(let type, let bytes):
            let rowBytes = type.rowBytes(count: cols)
            return WeightMatrix(rows: n, cols: cols, storage: .ggml(type, bytes.slice(offset: range.lowerBound * rowBytes, count: n * rowBytes)))
        }
    }

    /// A matrix with no rows: the gate of a feed-forward block that has none.
    static func empty(cols: Int) -> WeightMatrix {
        WeightMatrix(rows: 0, cols: cols, storage: .float32(FloatView(FloatBuffer(count: 0))))
    }
}
