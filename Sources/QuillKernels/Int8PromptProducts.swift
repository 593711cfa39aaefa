import CQuillKernels

// The int8 prompt products (gemm_int8.h): how to switch them and what int8 form of the input they
// use, for tests and benchmarks. `Kernels.fusedMatmul` takes them for prompt blocks on GGUF Q8_0,
// Q4_0, Q5_0, Q4_K, Q5_K and Q6_K weights when the CPU has AVX-512 VNNI.
extension Kernels {
    /// Whether prompt blocks on GGUF Q8_0, Q4_0, Q5_0 and K-type weights use the int8 products
    /// (AVX-512 VNNI, with the blocked products on); false: the float32 blocked products or sgemm.
    public static var int8PromptProductsEnabled: Bool { gemm_int8_available() != 0 }

    /// Switches the int8 prompt products off or back on (on only if the CPU has AVX-512 VNNI and
    /// the blocked products are on); off, those weights take the float32 blocked products. Returns
    /// the previous setting.
    @discardableResult
    public static func setInt8PromptProducts(enabled: Bool) -> Bool { gemm_int8_force(enabled ? 1 : 0) != 0 }

    /// The int8 form the int8 prompt products give an input row (`row.count` a multiple of 32):
    /// per block of 32, `scales[j]` = max|x| / 127 (NaN if the block holds a NaN or an infinity;
    /// below the normal range rounded up if needed so that |values| ≤ 127) and `values` =
    /// x · (1 / scale) rounded half to even (x / scale if 1 / scale overflows; 0 in a NaN block),
    /// so x ≈ values · scale.
    public static func int8PromptForm(of row: [Float]) -> (values: [Int8], scales: [Float]) {
        precondition(row.count % 32 == 0, "the int8 form takes blocks of 32 values, got \(row.count)")
        var values = [Int8](repeating: 0, count: row.count)
        var scales = [Float](repeating: 0, count: row.count / 32)
        row.withUnsafeBufferPointer { x in
            values.withUnsafeMutableBufferPointer { q in
                scales.withUnsafeMutableBufferPointer { s in
                    // x (count), q (count), s (count / 32): the sizes gemm_int8_quantize_row writes.
                    guard let xp = x.baseAddress, let qp = q.baseAddress, let sp = s.baseAddress else { return }
                    gemm_int8_quantize_row(xp, Int32(row.count), qp, sp)
                }
            }
        }
        return (values, scales)
    }
}
