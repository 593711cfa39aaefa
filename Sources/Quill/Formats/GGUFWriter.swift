import Foundation
import QuillKernels

/// One tensor as a GGUF file declares it: the writer lays out its data from these.
public struct GGUFTensorDeclaration: Sendable {
    public let name: String
    /// ggml order: `dimensions[0]` is the row length, so a (rows, cols) matrix is `[cols, rows]`.
    public let dimensions: [Int]
    public let type: GGUFTensorType

    public init(name: String, dimensions: [Int], type: GGUFTensorType) {
        self.name = name
        self.dimensions = dimensions
        self.type = type
    }

    /// Bytes of the tensor's data; nil when the type is unknown or the rows are not whole blocks.
    public var byteCount: Int? {
        guard let block = type.blockSize, let bytes = type.bytesPerBlock, let rowLength = dimensions.first,
              rowLength % block == 0 else { return nil }
        return dimensions.reduce(1, *) / block * bytes
    }
}

/// Writes a GGUF file (version 3, little-endian) to an open file: the header, metadata and
/// tensor infos at once, then each tensor's data in declaration order as it is handed over, in
/// as many pieces as the caller likes, so no more than a piece of one tensor is ever held.
/// Tensor data start at multiples of the alignment (`general.alignment` when the metadata gives
/// it, else 32), padded with zeros.
public final class GGUFWriter {
    /// The GGUF version written.
    public static let version: UInt32 = 3

    private let handle: FileHandle
    private let path: String
    private let alignment: Int
    private let tensors: [GGUFTensorDeclaration]
    /// Bytes of each tensor's data.
    private let sizes: [Int]
    /// The tensor being written and the bytes of it written so far.
    private var current = 0
    private var writtenOfCurrent = 0

    /// Writes the header, metadata and tensor infos to `handle` (from its current offset, which
    /// must be the file's start: offsets are counted from there), named `path` in messages.
    public init(handle: FileHandle, path: String, metadata: [GGUFMetadataEntry], tensors: [GGUFTensorDeclaration]) throws {
        self.handle = handle
        self.path = path
        self.tensors = tensors
        var alignment = GGUFFile.defaultAlignment
        if let entry = metadata.first(where: { $0.key == "general.alignment" }) {
            guard case .uint32(let value) = entry.value, value > 0, value & (value - 1) == 0 else {
                throw CheckpointError(path: path, problem: "general.alignment must be a uint32 power of two")
            }
            alignment = Int(value)
        }
        self.alignment = alignment
        var sizes: [Int] = []
        for tensor in tensors {
            guard let size = tensor.byteCount, (1...4).contains(tensor.dimensions.count),
                  tensor.dimensions.allSatisfy({ $0 >= 1 }) else {
                throw CheckpointError(path: path, problem: "tensor \(quoted(tensor.name)) of dimensions \(tensor.dimensions) "
                                      + "cannot be stored as \(tensor.type.name)")
            }
            sizes.append(size)
        }
        self.sizes = sizes

        var header = GGUFEncoder()
        header.uint32(GGUFFile.magic)
        header.uint32(GGUFWriter.version)
        header.uint64(UInt64(tensors.count))
        header.uint64(UInt64(metadata.count))
        for entry in metadata {
            header.string(entry.key)
            header.uint32(entry.value.type.rawValue)
            header.value(entry.value)
        }
        var offset = 0  // from the start of the data section
        for (tensor, size) in zip(tensors, sizes) {
            header.string(tensor.name)
            header.uint32(UInt32(tensor.dimensions.count))
            for dimension in tensor.dimensions { header.uint64(UInt64(dimension)) }
            header.uint32(tensor.type.id)
            header.uint64(UInt64(offset))
            offset += GGUFWriter.padded(size, to: alignment)
        }
        header.bytes += [UInt8](repeating: 0, count: GGUFWriter.padded(header.bytes.count, to: alignment) - header.bytes.count)
        try handle.write(contentsOf: Data(header.bytes))
        try skipFinishedTensors()
    }

    private static func padded(_ count: Int, to alignment: Int) -> Int { (count + alignment - 1) / alignment * alignment }

    /// The declaration of the tensor whose data come next, nil when all are written.
    public var nextTensor: GGUFTensorDeclaration? { current < tensors.count ? tensors[current] : nil }

