import Foundation
import QuillKernels

/// Writes an int8 (Q8_0, llama2.c version 2) copy of a float32 checkpoint.
public enum Quantizer {
    /// 64, or the largest smaller power of two dividing both dim and hidden_dim (stories260K's
    /// hidden_dim 172 allows only 4).
    public static func defaultGroupSize(for config: ModelConfig) -> Int {
        var size = 64
        while size > 1 && (config.dim % size != 0 || config.hiddenDim % size != 0) { size /= 2 }
        return size
    }

    /// Writes the int8 copy to `path`. `shouldStop` is checked before each tensor; when it
    /// returns true the write stops with `CancellationError` (the partial file is the caller's).
    public static func quantize(
        _ checkpoint: Checkpoint, groupSize: Int, to path: String, shouldStop: () -> Bool = { false }
    ) throws {
        let c = checkpoint.config
        guard checkpoint.format.version != 2 else {
            throw CheckpointError(path: checkpoint.path, problem: "is already quantized (int8 Q8_0)")
        }
        guard c.dim % groupSize == 0 && c.hiddenDim % groupSize == 0 else {
            throw CheckpointError(path: checkpoint.path, problem: "a group size of \(groupSize) does not divide dim \(c.dim) and hidden_dim \(c.hiddenDim)")
        }
        try CheckpointWriter.write(config: c, format: .version2(groupSize: groupSize), to: path) { name, layer in
            if shouldStop() { throw CancellationError() }
            let values = checkpoint.weights.floatValues(name, layer: layer)
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw CheckpointError(path: checkpoint.path, problem: "tensor \(name) of layer \(layer) has a non-finite value at index \(bad); it cannot be quantized")
            }
            return values
        }
    }
}

// MARK: - GGUF output

extension Quantizer {
    /// What writing `weights` as `fileType` involves, for the command to say before it starts.
    public struct GGUFJob: Sendable {
        /// The storage type of every tensor, with the fallbacks for rows that are not whole blocks.
        public let plan: GGUFStoragePlan
        /// Storage types of the input that are decoded and encoded again as another type
        /// ("Q4_0 → Q8_0"): the rounding of both quantizations adds up.
        public let requantized: [String]
        /// Storage types of the input copied block for block (already the type asked for).
        public let copied: [String]
    }

    /// The plan for writing `weights` as `fileType`. Only types Quill encodes can be asked for.
    public static func ggufJob(_ weights: ModelWeights, fileType: GGUFFileType) -> GGUFJob {
        precondition(fileType.isEncoded, "Quill does not encode \(fileType.rawValue)")
        let plan = fileType.plan(for: weights.config)
        var requantized: [String] = []
        var copied: [String] = []
        let matrixParts = GGUFModelTensor.tensors(of: weights.config).flatMap { tensor in
            tensor.parts.compactMap { part -> (TensorName, GGUFModelTensor)? in
                if case .weight(let name) = part, !name.isNorm { return (name, tensor) }
                return nil
            }
        }
        for (name, tensor) in matrixParts {
            let matrix = weights.matrix(name, layer: tensor.layer)
            let target = plan.type(of: tensor)
            if case .float32 = matrix.storage { continue }
            if case .ggml(let type, _) = matrix.storage, type == target {
                if !copied.contains(type.name) { copied.append(type.name) }
                continue
            }
            let change = "\(matrix.storageDescription) → \(target.name)"
            if !requantized.contains(change) { requantized.append(change) }
        }
        return GGUFJob(plan: plan, requantized: requantized, copied: copied)
    }

    /// The tokenizer keys for the GGUF copy of `model`: the GGUF input's own `tokenizer.*`
    /// keys when no `.model` file was given (`tokenizerPath` nil), else the vocabulary of the
    /// SentencePiece model at `model.tokenizer.path` (`-z`, or the one found beside a llama2.c
    /// checkpoint). `model` must have been loaded with its tokenizer.
    /// Also returns warnings to show (what the vocabulary cannot carry).
    public static func tokenizerMetadata(
        for model: LoadedModel, tokenizerPath: String?
    ) throws -> (entries: [GGUFMetadataEntry], warnings: [String]) {
        if tokenizerPath == nil, let gguf = model.gguf { return (GGUFTokenizerMetadata.copied(from: gguf), []) }
        let tokenizer = try model.requireTokenizer()
        return try GGUFTokenizerMetadata.fromSentencePiece(modelBytes: try Tokenizer.readModelFile(tokenizer.path),
                                                           name: tokenizer.path)
    }

