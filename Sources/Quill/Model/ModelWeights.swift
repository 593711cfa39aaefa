import QuillKernels

/// The tensors of a Llama-family model, named as llama2.c names them (`gguf` gives llama.cpp's
/// names). Their shapes come from one table, `ModelConfig.shape(of:)`, which every reader and
/// writer uses.
public enum TensorName: String, CaseIterable, Sendable {
    case tokenEmbedding = "token_embedding", attentionNorm = "rms_att", wq, wk, wv, wo, ffnNorm = "rms_ffn",
         w1, w2, w3, finalNorm = "rms_final", ropeTables = "freq_cis", classifier = "wcls"

    /// Whether the tensor exists once per layer.
    public var isPerLayer: Bool {
        switch self {
        case .attentionNorm, .wq, .wk, .wv, .wo, .ffnNorm, .w1, .w2, .w3: true
        case .tokenEmbedding, .finalNorm, .ropeTables, .classifier: false
        }
    }

    /// Whether the tensor is a vector of norm weights (small: checked for NaN at load).
    public var isNorm: Bool { self == .attentionNorm || self == .ffnNorm || self == .finalNorm }
}

extension ModelConfig {
    /// The shape (rows = outputs, cols = inputs) of one tensor, per layer for layered ones: the
    /// table every reader and writer uses. Norms are one row. `.ropeTables` is llama2.c version
    /// 0's stored RoPE table (cos and sin halves: 2 × contextLength rows of headSize / 2).
    public func shape(of name: TensorName) -> (rows: Int, cols: Int) {
        switch name {
        case .tokenEmbedding, .classifier: (vocabSize, dim)
        case .attentionNorm, .ffnNorm, .finalNorm: (1, dim)
        case .wq: (headCount * headSize, dim)
        case .wk, .wv: (kvHeadCount * headSize, dim)
        case .wo: (dim, headCount * headSize)
        // A block without a gate (GELU, ReLU) has an empty gate matrix: w3 is its only input projection.
        case .w1: (architecture.feedForward.isGated ? hiddenDim : 0, dim)
        case .w3: (hiddenDim, dim)
        case .w2: (dim, hiddenDim)
        case .ropeTables: (2 * contextLength, headSize / 2)
        }
    }
}

/// The weights of one transformer layer.
public struct LayerWeights: Sendable {
    public let attentionNorm: FloatView  // (dim)
    public let wq: WeightMatrix          // (heads · headSize, dim)
    public let wk: WeightMatrix          // (kvDim, dim)
    public let wv: WeightMatrix          // (kvDim, dim)
    public let wo: WeightMatrix          // (dim, heads · headSize)
    public let ffnNorm: FloatView        // (dim)
    public let w1: WeightMatrix          // gate (hiddenDim, dim)
    public let w2: WeightMatrix          // down (dim, hiddenDim)
    public let w3: WeightMatrix          // up (hiddenDim, dim)
    /// What other architectures add to a Llama layer; all nil for Llama.
    public let extras: LayerExtras

    public init(attentionNorm: FloatView, wq: WeightMatrix, wk: WeightMatrix, wv: WeightMatrix, wo: WeightMatrix,
                ffnNorm: FloatView, w1: WeightMatrix, w2: WeightMatrix, w3: WeightMatrix, extras: LayerExtras = .init()) {
        self.extras = extras
        self.attentionNorm = attentionNorm
        self.wq = wq
        self.wk = wk
        self.wv = wv
        self.wo = wo
        self.ffnNorm = ffnNorm
        self.w1 = w1
        self.w2 = w2
        self.w3 = w3
    }
}