    /// Appends `bytes` to the data of the current tensor; a tensor is complete (and padded) when
    /// its byte count is reached. A piece may not run past the end of the current tensor.
    public func write(_ bytes: [UInt8]) throws {
        guard current < tensors.count else {
            throw CheckpointError(path: path, problem: "\(bytes.count) bytes of tensor data beyond the last tensor")
        }
        guard bytes.count <= sizes[current] - writtenOfCurrent else {
            throw CheckpointError(path: path, problem: "tensor \(quoted(tensors[current].name)) takes \(sizes[current]) bytes; "
                                  + "got \(writtenOfCurrent + bytes.count)")
        }
        try handle.write(contentsOf: Data(bytes))
        writtenOfCurrent += bytes.count
        try skipFinishedTensors()
    }

    /// Pads each complete tensor to the alignment and moves on (zero-byte tensors cannot exist:
    /// every dimension is at least 1).
    private func skipFinishedTensors() throws {
        while current < tensors.count && writtenOfCurrent == sizes[current] {
            let padding = GGUFWriter.padded(sizes[current], to: alignment) - sizes[current]
            // The last tensor is padded too, as gguf-py does; readers ignore the tail.
            if padding > 0 { try handle.write(contentsOf: Data(count: padding)) }
            current += 1
            writtenOfCurrent = 0
        }
    }

    /// Checks that every tensor's data were written.
    public func finish() throws {
        guard current == tensors.count else {
            throw CheckpointError(path: path, problem: "tensor \(quoted(tensors[current].name)) has \(writtenOfCurrent) of "
                                  + "its \(sizes[current]) bytes; the file is incomplete")
        }
    }
}

/// Little-endian encoding of GGUF's scalars, strings and metadata values.
struct GGUFEncoder {
    var bytes: [UInt8] = []

    mutating func integer<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
    mutating func uint32(_ value: UInt32) { integer(value) }
    mutating func uint64(_ value: UInt64) { integer(value) }
    mutating func string(_ text: String) {
        uint64(UInt64(text.utf8.count))
        bytes += Array(text.utf8)
    }

    /// The value's bytes (its type id is written by the caller, as GGUF puts it before the value).
    mutating func value(_ value: GGUFValue) {
        switch value {
        case .uint8(let v): integer(v)
        case .int8(let v): integer(v)
        case .uint16(let v): integer(v)
        case .int16(let v): integer(v)
        case .uint32(let v): integer(v)
        case .int32(let v): integer(v)
        case .float32(let v): integer(v.bitPattern)
        case .bool(let v): bytes.append(v ? 1 : 0)
        case .string(let v): string(v)
        case .array(let a): array(a)
        case .uint64(let v): integer(v)
        case .int64(let v): integer(v)
        case .float64(let v): integer(v.bitPattern)
        }
    }

    /// An array: element type, count, then the elements (an inner array with its own header).
    mutating func array(_ array: GGUFArray) {
        uint32(array.elementType.rawValue)
        uint64(UInt64(array.count))
        switch array {
        case .uint8(let a): a.forEach { integer($0) }
        case .int8(let a): a.forEach { integer($0) }
        case .uint16(let a): a.forEach { integer($0) }
        case .int16(let a): a.forEach { integer($0) }
        case .uint32(let a): a.forEach { integer($0) }
        case .int32(let a): a.forEach { integer($0) }
        case .float32(let a): a.forEach { integer($0.bitPattern) }
        case .bool(let a): a.forEach { bytes.append($0 ? 1 : 0) }
        case .string(let a): a.forEach { string($0) }
        case .uint64(let a): a.forEach { integer($0) }
        case .int64(let a): a.forEach { integer($0) }
        case .float64(let a): a.forEach { integer($0.bitPattern) }
        case .array(let a): a.forEach { self.array($0) }
        }
    }
}

