import CQuillKernels
import Foundation

/// Scratch for int8 matrix products: the activations quantized per group (as llama.cpp does
/// for Q8_0), so the inner loop is an int8 × int8 dot product. Owned by the caller and
/// allocated once.
public final class QuantizedScratch: @unchecked Sendable {
    let values: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>
    let capacity: Int
    /// Per worker, `dequantizedRows` float rows of weights for prefill blocks (calloc'd, so the
    /// pages cost nothing unless a quantized model processes a prompt).
    let dequantized: UnsafeMutablePointer<Float>
    /// Most weight rows one prefill chunk dequantizes.
    static let dequantizedRows = 256

    public init(maxRows: Int, maxCols: Int, workers: Int = 1) {
        capacity = maxRows * maxCols
        values = .allocate(capacity: capacity)
        scales = .allocate(capacity: capacity)
        let floats = max(1, workers) * Self.dequantizedRows * maxCols
        dequantized = calloc(floats, 4)!.bindMemory(to: Float.self, capacity: floats)
    }

    deinit {
        values.deallocate()
        scales.deallocate()
        free(dequantized)
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
        _ input: UnsafePointer<Float>, rows: Int, cols: Int, groupSize: Int, scratch: QuantizedScratch
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
        batch: Int, rowRange: Range<Int>, output: UnsafeMutablePointer<Float>, scratch: QuantizedScratch
    ) {
        q8_matmul(values, scales, scratch.values, scratch.scales, Int32(batch), Int32(rows), Int32(cols),
                  Int32(groupSize), Int32(rowRange.lowerBound), Int32(rowRange.upperBound), output)
    }
}
