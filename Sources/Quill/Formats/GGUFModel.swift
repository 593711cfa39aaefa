import QuillKernels

/// Reads a model from a GGUF file: the architecture's hyperparameters from its metadata, its
/// design choices from its name, metadata and tensors (GGUFArchitectures.swift), its tensors by
/// llama.cpp's names with their shapes checked. RoPE runs as llama.cpp runs it: linear scaling
/// (`rope.scaling.type`/`.factor`, or the older `rope.scale_linear`) and per-pair frequency
/// factors (`rope_freqs.weight`, as Llama 3.x files carry). Anything the file holds that Quill's
/// forward pass would not honour (YaRN or LongRoPE scaling, experts, partial rotary dimensions,
/// windows llama.cpp would drop, unknown tensors) is refused by name rather than ignored. Weight
/// tensors may be F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K or Q6_K, mixed.
public enum GGUFModel {
    /// Architectures Quill runs, with llama.cpp's meaning of each (see GGUFArchitectures.swift):
    /// `llama` pairs adjacent RoPE elements (llama.cpp's converter undoes Hugging Face's Q/K
    /// permutation), as llama2.c does; the others pair halves.
    public static let architectures = ["llama", "qwen2", "phi3", "gemma", "gemma2", "gpt2"]

    /// llama.cpp's default RoPE base when the file does not say.
    static let defaultRoPETheta = 10000.0

    /// The configuration and weights of `gguf`.
    public static func weights(from gguf: GGUFFile) throws(CheckpointError) -> ModelWeights {
        let architecture = try gguf.string("general.architecture")
        guard architectures.contains(architecture) else {
            throw gguf.error("architecture '\(architecture)' is not one Quill runs (it runs: \(architectures.joined(separator: ", ")))")
        }
        let config = try configuration(of: gguf, architecture: architecture)
        let a = config.architecture
        let loader = TensorLoader(gguf)
        // The factors were read into the configuration.
        if config.ropeFrequencyFactors != nil { loader.markUsed(ropeFactorsTensor) }
        let embedding = try loader.matrix("token_embd.weight", rows: config.vocabSize, cols: config.dim)
        let positions = a.positions == .learned
            ? try loader.matrix("position_embd.weight", rows: config.contextLength, cols: config.dim) : nil
        var layers: [LayerWeights] = []
        for l in 0..<config.layerCount { layers.append(try readLayer(l, config: config, loader: loader)) }
        let finalNorm = try loader.vector("output_norm.weight", count: config.dim)
        let finalNormBias = a.norm == .layer ? try loader.vector("output_norm.bias", count: config.dim) : nil
        let classifier = config.sharedClassifier ? embedding
            : try loader.matrix("output.weight", rows: config.vocabSize, cols: config.dim)
        if let extra = gguf.tensors.first(where: { !loader.used.contains($0.name) }) {
            let hint = extra.name.hasSuffix(".bias") ? " (a bias)" : ""
            throw gguf.error("tensor '\(extra.name)'\(hint) is not part of a \(architecture) model as Quill runs it; "
                             + "refusing rather than ignoring it")
        }
        return try ModelWeights(config: config, tokenEmbedding: embedding, layers: layers, finalNorm: finalNorm,
                                classifier: classifier, finalNormBias: finalNormBias, positionEmbedding: positions,
                                source: gguf.path)
    }