/// Writes models as GGUF, as llama.cpp names and describes them: the architecture whose
/// choices the model makes (`llama`, `qwen2`, `phi3`, `gemma`, `gemma2`, `gpt2`), its
/// hyperparameters under that architecture's keys, the tensors of `GGUFModelTensor.tensors(of:)`,
/// vectors and learned positions in F32, each matrix in the type `types` gives it. What
/// GGUFArchitectures.swift reads back from such a file is the model written.
public enum GGUFModelWriter {
    /// The llama.cpp architecture that describes `config` completely, or an error naming what
    /// none of them has (the seeds' post-norms, ReLU, sinusoidal or no positions) or what the
    /// architecture's name would fix otherwise (a soft cap, a window pattern, a query scale...).
    /// Anything else written under those keys would run wrongly in Quill and llama.cpp alike.
    @discardableResult
    public static func requireWritable(_ config: ModelConfig, source: String) throws(CheckpointError) -> String {
        let c = config
        var a = c.architecture
        if a.windows.allSatisfy({ $0 == nil }) { a.windows = [] }
        func refuse(_ what: String) -> CheckpointError {
            CheckpointError(path: source, problem: "\(what), which no llama.cpp architecture describes; Quill cannot write it as GGUF")
        }
        if a.normPlacement == .post { throw refuse("puts its norms after each residual sum (post-norm)") }
        if a.feedForward == .relu { throw refuse("has a ReLU feed-forward block") }
        if a.positions == .sinusoidal || a.positions == .none { throw refuse("has \(a.positions.rawValue) positions") }
        let name: String
        switch (a.norm, a.feedForward, a.positions) {
        case (.layer, .gelu, .learned): name = "gpt2"
        case (.rms, .swiglu, .rope): name = c.ropePairing == .adjacent ? "llama" : a.fusedGateUp ? "phi3" : "qwen2"
        case (.rms, .geglu, .rope) where c.ropePairing == .halves: name = a.normPlacement == .preAndPost ? "gemma2" : "gemma"
        default:
            throw refuse("combines \(a.norm.rawValue), \(a.feedForward.rawValue), \(a.positions.rawValue) positions "
                         + "and \(c.ropePairing) RoPE pairs")
        }
        // What GGUFModel reads from a file of that name with this model's tensors and keys.
        var read = Architecture()
        (read.norm, read.feedForward, read.positions) = (a.norm, a.feedForward, a.positions)
        (read.biases, read.fusedQKV, read.fusedGateUp) = (a.biases, a.fusedQKV, a.fusedGateUp)
        switch name {
        case "llama":
            // Mistral's window: one size on every layer, shorter than the context.
            if let w = a.windows.first ?? nil, w < c.contextLength, a.windows == Array(repeating: w, count: c.layerCount) {
                read.windows = a.windows
            }
        case "gemma", "gemma2":
            read.embeddingScale = Float(c.dim).squareRoot()
            guard c.sharedClassifier else { throw refuse("is Gemma with its own classifier (llama.cpp's gemma reuses the embedding)") }
            if name == "gemma2" {
                read.normPlacement = .preAndPost
                // llama.cpp applies its defaults (50, 30) when the keys are absent, so both are written.
                guard let attention = a.attentionSoftcap, let final = a.finalSoftcap else {
                    throw refuse("is Gemma 2 without both soft caps (llama.cpp would apply 50 and 30)")
                }
                (read.attentionSoftcap, read.finalSoftcap) = (attention, final)
                // The window slides on even layers; without the key llama.cpp (and GGUFModel) take 4096.
                let w = a.windows.first.flatMap { $0 } ?? 4096
                read.windows = (0..<c.layerCount).map { $0 % 2 == 0 ? w : nil }
                read.attentionScale = 1 / Float(c.layerCount == 46 ? c.dim / c.headCount : c.headSize).squareRoot()
            }
        default: break
        }
        if a.fusedQKV && !a.biases.isDisjoint(with: [.query, .key, .value]) && !a.biases.isSuperset(of: [.query, .key, .value]) {
            throw refuse("has a fused QKV matrix with biases on only some of Q, K and V")
        }
        let differences = [
            ("norm placement", read.normPlacement != a.normPlacement), ("attention windows", read.windows != a.windows),
            ("attention scale", read.attentionScale != a.attentionScale), ("embedding scale", read.embeddingScale != a.embeddingScale),
            ("soft caps", read.attentionSoftcap != a.attentionSoftcap || read.finalSoftcap != a.finalSoftcap),
        ].filter(\.1).map(\.0)
        guard differences.isEmpty else {
            throw refuse("is a \(name) model except for its \(differences.joined(separator: " and "))")
        }
        return name
    }