/// The vectors of a layer beyond Llama's: norm biases (LayerNorm), post-norm gains (Gemma 2)
/// and projection biases, each present exactly when the model's `Architecture` says so.
public struct LayerExtras: Sendable {
    public var attentionNormBias: FloatView?  // (dim)
    public var ffnNormBias: FloatView?        // (dim)
    public var postAttentionNorm: FloatView?  // (dim)
    public var postFFNNorm: FloatView?        // (dim)
    public var queryBias: FloatView?          // (qDim)
    public var keyBias: FloatView?            // (kvDim)
    public var valueBias: FloatView?          // (kvDim)
    public var outputBias: FloatView?         // (dim)
    public var upBias: FloatView?             // (hiddenDim)
    public var downBias: FloatView?           // (dim)

    public init() {}

    /// The bias after projection `bias`.
    public subscript(bias: Architecture.Bias) -> FloatView? {
        get {
            switch bias {
            case .query: queryBias
            case .key: keyBias
            case .value: valueBias
            case .output: outputBias
            case .up: upBias
            case .down: downBias
            }
        }
        set {
            switch bias {
            case .query: queryBias = newValue
            case .key: keyBias = newValue
            case .value: valueBias = newValue
            case .output: outputBias = newValue
            case .up: upBias = newValue
            case .down: downBias = newValue
            }
        }
    }
}

/// What the forward pass runs on, whatever file it came from: the hyperparameters and the
/// weights, as views into a mapped file or owned buffers. A format's reader builds one; the
/// initialiser checks every tensor's shape against `ModelConfig.shape(of:)`.
public struct ModelWeights: Sendable {
    public let config: ModelConfig
    public let tokenEmbedding: WeightMatrix  // (vocab, dim)
    public let layers: [LayerWeights]
    public let finalNorm: FloatView          // (dim)
    public let classifier: WeightMatrix      // (vocab, dim); the embedding when shared
    /// The final norm's bias (LayerNorm only).
    public let finalNormBias: FloatView?     // (dim)
    /// Learned absolute positions (`Architecture.Positions.learned` only).
    public let positionEmbedding: WeightMatrix?  // (contextLength, dim)
    /// Where the weights came from (a path), for messages.
    public let source: String

