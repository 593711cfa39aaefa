import CBLAS
import Foundation

/// The numeric kernels of the forward pass. Each takes whole buffers plus element offsets and
/// explicit sizes, checks its bounds once, then runs on raw pointers. Nothing here allocates.
public enum Kernels {
    // MARK: Projections

    /// Y (n, W.rows) = X (n, W.cols) · Wᵀ, with X starting at `inputOffset` and Y at
    /// `outputOffset`. One row uses sgemv (memory-bound); several use sgemm, which reads each
    /// weight once for the whole block. Int8 weights need `scratch` for their quantized input.
    public static func matmul(
        _ w: WeightMatrix, input x: FloatBuffer, inputOffset: Int = 0, rows n: Int,
        output y: FloatBuffer, outputOffset: Int = 0, scratch: QuantizedScratch? = nil
    ) {
        precondition(n >= 1, "matmul needs at least one row")
        precondition(inputOffset >= 0 && inputOffset + n * w.cols <= x.count, "matmul input out of bounds")
        precondition(outputOffset >= 0 && outputOffset + n * w.rows <= y.count, "matmul output out of bounds")
        let xp = UnsafePointer(x.pointer + inputOffset)
        let yp = y.pointer + outputOffset
        switch w.storage {
        case .float32(let weights):
            let m = Int32(w.rows), k = Int32(w.cols)
            if n == 1 {
                // W (out, in) · x (in) → y (out)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, m, k, 1, weights.pointer, k, xp, 1, 0, yp, 1)
            } else {
                // X (n, in) · Wᵀ (in, out) → Y (n, out)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), m, k, 1,
                            xp, k, weights.pointer, k, 0, yp, m)
            }
        case .q8(let values, let scales, let groupSize):
            guard let scratch else { preconditionFailure("int8 weights need a QuantizedScratch") }
            QuantizedKernels.matmul(
                values: values.pointer, scales: scales.pointer, groupSize: groupSize,
                rows: w.rows, cols: w.cols, input: xp, batch: n, output: yp, scratch: scratch)
        }
    }

    /// Copies row `row` of `w` (dequantized if needed) into `buffer` at `offset`: the
    /// embedding lookup.
    public static func copyRow(of w: WeightMatrix, row: Int, into buffer: FloatBuffer, at offset: Int) {
        precondition(row >= 0 && row < w.rows, "row \(row) out of range 0..<\(w.rows)")
        precondition(offset >= 0 && offset + w.cols <= buffer.count, "copyRow output out of bounds")
        let out = buffer.pointer + offset
        switch w.storage {
        case .float32(let weights):
            out.update(from: weights.pointer + row * w.cols, count: w.cols)
        case .q8(let values, let scales, let groupSize):
            let base = row * w.cols
            for i in 0..<w.cols {
                out[i] = Float(values.pointer[base + i]) * scales.pointer[(base + i) / groupSize]
            }
        }
    }

    // MARK: Elementwise

    /// RMSNorm of each of `n` rows of length `dim`: out = x / sqrt(mean(x²) + eps) * weight.
    public static func rmsnorm(
        input x: FloatBuffer, weight: FloatView, rows n: Int, dim: Int,
        output out: FloatBuffer, epsilon: Float = 1e-5
    ) {
        precondition(weight.count == dim && n * dim <= x.count && n * dim <= out.count, "rmsnorm sizes")
        let w = weight.pointer
        for r in 0..<n {
            let xr = x.pointer + r * dim, yr = out.pointer + r * dim
            let sumSquares = dot(UnsafePointer(xr), UnsafePointer(xr), dim)
            let scale = 1 / (sumSquares / Float(dim) + epsilon).squareRoot()
            for i in 0..<dim { yr[i] = w[i] * (scale * xr[i]) }
        }
    }

    /// y[i] += x[i] for `count` elements (the residual connection).
    public static func add(_ x: FloatBuffer, into y: FloatBuffer, count: Int) {
        precondition(count <= x.count && count <= y.count, "add sizes")
        for i in 0..<count { y.pointer[i] += x.pointer[i] }
    }

    /// SwiGLU in place: gate[i] = silu(gate[i]) * up[i], silu(v) = v / (1 + e^-v).
    public static func swiglu(gate: FloatBuffer, up: FloatBuffer, count: Int) {
        precondition(count <= gate.count && count <= up.count, "swiglu sizes")
        let g = gate.pointer, u = up.pointer
        for i in 0..<count {
            let v = g[i]
            g[i] = v / (1 + expf(-v)) * u[i]
        }
    }

    /// Softmax in place over `count` elements starting at `offset`.
    public static func softmax(_ buffer: FloatBuffer, offset: Int = 0, count: Int) {
        precondition(count >= 1 && offset >= 0 && offset + count <= buffer.count, "softmax bounds")
        softmax(buffer.pointer + offset, count)
    }

    /// Index of the largest of `count` elements starting at `offset` (the first on ties).
    public static func argmax(_ buffer: FloatBuffer, offset: Int = 0, count: Int) -> Int {
        precondition(count >= 1 && offset >= 0 && offset + count <= buffer.count, "argmax bounds")
        let p = buffer.pointer + offset
        var best = 0
        var bestValue = p[0]
        for i in 1..<count where p[i] > bestValue {
            best = i
            bestValue = p[i]
        }
        return best
    }

    // MARK: Pointer helpers (module-internal)

    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        // Eight independent SIMD accumulators so the loop is not bound by add latency.
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 16 <= n {
            acc0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            acc1 += ra.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
                * rb.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
            i += 16
        }
        var sum = (acc0 + acc1).sum()
        while i < n {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    @inline(__always)
    static func softmax(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        var maxValue = p[0]
        for i in 1..<n where p[i] > maxValue { maxValue = p[i] }
        var sum: Float = 0
        for i in 0..<n {
            let e = expf(p[i] - maxValue)
            p[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in 0..<n { p[i] *= inverse }
    }
}
