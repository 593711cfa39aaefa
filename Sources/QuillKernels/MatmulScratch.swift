import CQuillKernels
import Foundation

/// Scratch for the matrix products, owned by the caller and allocated once:
/// - the activations quantized per group for Q8_0 weights (as llama.cpp does), so the
///   inner loop of a few-row product is an int8 × int8 dot product;
/// - the activations quantized in blocks of 32 for GGUF block weights (see `ggml_dot.h`),
///   one row of `ggmlActivationStride` bytes per input row;
/// - for prompt blocks, the packed input block and each worker's packed weight stripe
///   (see `gemm_kernels.h`), or without AVX-512 each worker's dequantized int8 rows for sgemm.
public final class MatmulScratch: @unchecked Sendable {
    let values: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>
    let capacity: Int
    let maxRows: Int
    let maxCols: Int
    let workers: Int
    /// Per worker, `dequantizedRows` float rows of weights (calloc'd, like the buffers below,
    /// so pages cost nothing until a prompt block touches them).
    let dequantized: UnsafeMutablePointer<Float>
    /// The packed input block, (maxRows, maxCols) in panels.
    let packedInput: UnsafeMutablePointer<Float>
    /// Per worker, one packed weight stripe (64-byte aligned).
    private let weightBuffers: UnsafeMutableRawPointer
    private let weightBufferFloats: Int
    /// The int8 form of the input block for GGUF block weights (gemm_int8.h), in panels: bytes
    /// for (maxRows, maxCols), calloc'd.
    let int8Input: UnsafeMutableRawPointer
    /// Per worker, one decoded int8 weight stripe (gemm_int8_stripe_bytes(maxCols), 64-byte aligned).
    private let int8Stripes: UnsafeMutableRawPointer
    private let int8StripeBytes: Int
    /// Most weight rows one prefill chunk dequantizes.
    static let dequantizedRows = 256
    /// (maxRows, ggmlActivationStride) bytes: input rows quantized by ggml_quantize_activations
    /// (64-byte aligned rows; pages are touched only when GGUF block weights are used).
    let ggmlActivations: UnsafeMutableRawPointer
    /// Bytes of one quantized input row of `maxCols` values.
    let ggmlActivationStride: Int

    public init(maxRows: Int, maxCols: Int, workers: Int = 1) {
        self.maxRows = maxRows
        self.maxCols = maxCols
        self.workers = max(1, workers)
        capacity = maxRows * maxCols
        values = .allocate(capacity: capacity)
        scales = .allocate(capacity: capacity)
        let floats = self.workers * Self.dequantizedRows * maxCols
        dequantized = calloc(floats, 4)!.bindMemory(to: Float.self, capacity: floats)
        let packed = gemm_packed_input_floats(Int32(maxRows), Int32(maxCols))
        packedInput = calloc(packed, 4)!.bindMemory(to: Float.self, capacity: packed)
        weightBufferFloats = (gemm_weight_buffer_floats() + 15) / 16 * 16
        weightBuffers = UnsafeMutableRawPointer.allocate(byteCount: self.workers * weightBufferFloats * 4, alignment: 64)
        ggmlActivationStride = ggml_activation_row_bytes(Int32(maxCols / 32 * 32))
        ggmlActivations = UnsafeMutableRawPointer.allocate(byteCount: max(1, maxRows * ggmlActivationStride), alignment: 64)
        int8Input = calloc(max(1, gemm_int8_packed_input_bytes(Int32(maxRows), Int32(maxCols))), 1)!
        int8StripeBytes = (gemm_int8_stripe_bytes(Int32(maxCols)) + 63) / 64 * 64
        int8Stripes = UnsafeMutableRawPointer.allocate(byteCount: max(64, self.workers * int8StripeBytes), alignment: 64)
    }

    /// Worker `worker`'s decoded int8 weight stripe.
    func int8Stripe(_ worker: Int) -> UnsafeMutableRawPointer { int8Stripes + worker * int8StripeBytes }

    /// Worker `worker`'s packed weight stripe.
    func weightBuffer(_ worker: Int) -> UnsafeMutablePointer<Float> {
        (weightBuffers + worker * weightBufferFloats * 4).assumingMemoryBound(to: Float.self)
    }

    deinit {
        values.deallocate()
        scales.deallocate()
        free(dequantized)
        free(packedInput)
        weightBuffers.deallocate()
        ggmlActivations.deallocate()
        free(int8Input)
        int8Stripes.deallocate()
    }
}