    /// The hyperparameters under `ARCH.` keys, with every value the forward pass does not
    /// implement refused by key.
    static func configuration(of gguf: GGUFFile, architecture a: String) throws(CheckpointError) -> ModelConfig {
        func count(_ key: String) throws(CheckpointError) -> Int {
            let value = try gguf.integer(key)
            guard value > 0 else { throw gguf.error("metadata '\(key)' must be positive, got \(value)") }
            return value
        }
        let dim = try count("\(a).embedding_length")
        let heads = try count("\(a).attention.head_count")
        let kvHeads = try gguf.integerIfPresent("\(a).attention.head_count_kv") ?? heads
        guard kvHeads > 0 && heads % kvHeads == 0 else {
            throw gguf.error("'\(a).attention.head_count' \(heads) is not a multiple of head_count_kv \(kvHeads)")
        }
        // The head size is attention.key_length when given (Gemma's is not dim / heads).
        let headSize: Int
        if let keyLength = try gguf.integerIfPresent("\(a).attention.key_length") {
            guard keyLength > 0 && keyLength % 2 == 0 && keyLength <= dim else {
                throw gguf.error("metadata '\(a).attention.key_length' is \(keyLength); Quill needs an even head size up to embedding_length")
            }
            headSize = keyLength
        } else {
            guard dim % heads == 0 && (dim / heads) % 2 == 0 else {
                throw gguf.error("embedding_length \(dim) / head_count \(heads) is not an even head size")
            }
            headSize = dim / heads
        }
        for key in ["\(a).attention.value_length", "\(a).rope.dimension_count"] {
            if let value = try gguf.integerIfPresent(key), value != headSize {
                throw gguf.error("metadata '\(key)' is \(value) but the head size is \(headSize); Quill does not run such models yet")
            }
        }
        let scaling = try ropeScaling(of: gguf, architecture: a)
        if let factor = try gguf.float32IfPresent("\(a).rope.scaling.attn_factor"), factor != 1 {
            // llama.cpp multiplies every cosine and sine by it, whatever the scaling type.
            throw gguf.error("metadata '\(a).rope.scaling.attn_factor' is \(factor); Quill does not scale the RoPE rotation's magnitude")
        }
        let frequencyFactors = try ropeFrequencyFactors(of: gguf, pairs: headSize / 2)
        if let experts = try gguf.integerIfPresent("\(a).expert_count"), experts > 0 {
            throw gguf.error("metadata '\(a).expert_count' is \(experts): mixture-of-experts models are not supported")
        }
        let context = try count("\(a).context_length")
        guard context <= ModelConfig.maximumContextLength else {
            throw gguf.error("metadata '\(a).context_length' is \(context), beyond the largest context Quill accepts")
        }
        let epsilon = try gguf.float32(epsilonKey(of: a))
        guard epsilon.isFinite && epsilon > 0 else { throw gguf.error("'\(epsilonKey(of: a))' must be positive, got \(epsilon)") }
        let theta = try gguf.float32IfPresent("\(a).rope.freq_base").map(Double.init) ?? defaultRoPETheta
        guard theta.isFinite && theta > 1 else { throw gguf.error("rope.freq_base must be above 1, got \(theta)") }
        let embedding = try gguf.tensor("token_embd.weight")
        guard embedding.dimensions.count == 2 else { throw gguf.error("tensor 'token_embd.weight' is not a matrix") }
        let vocab = embedding.dimensions[1]
        if let declared = try gguf.integerIfPresent("\(a).vocab_size"), declared != vocab {
            throw gguf.error("metadata '\(a).vocab_size' is \(declared) but token_embd.weight has \(vocab) rows")
        }
        let layers = try count("\(a).block_count")
        var arch = try architecture(of: gguf, a, dim: dim, heads: heads, headSize: headSize, layers: layers, context: context)
        tensorChoices(of: gguf, into: &arch)
        if arch.positions != .rope && (scaling != .none || frequencyFactors != nil) {
            throw gguf.error("the file has RoPE scaling but \(a) has no rotary positions")
        }
        return ModelConfig(dim: dim, hiddenDim: try count("\(a).feed_forward_length"), layerCount: layers,
                           headCount: heads, kvHeadCount: kvHeads, vocabSize: vocab, contextLength: context,
                           sharedClassifier: gguf.tensorIfPresent("output.weight") == nil,
                           normEpsilon: epsilon, ropeTheta: theta, ropeScaling: scaling,
                           ropeFrequencyFactors: frequencyFactors, ropePairing: ropePairing(of: a),
                           headSize: headSize, architecture: arch)
    }

