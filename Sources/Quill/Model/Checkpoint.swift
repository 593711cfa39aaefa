import QuillKernels

/// The llama2.c checkpoint formats Quill reads (see README "Checkpoint formats").
public enum CheckpointFormat: Equatable, Sendable, CustomStringConvertible {
    /// Legacy: a 7 × int32 header, float32 weights, no magic.
    case version0
    /// 256-byte header with magic "ak42", float32 weights.
    case version1
    /// 256-byte header with magic "ak42", int8 weights in groups with float32 scales (Q8_0).
    case version2(groupSize: Int)

    public var version: Int {
        switch self {
        case .version0: 0
        case .version1: 1
        case .version2: 2
        }
    }

    public var description: String {
        switch self {
        case .version0: "llama2.c version 0 (float32, legacy header)"
        case .version1: "llama2.c version 1 (float32)"
        case .version2(let groupSize): "llama2.c version 2 (int8 Q8_0, group size \(groupSize))"
        }
    }
}

/// A loaded checkpoint: its configuration and its weights, which are views into the
/// read-only memory mapping of the file (nothing is copied).
public struct Checkpoint: Sendable {
    public static let magic: UInt32 = 0x616b_3432  // "ak42"
    static let versionedHeaderSize = 256
    static let legacyHeaderSize = 28

    public let path: String
    public let format: CheckpointFormat
    public let config: ModelConfig
    /// Size of the file in bytes.
    public let byteCount: Int
    /// The weights, as views into the mapping.
    public let weights: ModelWeights
    let file: MappedFile

    /// llama2.c's run.c uses these; its files have no field for them.
    public static let normEpsilon: Float = 1e-5
    public static let ropeTheta: Double = 10000

    public var tokenEmbedding: WeightMatrix { weights.tokenEmbedding }
    public var layers: [LayerWeights] { weights.layers }
    public var finalNorm: FloatView { weights.finalNorm }
    public var classifier: WeightMatrix { weights.classifier }

    /// Maps and validates the checkpoint at `path`.
    public init(path: String) throws(CheckpointError) {
        try self.init(file: try MappedFile.checkpoint(path: path))
    }

    /// Validates a checkpoint held in memory (`bytes`), named `path` in messages: the same
    /// checks as a file, for fuzzing.
    public init(bytes: [UInt8], path: String) throws(CheckpointError) {
        try self.init(file: try MappedFile.checkpoint(bytes: bytes, path: path))
    }

    init(file: MappedFile) throws(CheckpointError) {
        let path = file.path
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        guard file.byteCount >= Checkpoint.legacyHeaderSize else {
            throw fail("file is \(groupedDigits(file.byteCount)) bytes, too short for a checkpoint header")
        }

        // Format detection: "ak42" starts a versioned header; otherwise the first int32 must be a
        // plausible `dim` of the legacy header, and anything else is an unknown file type.
        let format: CheckpointFormat
        var fields: [Int]
        let sharedFlag: Bool?
        if file.uint32(at: 0) == Checkpoint.magic {
            guard file.byteCount >= Checkpoint.versionedHeaderSize else {
                throw fail("file is \(groupedDigits(file.byteCount)) bytes, too short for its 256-byte header")
            }
            let version = Int(file.int32(at: 4))
            fields = (0..<7).map { Int(file.int32(at: 8 + 4 * $0)) }
            sharedFlag = file.bytes(at: 36, count: 1)[0] != 0
            switch version {
            case 1: format = .version1
            case 2:
                let groupSize = Int(file.int32(at: 37))
                guard groupSize > 0 else { throw fail("group size must be positive, got \(groupSize)") }
                format = .version2(groupSize: groupSize)
            default:
                throw fail("unsupported checkpoint version \(version) (Quill reads versions 0, 1 and 2)")
            }
        } else {
            let first = file.int32(at: 0)
            guard first > 0 && first <= 1 << 20 else {
                let raw = file.bytes(at: 0, count: 4)
                let text = raw.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
                    ? " ('" + String(decoding: raw, as: UTF8.self) + "')" : ""
                let hex = String(file.uint32(at: 0), radix: 16)
                throw fail("unrecognised magic 0x\(hex)\(text): not a llama2.c checkpoint "
                           + "(expected magic 'ak42' or a legacy header starting with dim)")
            }
            format = .version0
            fields = (0..<7).map { Int(file.int32(at: 4 * $0)) }
            sharedFlag = nil
        }

        // A legacy header says "separate classifier" with a negative vocab size.
        var vocab = fields[5]
        let shared: Bool
        if let sharedFlag {
            shared = sharedFlag
        } else {
            shared = vocab > 0
            vocab = abs(vocab)
        }
        let config = ModelConfig(dim: fields[0], hiddenDim: fields[1], layerCount: fields[2],
                                 headCount: fields[3], kvHeadCount: fields[4], vocabSize: vocab,
                                 contextLength: fields[6], sharedClassifier: shared,
                                 normEpsilon: Checkpoint.normEpsilon, ropeTheta: Checkpoint.ropeTheta)
        try Checkpoint.validate(config, format: format, path: path)
        var layout = try CheckpointLayout(config: config, format: format, path: path)
        if case .version2(let groupSize) = format, layout.byteCount == file.byteCount,
           Checkpoint.looksInterleaved(file, config: config, groupSize: groupSize) {
            layout = try CheckpointLayout(config: config, format: format, path: path, order: .interleaved)
        }
        guard layout.byteCount == file.byteCount else {
            throw fail("file is \(groupedDigits(file.byteCount)) bytes but its header (dim \(config.dim), "
                       + "\(config.layerCount) layers, vocab \(config.vocabSize)) needs \(groupedDigits(layout.byteCount))")
        }

        self.file = file
        self.path = path
        self.format = format
        self.config = config
        self.byteCount = file.byteCount
        let tensors = layout.tensors(in: file)
        let embedding = tensors.matrix(.tokenEmbedding, layer: 0)
        let layers = (0..<config.layerCount).map { l in
            LayerWeights(
                attentionNorm: tensors.vector(.attentionNorm, layer: l),
                wq: tensors.matrix(.wq, layer: l), wk: tensors.matrix(.wk, layer: l),
                wv: tensors.matrix(.wv, layer: l), wo: tensors.matrix(.wo, layer: l),
                ffnNorm: tensors.vector(.ffnNorm, layer: l),
                w1: tensors.matrix(.w1, layer: l), w2: tensors.matrix(.w2, layer: l),
                w3: tensors.matrix(.w3, layer: l))
        }
        weights = try ModelWeights(
            config: config, tokenEmbedding: embedding, layers: layers, finalNorm: tensors.vector(.finalNorm, layer: 0),
            classifier: shared ? embedding : tensors.matrix(.classifier, layer: 0), source: path)
        // The small tensors are checked now; the large float32 ones are checked only if the
        // logits ever come out non-finite (`firstNonFiniteWeight`), which costs nothing on the
        // normal path.
        if let bad = weights.firstNonFiniteWeight(includingLargeFloatTensors: false) { throw fail(bad) }
    }