    /// The `general.*` and architecture keys of a model with `config`, named `name`, of
    /// llama.cpp's file type `fileType` (`LLAMA_FTYPE`).
    public static func metadata(config c: ModelConfig, name: String, fileType: UInt32) throws(CheckpointError) -> [GGUFMetadataEntry] {
        let a = try requireWritable(c, source: name)
        let arch = c.architecture
        var entries: [(String, GGUFValue)] = [
            ("general.architecture", .string(a)),
            ("general.name", .string(name)),
            ("general.file_type", .uint32(fileType)),
            ("general.quantization_version", .uint32(2)),  // ggml's GGML_QNT_VERSION: the block layouts
            ("general.alignment", .uint32(UInt32(GGUFFile.defaultAlignment))),
            ("\(a).context_length", .uint32(UInt32(c.contextLength))),
            ("\(a).embedding_length", .uint32(UInt32(c.dim))),
            ("\(a).block_count", .uint32(UInt32(c.layerCount))),
            ("\(a).feed_forward_length", .uint32(UInt32(c.hiddenDim))),
            ("\(a).attention.head_count", .uint32(UInt32(c.headCount))),
            ("\(a).attention.head_count_kv", .uint32(UInt32(c.kvHeadCount))),
            (GGUFModel.epsilonKey(of: a), .float32(c.normEpsilon)),
        ]
        // llama.cpp's converter writes the vocabulary size for llama only (the others take it
        // from token_embd's rows).
        if a == "llama" { entries.append(("\(a).vocab_size", .uint32(UInt32(c.vocabSize)))) }
        // The head size, when it is not dim / heads (llama.cpp's gemma converters always write it).
        if c.headSize * c.headCount != c.dim || a.hasPrefix("gemma") {
            entries += [("\(a).attention.key_length", .uint32(UInt32(c.headSize))),
                        ("\(a).attention.value_length", .uint32(UInt32(c.headSize)))]
        }
        if arch.positions == .rope {
            entries += [("\(a).rope.freq_base", .float32(Float(c.ropeTheta))),
                        ("\(a).rope.dimension_count", .uint32(UInt32(c.headSize)))]
            // Scaled RoPE as llama.cpp's converter writes it; the per-pair factors are the
            // `rope_freqs.weight` tensor (see `GGUFModelTensor.tensors(of:)`).
            switch c.ropeScaling {
            case .none: break
            case .linear(let factor):
                entries += [("\(a).rope.scaling.type", .string("linear")), ("\(a).rope.scaling.factor", .float32(Float(factor)))]
            }
        }
        if let window = arch.windows.first(where: { $0 != nil }) ?? nil {
            entries.append(("\(a).attention.sliding_window", .uint32(UInt32(window))))
        }
        if let cap = arch.attentionSoftcap { entries.append(("\(a).attn_logit_softcapping", .float32(cap))) }
        if let cap = arch.finalSoftcap { entries.append(("\(a).final_logit_softcapping", .float32(cap))) }
        return entries.map { GGUFMetadataEntry(key: $0.0, value: $0.1) }
    }

    /// The tensor declarations of a model with `config`, in file order, each matrix of the type
    /// `types` gives it (vectors are F32).
    public static func declarations(config: ModelConfig, types: (GGUFModelTensor) -> GGMLType) -> [GGUFTensorDeclaration] {
        GGUFModelTensor.tensors(of: config).map { tensor in
            let type = tensor.isVector ? GGMLType.f32 : types(tensor)
            return GGUFTensorDeclaration(name: tensor.name, dimensions: tensor.dimensions(config), type: GGUFTensorType(id: UInt32(type.rawValue)))
        }
    }

    /// Writes the model to `handle` (at its start): `metadata` (from `metadata(config:…)` plus
    /// a tokenizer's keys), then each tensor's data, which `data` hands to its `emit` argument in
    /// one or more pieces: (tensor, storage type, emit).
    public static func write(
        config: ModelConfig, metadata: [GGUFMetadataEntry], types: (GGUFModelTensor) -> GGMLType,
        to handle: FileHandle, path: String,
        data: (GGUFModelTensor, GGMLType, ([UInt8]) throws -> Void) throws -> Void
    ) throws {
        try requireWritable(config, source: path)
        let tensors = GGUFModelTensor.tensors(of: config)
        let declarations = declarations(config: config, types: types)
        let writer = try GGUFWriter(handle: handle, path: path, metadata: metadata, tensors: declarations)
        for (tensor, declaration) in zip(tensors, declarations) {
            try data(tensor, declaration.type.decoded!, writer.write)
            guard writer.nextTensor?.name != declaration.name else {
                throw CheckpointError(path: path, problem: "tensor \(quoted(declaration.name)) was not written in full")
            }
        }
        try writer.finish()
    }
}

extension GGUFMetadataEntry {
    /// An entry to write: `key` (UTF-8, at most 65,535 bytes) with `value`.
    public init(_ key: String, _ value: GGUFValue) {
        self.init(key: key, value: value)
    }
}