    /// llama.cpp's name for the per-pair RoPE frequency factors.
    static let ropeFactorsTensor = "rope_freqs.weight"

    /// The RoPE scaling as llama.cpp reads it: the type defaults to linear; the factor is
    /// `rope.scaling.factor`, else the older `rope.scale_linear`, and 0 means none; the angles
    /// use freq_scale = 1 / factor. A type other than none or linear is refused, and so is any
    /// metadata llama.cpp would resolve by silently dropping a value (two different factors, a
    /// factor under type none).
    static func ropeScaling(of gguf: GGUFFile, architecture a: String) throws(CheckpointError) -> RoPEScaling {
        let typeKey = "\(a).rope.scaling.type"
        let type = try gguf.stringIfPresent(typeKey)
        if let type, type != "none" && type != "linear" {
            throw gguf.error("metadata '\(typeKey)' is '\(type)'; Quill implements only linear RoPE scaling "
                             + "(and per-pair factors in \(ropeFactorsTensor))")
        }
        var factor: (key: String, value: Float)?
        for key in ["\(a).rope.scaling.factor", "\(a).rope.scale_linear"] {
            guard let value = try gguf.float32IfPresent(key) else { continue }
            guard value.isFinite && value >= 0 else {
                throw gguf.error("metadata '\(key)' is \(value); a RoPE scaling factor must be positive (0 means none)")
            }
            if let first = factor, first.value != value {
                throw gguf.error("metadata '\(key)' is \(value) but '\(first.key)' is \(first.value); refusing to pick one")
            }
            factor = factor ?? (key, value)
        }
        guard let factor, factor.value != 0 && factor.value != 1 else { return .none }
        guard type != "none" else {
            // llama.cpp would ignore the factor; which one the file means is a guess.
            throw gguf.error("metadata '\(factor.key)' is \(factor.value) but '\(typeKey)' is 'none'; refusing to guess which holds")
        }
        return .linear(factor: Double(factor.value))
    }

    /// The divisors of the pairs' RoPE frequencies in `rope_freqs.weight`, when the file has
    /// them: F32, one per pair, finite and positive (llama.cpp divides pair i's angle by value i).
    static func ropeFrequencyFactors(of gguf: GGUFFile, pairs: Int) throws(CheckpointError) -> [Float]? {
        guard let t = gguf.tensorIfPresent(ropeFactorsTensor) else { return nil }
        guard t.dimensions == [pairs] else {
            throw gguf.error("tensor '\(t.name)' has dimensions \(t.dimensions), expected [\(pairs)] (one RoPE frequency factor a pair)")
        }
        guard t.type == .f32 else {
            throw gguf.error("tensor '\(t.name)' is \(t.type.name); Quill reads RoPE frequency factors stored as F32")
        }
        let values = gguf.file.floats(at: t.dataOffset, count: pairs).array  // (headSize / 2)
        if let bad = values.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            throw gguf.error("tensor '\(t.name)' value \(bad) is \(values[bad]); RoPE frequency factors must be finite and positive")
        }
        return values
    }

    /// A weight matrix over a tensor's bytes in the mapping.
    static func weightMatrix(_ t: GGUFTensorInfo, rows: Int, cols: Int, in gguf: GGUFFile) throws(CheckpointError) -> WeightMatrix {
        try gguf.requireReadable(t)
        guard let type = t.type.decoded else { throw gguf.error("tensor '\(t.name)' is \(t.type.name), which Quill does not read") }
        if type == .f32 {
            return WeightMatrix(rows: rows, cols: cols, storage: .float32(gguf.file.floats(at: t.dataOffset, count: rows * cols)))
        }
        // Quantized and 16-bit rows stay as the file's blocks; the products decode them.
        return WeightMatrix(rows: rows, cols: cols, storage: .ggml(type, gguf.file.byteView(at: t.dataOffset, count: t.byteCount)))
    }
}
