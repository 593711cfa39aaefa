import CQuillKernels
import Dispatch

/// Scratch for int8 matrix products: the activations quantized per group (as llama.cpp does
/// for Q8_0), so the inner loop is an int8 × int8 dot product. Owned by the caller and
/// allocated once.
public final class QuantizedScratch: @unchecked Sendable {
    let values: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>
    let capacity: Int
    /// Threads that split the rows of one product.
    public let workers: Int

    public init(maxRows: Int, maxCols: Int, workers: Int) {
        capacity = maxRows * maxCols
        values = .allocate(capacity: capacity)
        scales = .allocate(capacity: capacity)
        self.workers = max(1, workers)
    }

    deinit {
        values.deallocate()
        scales.deallocate()
    }
}

/// The name of the int8 dot-product path chosen for this CPU ("avx512vnni", "avx2", "portable").
public var quantizedKernelName: String { String(cString: q8_kernel_name()) }

/// Selects the int8 path by name ("portable", "avx2", "avx512vnni", "auto"); false when this
/// CPU cannot run it. For tests and benchmarks that compare the paths.
@discardableResult
public func forceQuantizedKernel(_ name: String) -> Bool { q8_force_kernel(name) != 0 }

/// Matrix products on Q8_0 weights: int8 values with one float32 scale per group.
enum QuantizedKernels {
    /// Y (batch, rows) = X (batch, cols) · Wᵀ with X quantized to int8 per group first.
    static func matmul(
        values: UnsafePointer<Int8>, scales: UnsafePointer<Float>, groupSize: Int,
        rows: Int, cols: Int, input: UnsafePointer<Float>, batch: Int, output: UnsafeMutablePointer<Float>,
        scratch: QuantizedScratch
    ) {
        precondition(batch * cols <= scratch.capacity, "quantized scratch too small")
        for b in 0..<batch {
            q8_quantize(input + b * cols, Int32(cols), Int32(groupSize),
                        scratch.values + b * cols, scratch.scales + b * (cols / groupSize))
        }
        let xq = UnsafePointer(scratch.values), xs = UnsafePointer(scratch.scales)
        // Enough rows per worker to amortise waking it (a wake-up costs microseconds).
        let workers = rows * cols >= 1 << 18 ? scratch.workers : 1
        if workers == 1 {
            q8_matmul(values, scales, xq, xs, Int32(batch), Int32(rows), Int32(cols), Int32(groupSize), 0, Int32(rows), output)
            return
        }
        // Workers write disjoint rows of the output; the pointers outlive the call.
        struct Operands: @unchecked Sendable {
            let w: UnsafePointer<Int8>, ws: UnsafePointer<Float>, x: UnsafePointer<Int8>, xs: UnsafePointer<Float>
            let y: UnsafeMutablePointer<Float>
        }
        let o = Operands(w: values, ws: scales, x: xq, xs: xs, y: output)
        let chunk = (rows + workers - 1) / workers
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let begin = worker * chunk, end = min(rows, begin + chunk)
            if begin < end {
                q8_matmul(o.w, o.ws, o.x, o.xs, Int32(batch), Int32(rows), Int32(cols), Int32(groupSize),
                          Int32(begin), Int32(end), o.y)
            }
        }
    }
}