    public init(config: ModelConfig, tokenEmbedding: WeightMatrix, layers: [LayerWeights], finalNorm: FloatView,
                classifier: WeightMatrix, finalNormBias: FloatView? = nil, positionEmbedding: WeightMatrix? = nil,
                source: String) throws(CheckpointError) {
        let a = config.architecture
        // Every extra vector exists exactly when the architecture uses it, with its length.
        func checkVector(_ view: FloatView?, _ what: String, needed: Bool, count: Int) throws(CheckpointError) {
            if needed != (view != nil) {
                throw CheckpointError(path: source, problem: needed ? "\(what) is missing" : "\(what) is present but the model does not use it")
            }
            if let view, view.count != count {
                throw CheckpointError(path: source, problem: "\(what) has \(view.count) values, expected \(count)")
            }
        }
        if a.positions == .sinusoidal && config.dim % 2 != 0 {
            throw CheckpointError(path: source, problem: "sinusoidal positions need an even dim, got \(config.dim)")
        }
        if a.norm == .layer && a.postNorms {
            throw CheckpointError(path: source, problem: "post-norms with LayerNorm would need bias vectors Quill does not hold")
        }
        try checkVector(finalNormBias, "the final norm's bias", needed: a.norm == .layer, count: config.dim)
        if (positionEmbedding != nil) != (a.positions == .learned) {
            throw CheckpointError(path: source, problem: "learned position embeddings are \(positionEmbedding == nil ? "missing" : "present but unused")")
        }
        if let p = positionEmbedding, p.rows != config.contextLength || p.cols != config.dim {
            throw CheckpointError(path: source, problem: "position embeddings are \(p.rows) × \(p.cols), expected \(config.contextLength) × \(config.dim)")
        }
        for (l, layer) in layers.enumerated() {
            let e = layer.extras
            try checkVector(e.attentionNormBias, "layer \(l)'s attention norm bias", needed: a.norm == .layer, count: config.dim)
            try checkVector(e.ffnNormBias, "layer \(l)'s feed-forward norm bias", needed: a.norm == .layer, count: config.dim)
            try checkVector(e.postAttentionNorm, "layer \(l)'s post-attention norm", needed: a.postNorms, count: config.dim)
            try checkVector(e.postFFNNorm, "layer \(l)'s post-feed-forward norm", needed: a.postNorms, count: config.dim)
            for bias in Architecture.Bias.allCases {
                try checkVector(e[bias], "layer \(l)'s \(bias.rawValue) bias", needed: a.biases.contains(bias),
                                count: config.biasWidth(bias))
            }
        }
        func check(_ name: TensorName, _ layer: Int?, rows: Int, cols: Int) throws(CheckpointError) {
            let expected = config.shape(of: name)
            guard expected.rows == rows && expected.cols == cols else {
                throw CheckpointError(path: source, problem: "tensor \(name.rawValue)\(layer.map { " of layer \($0)" } ?? "") is "
                                      + "\(rows) × \(cols) but the model's hyperparameters need \(expected.rows) × \(expected.cols)")
            }
        }
        guard layers.count == config.layerCount else {
            throw CheckpointError(path: source, problem: "\(layers.count) layers of weights for \(config.layerCount) layers")
        }
        try check(.tokenEmbedding, nil, rows: tokenEmbedding.rows, cols: tokenEmbedding.cols)
        try check(.classifier, nil, rows: classifier.rows, cols: classifier.cols)
        try check(.finalNorm, nil, rows: 1, cols: finalNorm.count)
        for (l, layer) in layers.enumerated() {
            try check(.attentionNorm, l, rows: 1, cols: layer.attentionNorm.count)
            try check(.ffnNorm, l, rows: 1, cols: layer.ffnNorm.count)
            for (name, matrix) in [(TensorName.wq, layer.wq), (.wk, layer.wk), (.wv, layer.wv), (.wo, layer.wo),
                                   (.w1, layer.w1), (.w2, layer.w2), (.w3, layer.w3)] {
                try check(name, l, rows: matrix.rows, cols: matrix.cols)
            }
        }
        self.config = config
        self.tokenEmbedding = tokenEmbedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.classifier = classifier
        self.finalNormBias = finalNormBias
        self.positionEmbedding = positionEmbedding
        self.source = source
    }

    /// The float32 values of one tensor (dequantized when stored as int8), row-major.
    public func floatValues(_ name: TensorName, layer: Int) -> [Float] {
        func values(_ w: WeightMatrix) -> [Float] {
            if case .float32(let view) = w.storage { return view.array }
            return (0..<w.rows).flatMap { w.rowValues($0) }
        }
        switch name {
        case .tokenEmbedding: return values(tokenEmbedding)
        case .classifier: return values(classifier)
        case .attentionNorm: return layers[layer].attentionNorm.array
        case .ffnNorm: return layers[layer].ffnNorm.array
        case .finalNorm: return finalNorm.array
        case .wq: return values(layers[layer].wq)
        case .wk: return values(layers[layer].wk)
        case .wv: return values(layers[layer].wv)
        case .wo: return values(layers[layer].wo)
        case .w1: return values(layers[layer].w1)
        case .w2: return values(layers[layer].w2)
        case .w3: return values(layers[layer].w3)
        case .ropeTables: return []
        }
    }
}

extension WeightMatrix {
    /// The storage type's name: "F32", "Q8_0".
    public var storageName: String {
        switch storage {
        case .float32: "F32"
        case .q8: "Q8_0"
        case .ggml(let type, _): type.name
        }
    }
}

extension ModelWeights {
    /// The storage types of the weight matrices, most common first ("Q8_0", "Q4_K+Q6_K").
    public var storageSummary: String {
        var counts: [String: Int] = [:]
        let matrices = [tokenEmbedding, classifier] + layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.w1, $0.w2, $0.w3] }
        for matrix in matrices where matrix.rows > 0 { counts[matrix.storageName, default: 0] += 1 }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key).joined(separator: "+")
    }
}
