/// Every hyperparameter the forward pass uses: the kernels take these values, none is a kernel
/// default. A format's reader fills them from its header or metadata (llama2.c files have no
/// field for the norm epsilon and RoPE base; their reader supplies llama2.c's own values).
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
    /// The RoPE base θ: pair i of a head turns by position · θ^(−2i / headSize).
    public var ropeTheta: Double

    public init(dim: Int, hiddenDim: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
                vocabSize: Int, contextLength: Int, sharedClassifier: Bool, normEpsilon: Float, ropeTheta: Double) {
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
    }

    /// The largest context a header may declare (2^24 positions): beyond any real model, so a
    /// larger value is taken as a corrupt header rather than an allocation to attempt.
    public static let maximumContextLength = 1 << 24

    /// Width of one attention head.
    public var headSize: Int { dim / headCount }
    /// Width of the keys and values of all KV heads together.
    public var kvDim: Int { dim * kvHeadCount / headCount }

    /// Number of weights (norms included), with a shared classifier counted once.
    public var parameterCount: Int {
        var count = 0
        for name in TensorName.allCases where name != .ropeTables && !(name == .classifier && sharedClassifier) {
            let (rows, cols) = shape(of: name)
            count += rows * cols * (name.isPerLayer ? layerCount : 1)
        }
        return count
    }
}
