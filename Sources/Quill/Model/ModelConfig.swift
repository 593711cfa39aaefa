import Foundation
import QuillKernels

/// Every hyperparameter the forward pass uses: the kernels take these values, none is a kernel
/// default. A format's reader fills them from its header or metadata (llama2.c files have no
/// field for the norm epsilon and RoPE base; their reader supplies llama2.c's own values, with
/// no RoPE scaling and adjacent pairs).
public struct ModelConfig: Equatable, Sendable {
    /// Width of the residual stream.
    public var dim: Int
    /// Width of the feed-forward hidden layer.
    public var hiddenDim: Int
    /// Number of transformer layers.
    public var layerCount: Int
    /// Number of query heads.
    public var headCount: Int
    /// Number of key/value heads (fewer than headCount for grouped-query attention).
    public var kvHeadCount: Int
    /// Number of tokens in the vocabulary.
    public var vocabSize: Int
    /// Context window: the most positions the model (and its KV cache) can hold.
    public var contextLength: Int
    /// Whether the output classifier reuses the token embedding matrix.
    public var sharedClassifier: Bool
    /// ε of RMSNorm: x / sqrt(mean(x²) + ε).
    public var normEpsilon: Float
    /// The RoPE base θ: unscaled, pair i of a head turns by position · θ^(−2i / headSize).
    public var ropeTheta: Double
    /// How positions are scaled before they turn the pairs (see `ropeFrequencies`).
    public var ropeScaling: RoPEScaling
    /// Per-pair divisors of the frequencies (headSize / 2 values, finite and positive), as
    /// Llama 3.x's RoPE uses them (llama.cpp's `rope_freqs.weight`); nil: all 1.
    public var ropeFrequencyFactors: [Float]?
    /// Which elements of a head form RoPE pair i.
    public var ropePairing: RoPEPairing
    /// Width of one attention head (Gemma's need not be dim / headCount).
    public var headSize: Int
    /// The design choices the forward pass follows (norms, feed-forward, positions, biases, ...).
    public var architecture: Architecture

    /// The defaults of the RoPE parameters (no scaling, no factors, adjacent pairs), of the head
    /// size (dim / headCount) and of the architecture (Llama) are what llama2.c files and every
    /// model before them mean.
    public init(dim: Int, hiddenDim: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
                vocabSize: Int, contextLength: Int, sharedClassifier: Bool, normEpsilon: Float, ropeTheta: Double,
                ropeScaling: RoPEScaling = .none, ropeFrequencyFactors: [Float]? = nil, ropePairing: RoPEPairing = .adjacent,
                headSize: Int? = nil, architecture: Architecture = .llama) {
        self.dim = dim
        self.hiddenDim = hiddenDim
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.sharedClassifier = sharedClassifier
        self.normEpsilon = normEpsilon
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.ropeFrequencyFactors = ropeFrequencyFactors
        self.ropePairing = ropePairing
        // A header with no heads is refused by its reader after this; 0 keeps the value defined.
        self.headSize = headSize ?? (headCount > 0 ? dim / headCount : 0)
        self.architecture = architecture
    }

    /// The largest context a header may declare (2^24 positions): beyond any real model, so a
    /// larger value is taken as a corrupt header rather than an allocation to attempt.
    public static let maximumContextLength = 1 << 24

    /// Width of the queries (and the attention output) of all heads together.
    public var qDim: Int { headCount * headSize }
    /// Width of the keys and values of all KV heads together.
    public var kvDim: Int { kvHeadCount * headSize }
    /// The factor of q · k in attention.
    public var attentionScale: Float { architecture.attentionScale ?? 1 / Float(headSize).squareRoot() }

    /// The angular frequency of each RoPE pair (headSize / 2), radians per position: pair i
    /// at position p turns by p · θ^(−2i / headSize) / (linear factor · frequency factor i), the
    /// angle llama.cpp's `ggml_rope_ext` gives with freq_scale = 1 / factor and freq_factors.
    public var ropeFrequencies: [Double] {
        let half = headSize / 2
        precondition(ropeFrequencyFactors.map { $0.count == half } ?? true, "one RoPE frequency factor a pair")
        let scale: Double
        switch ropeScaling {
        case .none: scale = 1
        case .linear(let factor): scale = 1 / factor
        }
        return (0..<half).map { i in
            let base = pow(ropeTheta, -Double(2 * i) / Double(headSize))
            return scale * base / Double(ropeFrequencyFactors?[i] ?? 1)
        }
    }

    /// Number of weights (norms included), with a shared classifier counted once.
    public var parameterCount: Int {
        var count = 0
        for name in TensorName.allCases where name != .ropeTables && !(name == .classifier && sharedClassifier) {
            let (rows, cols) = shape(of: name)
            count += rows * cols * (name.isPerLayer ? layerCount : 1)
        }
        // What the architecture adds to Llama's tensors: biases, post-norms, positions.
        let a = architecture
        if a.norm == .layer { count += (2 * layerCount + 1) * dim }  // the biases beside the gains
        if a.postNorms { count += 2 * layerCount * dim }
        for bias in a.biases { count += layerCount * biasWidth(bias) }
        if a.positions == .learned { count += contextLength * dim }
        return count
    }
}

extension ModelConfig {
    /// The length of the bias vector after projection `bias`.
    public func biasWidth(_ bias: Architecture.Bias) -> Int {
        switch bias {
        case .query: qDim
        case .key, .value: kvDim
        case .output, .down: dim
        case .up: hiddenDim
        }
    }
}

/// How RoPE scales positions for a context longer than the model was trained on.
public enum RoPEScaling: Equatable, Sendable {
    /// Positions turn the pairs as they are.
    case none
    /// Every position is divided by `factor` (> 0): "linear" or position interpolation,
    /// llama.cpp's `rope.scaling.type = linear` with freq_scale = 1 / factor.
    case linear(factor: Double)
}
