import CQuillKernels

/// Input rows as the streaming products on quantized GGUF blocks see them (`ggml_dot.h`): int8
/// values in blocks of 32, one float32 scale per block. For tests and accuracy checks, which
/// compare the products with a reference computed from the same activations.
public enum GGMLActivations {
    /// The int8 values (`x.count`) and block scales (`x.count / 32`) of `x`, whose count must be a
    /// multiple of 32: scale = max|x| / 127 per block (NaN for a block holding a NaN or an
    /// infinity), value = x · (1 / scale) rounded to nearest even (0 for a zero scale).
    public static func quantize(_ x: [Float]) -> (values: [Int8], scales: [Float]) {
        precondition(x.count % 32 == 0, "activations are quantized in blocks of 32, got \(x.count) values")
        let k = x.count
        let bytes = ggml_activation_row_bytes(Int32(k))
        let row = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
        defer { row.deallocate() }
        var values = [Int8](repeating: 0, count: k), scales = [Float](repeating: 0, count: k / 32)
        x.withUnsafeBufferPointer { input in
            guard let base = input.baseAddress else { return }
            ggml_quantize_activations(base, Int32(k), row)
            values.withUnsafeMutableBufferPointer { q in
                scales.withUnsafeMutableBufferPointer { s in ggml_activation_values(row, Int32(k), q.baseAddress!, s.baseAddress!) }
            }
        }
        return (values, scales)
    }
}

extension Kernels {
    /// Y[:, rowRange] of Y (n, W.rows) = X (n, W.cols) · Wᵀ by the streaming product of GGUF
    /// block weights alone, for one range of weight rows as a worker's chunk would ask it (the
    /// rest of Y stays zero). For tests of chunk ranges; allocates.
    static func ggmlStreamingProduct(_ w: WeightMatrix, input x: [Float], rows n: Int, rowRange: Range<Int>) -> [Float] {
        guard case .ggml(let type, let bytes) = w.storage else { preconditionFailure("GGUF block weights expected") }
        precondition(x.count == n * w.cols && rowRange.lowerBound >= 0 && rowRange.upperBound <= w.rows, "product sizes")
        precondition(fastKernel(type, cols: w.cols) >= 0, "\(type.name) × \(w.cols) has no streaming kernel on blocks")
        let scratch = MatmulScratch(maxRows: n, maxCols: w.cols)
        let input = FloatBuffer(x), y = FloatBuffer(count: n * w.rows)
        for b in 0..<n {
            ggml_quantize_activations(input.pointer + b * w.cols, Int32(w.cols),
                                      scratch.ggmlActivations + b * scratch.ggmlActivationStride)
        }
        let status = ggml_matmul_fast(Int32(type.rawValue), bytes.pointer, Int32(w.cols), input.pointer, scratch.ggmlActivations,
                                      scratch.ggmlActivationStride, Int32(n), Int32(rowRange.lowerBound),
                                      Int32(rowRange.upperBound), y.pointer, Int32(w.rows))
        precondition(status == 0, "ggml_matmul_fast refused \(type.name) × \(w.cols)")
        return y.array()
    }
}