    /// Writes `weights` as a GGUF file at `path` (an existing, empty file) following `job`, with
    /// `tokenizer`'s keys, named `name`. Each tensor is read, checked and encoded on its own and
    /// written in pieces of at most 4 Mi values, so memory holds one tensor, never the model.
    /// Refused: a non-finite weight, and a value beyond what the storage type holds (F16's
    /// 65504; a Q8_0/Q4_0/Q5_0 block whose F16 scale would overflow). `shouldStop` is checked
    /// before each tensor (`CancellationError`; the partial file is the caller's).
    public static func writeGGUF(
        _ weights: ModelWeights, job: GGUFJob, tokenizer: [GGUFMetadataEntry], name: String, to path: String,
        shouldStop: () -> Bool = { false }
    ) throws {
        try GGUFModelWriter.requireWritable(weights.config, source: weights.source)
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CheckpointError(path: path, problem: "cannot open for writing")
        }
        defer { try? handle.close() }
        try handle.truncate(atOffset: 0)
        let config = weights.config
        let metadata = try GGUFModelWriter.metadata(config: config, name: name, fileType: job.plan.fileType.llamaFileType) + tokenizer
        try GGUFModelWriter.write(config: config, metadata: metadata, types: job.plan.type, to: handle, path: path) {
            tensor, type, emit in
            if shouldStop() { throw CancellationError() }
            // A fused tensor is its parts' rows one after another: each part is written on its own.
            for part in tensor.parts {
                let layer = tensor.layer
                let label = "tensor \(tensor.name) (\(part.description)\(part.isPerLayer ? " of layer \(layer)" : ""))"
                let cols = config.shape(of: part).cols
                let values = weights.values(of: part, layer: layer)
                var largest: Float = 0
                for (index, value) in values.enumerated() {
                    guard value.isFinite else {
                        throw CheckpointError(path: weights.source, problem: "\(label) has a non-finite value (\(value)) at index \(index); it cannot be quantized")
                    }
                    largest = max(largest, abs(value))
                }
                if case .weight(let name) = part, !name.isNorm,
                   case .ggml(let stored, let bytes) = weights.matrix(name, layer: layer).storage, stored == type {
                    // Already in the type asked for (and checked finite above): the blocks are copied unchanged.
                    let rowBytes = type.rowBytes(count: cols)
                    let rowsPerPiece = max(1, (4 << 20) / rowBytes)
                    var offset = 0
                    while offset < bytes.count {
                        let count = min(rowsPerPiece * rowBytes, bytes.count - offset)
                        try emit(bytes.bytes(offset: offset, count: count))
                        offset += count
                    }
                    continue
                }
                if let limit = largestEncodable(type), largest > limit {
                    throw CheckpointError(path: weights.source, problem: "\(label) has a value of magnitude \(largest), beyond what \(type.name) "
                                          + "stores (at most \(limit)); choose a type with more range (BF16 or F32)")
                }
                let rowsPerPiece = max(1, (4 << 20) / cols)
                var start = 0
                while start < values.count {
                    let end = min(values.count, start + rowsPerPiece * cols)
                    try emit(GGMLQuants.quantize(type, Array(values[start..<end]), rowLength: cols))
                    start = end
                }
            }
        }
        try handle.synchronize()
    }

    /// The largest magnitude `type` stores without an infinite value or scale: F16's largest
    /// finite value, times the largest code for the block types (their scale is an F16).
    static func largestEncodable(_ type: GGMLType) -> Float? {
        let half: Float = 65504
        switch type {
        case .f16: return half
        case .q8_0: return half * 127
        case .q4_0: return half * 8
        case .q5_0: return half * 16
        default: return nil
        }
    }
}

extension ModelWeights {
    /// The weight matrix `name` of layer `layer` (norms are not matrices).
    func matrix(_ name: TensorName, layer: Int) -> WeightMatrix {
        switch name {
        case .tokenEmbedding: tokenEmbedding
        case .classifier: classifier
        case .wq: layers[layer].wq
        case .wk: layers[layer].wk
        case .wv: layers[layer].wv
        case .wo: layers[layer].wo
        case .w1: layers[layer].w1
        case .w2: layers[layer].w2
        case .w3: layers[layer].w3
        case .attentionNorm, .ffnNorm, .finalNorm, .ropeTables: preconditionFailure("\(name.rawValue) is not a matrix")
        }
    }
}

extension WeightMatrix {
    /// The storage for messages: "F32", "Q4_K", "int8 groups of 64 (llama2.c version 2)".
    var storageDescription: String {
        if case .q8(_, _, let groupSize) = storage { return "int8 groups of \(groupSize) (llama2.c version 2)" }
        return storageName
    }
}
