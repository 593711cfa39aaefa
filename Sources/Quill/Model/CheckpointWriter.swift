import Foundation

/// Writes llama2.c checkpoints: float32 (versions 0 and 1) or int8 Q8_0 (version 2).
/// Used by `quill quantize` and by tests that need checkpoints of any shape.
public enum CheckpointWriter {
    /// Supplies the float32 values of one tensor: (name, layer) → values, row-major (out, in).
    public typealias TensorSource = (TensorName, Int) throws -> [Float]

    /// Writes `config` with tensors from `source` to `path` in `format`.
    /// Version 0 has no field for the RoPE tables' contents; they are written as zeros
    /// (Quill recomputes RoPE and never reads them).
    public static func write(
        config c: ModelConfig, format: CheckpointFormat, to path: String, source: TensorSource
    ) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw CheckpointError(path: path, problem: "cannot create file")
        }
        defer { try? handle.close() }
        try write(config: c, format: format, to: handle, source: source)
    }

    /// Writes `config` with tensors from `source` to the open file `handle`, from its current offset.
    public static func write(
        config c: ModelConfig, format: CheckpointFormat, to handle: FileHandle, source: TensorSource
    ) throws {
        func put(_ data: Data) throws { try handle.write(contentsOf: data) }
        func floats(_ values: [Float]) -> Data {
            values.withUnsafeBufferPointer { Data(buffer: $0) }
        }
        func ints(_ values: [Int32]) -> Data { values.withUnsafeBufferPointer { Data(buffer: $0) } }
        let l = c.layerCount
        let fields = [c.dim, c.hiddenDim, c.layerCount, c.headCount, c.kvHeadCount, c.vocabSize, c.contextLength]
        let layered: [TensorName] = [.wq, .wk, .wv, .wo, .w1, .w2, .w3]
        var matrices: [(TensorName, Int)] = [(.tokenEmbedding, 0)]
        for name in layered { for layer in 0..<l { matrices.append((name, layer)) } }
        if !c.sharedClassifier { matrices.append((.classifier, 0)) }
        func norms() throws -> Data {
            var data = Data()
            for layer in 0..<l { data += floats(try source(.attentionNorm, layer)) }
            for layer in 0..<l { data += floats(try source(.ffnNorm, layer)) }
            data += floats(try source(.finalNorm, 0))
            return data
        }
        func versionedHeader(version: Int32, groupSize: Int32?) -> Data {
            var header = Data()
            header += withUnsafeBytes(of: Checkpoint.magic.littleEndian) { Data($0) }
            header += ints([version] + fields.map { Int32($0) })
            header.append(c.sharedClassifier ? 1 : 0)
            if let groupSize { header += ints([groupSize]) }
            header += Data(count: Checkpoint.versionedHeaderSize - header.count)
            return header
        }

        switch format {
        case .version0:
            var header = fields.map { Int32($0) }
            if !c.sharedClassifier { header[5] = -header[5] }
            try put(ints(header))
            try put(floats(try source(.tokenEmbedding, 0)))
            for layer in 0..<l { try put(floats(try source(.attentionNorm, layer))) }
            for name in [TensorName.wq, .wk, .wv, .wo] {
                for layer in 0..<l { try put(floats(try source(name, layer))) }
            }
            for layer in 0..<l { try put(floats(try source(.ffnNorm, layer))) }
            for name in [TensorName.w1, .w2, .w3] {
                for layer in 0..<l { try put(floats(try source(name, layer))) }
            }
            try put(floats(try source(.finalNorm, 0)))
            try put(Data(count: 2 * c.contextLength * (c.headSize / 2) * 4))
            if !c.sharedClassifier { try put(floats(try source(.classifier, 0))) }
        case .version1:
            try put(versionedHeader(version: 1, groupSize: nil))
            try put(try norms())
            for (name, layer) in matrices { try put(floats(try source(name, layer))) }
        case .version2(let groupSize):
            try put(versionedHeader(version: 2, groupSize: Int32(groupSize)))
            try put(try norms())
            // All int8 values first, then all scales (see README, "Checkpoint formats").
            var scales: [Float] = []
            for (name, layer) in matrices {
                let (values, groupScales) = quantizeQ8(try source(name, layer), groupSize: groupSize)
                try put(values.withUnsafeBufferPointer { Data(buffer: $0) })
                scales += groupScales
            }
            try put(floats(scales))
        }
    }

    /// Symmetric int8 quantization in groups: scale = max|x| / 127, q = round(x / scale).
    public static func quantizeQ8(_ values: [Float], groupSize: Int) -> (values: [Int8], scales: [Float]) {
        precondition(values.count % groupSize == 0, "tensor size must be a multiple of the group size")
        var quantized = [Int8](repeating: 0, count: values.count)
        var scales = [Float](repeating: 0, count: values.count / groupSize)
        for group in 0..<scales.count {
            let range = group * groupSize..<(group + 1) * groupSize
            var largest: Float = 0
            for i in range { largest = max(largest, abs(values[i])) }
            let scale = largest / 127
            scales[group] = scale
            let inverse: Float = scale > 0 ? 1 / scale : 0
            for i in range { quantized[i] = Int8((values[i] * inverse).rounded()) }
        }
        return (quantized, scales)
    }
}
