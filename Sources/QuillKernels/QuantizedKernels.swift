import CQuillKernels
import Foundation

/// Scratch for the matrix products, owned by the caller and allocated once:
/// - the activations quantized per group for Q8_0 weights (as llama.cpp does), so the
///   inner loop of a few-row product is an int8 × int8 dot product;
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
    /// Most weight rows one prefill chunk dequantizes.
    static let dequantizedRows = 256

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
    }

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
    }
}

/// The name of the int8 dot-product path chosen for this CPU ("avx512vnni", "vnni256", "avx2", "portable").
public var quantizedKernelName: String { String(cString: q8_kernel_name()) }

/// Selects the int8 path by name ("portable", "avx2", "vnni256", "avx512vnni", "auto"); false when this
/// CPU cannot run it. For tests and benchmarks that compare the paths.
@discardableResult
public func forceQuantizedKernel(_ name: String) -> Bool { q8_force_kernel(name) != 0 }

/// Matrix products on Q8_0 weights: int8 values with one float32 scale per group.
enum QuantizedKernels {
    /// Quantizes the input rows X (rows, cols) into `scratch`, per group of `groupSize`.
    static func quantizeInput(
        _ input: UnsafePointer<Float>, rows: Int, cols: Int, groupSize: Int, scratch: MatmulScratch
    ) {
        precondition(rows * cols <= scratch.capacity, "quantized scratch too small")
        for b in 0..<rows {
            q8_quantize(input + b * cols, Int32(cols), Int32(groupSize),
                        scratch.values + b * cols, scratch.scales + b * (cols / groupSize))
        }
    }

    /// Y[:, rowRange] of Y (batch, rows) = Xq (batch, cols) · Wᵀ, with Xq already in `scratch`.
    static func product(
        values: UnsafePointer<Int8>, scales: UnsafePointer<Float>, groupSize: Int, rows: Int, cols: Int,
        batch: Int, rowRange: Range<Int>, output: UnsafeMutablePointer<Float>, scratch: MatmulScratch
    ) {
        q8_matmul(values, scales, scratch.values, scratch.scales, Int32(batch), Int32(rows), Int32(cols),
                  Int32(groupSize), Int32(rowRange.lowerBound), Int32(rowRange.upperBound), output)
    }
}
