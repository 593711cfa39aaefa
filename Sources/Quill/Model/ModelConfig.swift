/// The hyperparameters of a Llama-architecture model, as stored in a checkpoint header.
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

    public init(dim: Int, hiddenDim: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
                vocabSize: Int, contextLength: Int, sharedClassifier: Bool) {
        self.dim = dim
        self.hiddenDim = hiddenDim
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.sharedClassifier = sharedClassifier
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
        let perLayer = 2 * dim + 2 * dim * dim + 2 * kvDim * dim + 3 * dim * hiddenDim
        return vocabSize * dim * (sharedClassifier ? 1 : 2) + layerCount * perLayer + dim
    }
}
