/// The design choices of a decoder-only transformer that Quill's forward pass follows, one
/// value each. `Architecture.llama` is what llama2.c files and llama.cpp's `llama` mean; a
/// format's reader sets the rest from the file. Which bias vectors exist is here too, so the
/// weights can be checked against the description and `quill info` can name every choice.
public struct Architecture: Equatable, Sendable {
    /// How a vector is normalised before (or after) a sublayer.
    public enum Norm: String, Sendable {
        /// x / sqrt(mean(x²) + ε) · w (Gemma's 1 + w is folded into the stored gains, as
        /// llama.cpp's converter stores them).
        case rms = "RMSNorm"
        /// (x − mean) / sqrt(var + ε) · w + b, with a bias vector beside every gain.
        case layer = "LayerNorm"
    }

    /// The feed-forward block's nonlinearity; the gated ones multiply it by a second projection.
    public enum FeedForward: String, Sendable {
        /// silu(gate) ⊙ up.
        case swiglu = "SwiGLU"
        /// gelu_tanh(gate) ⊙ up (Gemma).
        case geglu = "GeGLU (tanh GELU)"
        /// gelu_tanh(up), no gate (GPT-2's gelu_new).
        case gelu = "GELU (tanh)"
        /// max(0, up), no gate.
        case relu = "ReLU"

        /// Whether the block has a gate projection beside the up projection.
        public var isGated: Bool { self == .swiglu || self == .geglu }
    }

    /// Where the norms sit around each sublayer (attention, feed-forward).
    public enum NormPlacement: String, Sendable {
        /// x += f(norm(x)): Llama, GPT-2.
        case pre = "before each sublayer"
        /// x += norm₂(f(norm₁(x))): Gemma 2's `post_attention_norm` and `post_ffw_norm`.
        case preAndPost = "before and after each sublayer"
        /// x = norm(x + f(x)): the original Transformer's post-LN. The final norm still runs
        /// before the classifier.
        case post = "after each residual sum"
    }

    /// How a token learns where it is.
    public enum Positions: String, Sendable {
        /// Rotary embeddings on queries and keys (pairing and frequencies in `ModelConfig`).
        case rope = "RoPE"
        /// A learned vector per position added to the embedding (`position_embd.weight`).
        case learned = "learned absolute"
        /// sin/cos of position · 10000^(−2i/dim) added to the embedding (the original
        /// Transformer's: sin in element 2i, cos in 2i + 1).
        case sinusoidal = "sinusoidal"
        /// None: attention alone (only the causal mask orders the tokens).
        case none = "none"
    }

    /// The projections a bias vector can follow.
    public enum Bias: String, CaseIterable, Sendable {
        case query = "q", key = "k", value = "v", output = "o", up, down
    }

    /// The norm kind of every norm of the model (attention, feed-forward, final, post-norms).
    public var norm: Norm = .rms
    public var normPlacement: NormPlacement = .pre
    /// Whether each layer has a second pair of norm gains (`.preAndPost`).
    public var postNorms: Bool { normPlacement == .preAndPost }
    public var feedForward: FeedForward = .swiglu
    public var positions: Positions = .rope
    /// The projections that add a bias vector.
    public var biases: Set<Bias> = []
    /// Whether the file stores Q, K and V as one matrix (split into three views at load).
    public var fusedQKV = false
    /// Whether the file stores gate and up as one matrix (split into two views at load).
    public var fusedGateUp = false
    /// The factor of q · k; nil: 1 / √headSize.
    public var attentionScale: Float?
    /// Attention scores s become cap · tanh(s / cap) before the softmax (Gemma 2); nil: none.
    public var attentionSoftcap: Float?
    /// The final logits become cap · tanh(logit / cap); nil: none.
    public var finalSoftcap: Float?
    /// The token embedding is multiplied by it (Gemma: √dim); nil: 1.
    public var embeddingScale: Float?
    /// Per layer, how many positions a query sees (itself and the W − 1 before it); nil: the
    /// whole causal prefix. Empty: every layer full.
    public var windows: [Int?] = []

    /// Llama: pre-RMSNorm, SwiGLU, RoPE, no biases, full attention scaled by 1 / √headSize.
    public static let llama = Architecture()

    public init() {}

    /// The window of layer `layer`, nil when it attends to the whole prefix.
    public func window(layer: Int) -> Int? { layer < windows.count ? windows[layer] : nil }
}
