import QuillKernels

/// What a GGUF file Quill writes stores its weight matrices as (`quill quantize --type`,
/// `quill bench --type`). One storage type for every matrix (as llama-quantize `--pure` does),
/// or `Q4_K_M`, llama.cpp's mix. Norm weights are always F32, as llama.cpp keeps them.
public enum GGUFFileType: String, CaseIterable, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", q8_0 = "Q8_0", q4_0 = "Q4_0", q5_0 = "Q5_0"
    case q4_K = "Q4_K", q5_K = "Q5_K", q6_K = "Q6_K", q4_K_M = "Q4_K_M"

    /// The names, for usage messages: "F32, F16, …".
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The type named `name` ("q8_0" as well as "Q8_0"), or nil.
    public init?(name: String) { self.init(rawValue: name.uppercased()) }

    /// The storage type of most matrices.
    public var baseType: GGMLType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        case .q5_0: .q5_0
        case .q4_K, .q4_K_M: .q4_K
        case .q5_K: .q5_K
        case .q6_K: .q6_K
        }
    }

    /// Whether Quill can quantize float weights to this type (the K types it only decodes, so
    /// `bench` fills them with random blocks instead).
    public var isEncoded: Bool { self != .q4_K_M && baseType.isEncoded }

    /// llama.cpp's `general.file_type` (`enum llama_ftype`): a single K type is written as its
    /// `_S` variant's number (Q4_K_S 14, Q5_K_S 16), what llama-quantize `--pure` writes.
    public var llamaFileType: UInt32 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q8_0: 7
        case .q5_0: 8
        case .q4_K: 14
        case .q4_K_M: 15
        case .q5_K: 16
        case .q6_K: 18
        case .bf16: 32
        }
    }

    /// llama.cpp's "use more bits" layers of the Q4_K_M mix (`use_more_bits` in
    /// `llama_tensor_get_type`): the first and last eighth of the layers, and every third in between.
    static func usesMoreBits(layer: Int, of layerCount: Int) -> Bool {
        layer < layerCount / 8 || layer >= 7 * layerCount / 8 || (layer - layerCount / 8) % 3 == 2
    }

    /// The type this file type asks for a matrix, before any fallback for its row length.
    /// Q4_K_M follows llama.cpp's `llama_tensor_get_type` for `llama` models: the output
    /// matrix (the embedding when it is shared) Q6_K (Q8_0 when its rows are not whole 256-value
    /// blocks), attn_v and ffn_down Q6_K in the "use more bits" layers, everything else Q4_K.
    public func requestedType(for name: TensorName, layer: Int, config: ModelConfig) -> GGMLType {
        if name.isNorm { return .f32 }
        guard self == .q4_K_M else { return baseType }
        let isOutput = name == .classifier || (name == .tokenEmbedding && config.sharedClassifier)
        if isOutput { return config.shape(of: name).cols % GGMLType.q6_K.blockSize == 0 ? .q6_K : .q8_0 }
        if (name == .wv || name == .w2) && GGUFFileType.usesMoreBits(layer: layer, of: config.layerCount) { return .q6_K }
        return .q4_K
    }

    /// The type a matrix with rows of `rowLength` values is stored as when `type` is asked for:
    /// `type` itself when the rows are whole blocks, else llama.cpp's fallback
    /// (`tensor_type_fallback`): Q4_K → Q5_0, Q6_K → Q8_0, and Q5_K → Q5_0 (llama.cpp takes
    /// Q5_1, which Quill does not read); F16 when those do not fit either or `type` has blocks
    /// of 32 already.
    public static func storedType(_ type: GGMLType, rowLength: Int) -> GGMLType {
        if rowLength % type.blockSize == 0 { return type }
        let smaller: GGMLType
        switch type {
        case .q4_K: smaller = .q5_0
        case .q5_K: smaller = .q5_0
        case .q6_K: smaller = .q8_0
        default: return .f16
        }
        return rowLength % smaller.blockSize == 0 ? smaller : .f16
    }

    /// The storage type of every tensor of a model with `config`, with the fallbacks taken for
    /// rows that are not whole blocks. Vectors are F32, and so are GPT-2's learned positions,
    /// which llama.cpp's converter writes as F32 and llama-quantize never quantizes. A fused
    /// matrix follows the rule of its first part (Q of `attn_qkv`, the gate of Phi-3's `ffn_up`).
    public func plan(for config: ModelConfig) -> GGUFStoragePlan {
        var types: [String: GGMLType] = [:]
        var fallbacks: [GGUFStoragePlan.Fallback] = []
        for tensor in GGUFModelTensor.tensors(of: config) {
            guard !tensor.isVector, case .weight(let name) = tensor.parts[0] else {
                types[tensor.name] = .f32
                continue
            }
            let requested = requestedType(for: name, layer: tensor.layer, config: config)
            let rowLength = tensor.shape(config).cols
            let stored = GGUFFileType.storedType(requested, rowLength: rowLength)
            types[tensor.name] = stored
            if stored != requested {
                fallbacks.append(.init(tensor: tensor.name, rowLength: rowLength, requested: requested, stored: stored))
            }
        }
        return GGUFStoragePlan(fileType: self, types: types, fallbacks: fallbacks)
    }
}

/// The storage type of each tensor of a GGUF file to write, by GGUF tensor name.
public struct GGUFStoragePlan: Sendable {
    /// A matrix whose rows are not whole blocks of the type asked for.
    public struct Fallback: Sendable {
        public let tensor: String
        public let rowLength: Int
        public let requested: GGMLType
        public let stored: GGMLType
    }

    public let fileType: GGUFFileType
    public let types: [String: GGMLType]
    public let fallbacks: [Fallback]

    /// The storage type of a tensor of Llama's table stored on its own (not fused).
    public func type(of name: TensorName, layer: Int) -> GGMLType { types[name.ggufName(layer: layer)!]! }

    /// The storage type of a tensor of the file.
    public func type(of tensor: GGUFModelTensor) -> GGMLType { types[tensor.name]! }

    /// One line per kind of fallback, as `quill quantize` and `bench` print them: "5 tensors
    /// (blk.0.ffn_down.weight, …) have rows of 172 values, not a multiple of Q4_0's 32: stored as F16".
    public var fallbackSummary: [String] {
        var groups: [String: [Fallback]] = [:]
        var order: [String] = []
        for f in fallbacks {
            let key = "\(f.rowLength) \(f.requested.name) \(f.stored.name)"
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(f)
        }
        return order.map { key in
            let group = groups[key]!
            let f = group[0]
            let names = group.count == 1 ? f.tensor : "\(group.count) tensors (\(f.tensor), …)"
            return "\(names): rows of \(f.rowLength) values are not a multiple of \(f.requested.name)'s "
                + "\(f.requested.blockSize); stored as \(f.stored.name), as llama.cpp's llama-quantize does"
        }
    }
}