    /// Both Q8_0 layouts have the same size. In llama2.c's own (interleaved) one, the bytes after
    /// the embedding's int8 values are its scales: small non-negative floats. In the values-first
    /// layout they are wq's int8 values, which read as such floats by chance with probability
    /// far below 1e-6 over 16 of them.
    static func looksInterleaved(_ file: MappedFile, config c: ModelConfig, groupSize: Int) -> Bool {
        let start = versionedHeaderSize + (2 * c.layerCount + 1) * c.dim * 4 + c.vocabSize * c.dim
        let count = min(16, c.vocabSize * c.dim / groupSize)
        guard start + count * 4 <= file.byteCount else { return false }
        let scales = file.floats(at: start, count: count).array
        return scales.allSatisfy { $0.isFinite && $0 >= 0 && $0 < 1e3 && ($0 == 0 || $0 > 1e-12) } && scales.contains { $0 > 0 }
    }

    static func validate(_ c: ModelConfig, format: CheckpointFormat, path: String) throws(CheckpointError) {
        func fail(_ problem: String) -> CheckpointError { CheckpointError(path: path, problem: problem) }
        let positive: [(String, Int)] = [
            ("dim", c.dim), ("hidden_dim", c.hiddenDim), ("n_layers", c.layerCount), ("n_heads", c.headCount),
            ("n_kv_heads", c.kvHeadCount), ("vocab_size", c.vocabSize), ("seq_len", c.contextLength),
        ]
        for (name, value) in positive where value <= 0 {
            throw fail("header field \(name) must be positive, got \(value)")
        }
        // No model has a context near this; a larger seq_len is a corrupt or hostile header.
        guard c.contextLength <= ModelConfig.maximumContextLength else {
            throw fail("header field seq_len is \(groupedDigits(c.contextLength)), beyond the largest context Quill "
                       + "accepts (\(groupedDigits(ModelConfig.maximumContextLength)))")
        }
        guard c.dim % c.headCount == 0 else {
            throw fail("dim \(c.dim) is not divisible by n_heads \(c.headCount)")
        }
        guard c.headCount % c.kvHeadCount == 0 else {
            throw fail("n_heads \(c.headCount) is not divisible by n_kv_heads \(c.kvHeadCount)")
        }
        guard c.headSize % 2 == 0 else {
            throw fail("head size \(c.headSize) (dim \(c.dim) / n_heads \(c.headCount)) must be even for RoPE")
        }
        if case .version2(let groupSize) = format {
            guard c.dim % groupSize == 0 && c.hiddenDim % groupSize == 0 else {
                throw fail("group size \(groupSize) does not divide dim \(c.dim) and hidden_dim \(c.hiddenDim)")
            }
        }
    }
}
