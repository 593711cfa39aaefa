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
            throw CheckpointError(path: checkpoint.path, problem: "--group-size \(groupSize) does not divide dim \(c.dim) and hidden_dim \(c.hiddenDim)")
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
