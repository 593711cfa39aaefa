import Foundation

/// Elementwise pieces of the architectures beyond Llama (LayerNorm, biases, GELU, ReLU,
/// soft-capping, scaling), one function each. None is on the Llama path, so they are plain
/// loops: their cost is small beside the matrix products they sit between.
extension Kernels {
    /// LayerNorm of each of `n` rows of length `dim`: out = (x − mean) / sqrt(var + ε) · weight + bias,
    /// var the mean of squared deviations (biased, as PyTorch's layer_norm). In place is allowed.
    public static func layerNorm(
        input x: FloatBuffer, weight: FloatView, bias: FloatView, rows n: Int, dim: Int,
        output out: FloatBuffer, epsilon: Float
    ) {
        precondition(weight.count == dim && bias.count == dim && n * dim <= x.count && n * dim <= out.count, "layerNorm sizes")
        for r in 0..<n {
            let xr = x.pointer + r * dim, yr = out.pointer + r * dim
            var sum: Float = 0
            for i in 0..<dim { sum += xr[i] }
            let mean = sum / Float(dim)
            var squares: Float = 0
            for i in 0..<dim { squares += (xr[i] - mean) * (xr[i] - mean) }
            let scale = 1 / (squares / Float(dim) + epsilon).squareRoot()
            for i in 0..<dim { yr[i] = (xr[i] - mean) * scale * weight.pointer[i] + bias.pointer[i] }
        }
    }

    /// Adds `bias` (width values) to each of `n` rows of `width` values.
    public static func addBias(_ buffer: FloatBuffer, bias: FloatView, rows n: Int, width: Int) {
        precondition(bias.count == width && n * width <= buffer.count, "addBias sizes")
        for r in 0..<n {
            let row = buffer.pointer + r * width
            for i in 0..<width { row[i] += bias.pointer[i] }
        }
    }

    /// Multiplies `count` elements from `offset` by `factor`.
    public static func scale(_ buffer: FloatBuffer, offset: Int = 0, count: Int, by factor: Float) {
        precondition(offset >= 0 && offset + count <= buffer.count, "scale bounds")
        for i in offset..<offset + count { buffer.pointer[i] *= factor }
    }

    /// Soft-capping in place: v = cap · tanh(v / cap), which bounds every value by ±cap.
    public static func softcap(_ buffer: FloatBuffer, offset: Int = 0, count: Int, cap: Float) {
        precondition(offset >= 0 && offset + count <= buffer.count, "softcap bounds")
        softcap(buffer.pointer + offset, count, cap)
    }

    static func softcap(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ cap: Float) {
        for i in 0..<n { p[i] = cap * tanh(p[i] / cap) }
    }

    /// GELU with the tanh approximation (PyTorch's gelu(approximate="tanh"), GPT-2's gelu_new):
    /// 0.5 · v · (1 + tanh(√(2/π) · (v + 0.044715 · v³))).
    @inline(__always)
    static func geluTanh(_ v: Float) -> Float {
        let c: Float = 0.7978845608028654  // √(2/π)
        return 0.5 * v * (1 + tanh(c * (v + 0.044715 * v * v * v)))
    }

    /// GELU (tanh approximation) in place over `count` elements.
    public static func gelu(_ buffer: FloatBuffer, count: Int) {
        precondition(count <= buffer.count, "gelu sizes")
        for i in 0..<count { buffer.pointer[i] = geluTanh(buffer.pointer[i]) }
    }

    /// GeGLU in place: gate[i] = gelu_tanh(gate[i]) · up[i].
    public static func geglu(gate: FloatBuffer, up: FloatBuffer, count: Int) {
        precondition(count <= gate.count && count <= up.count, "geglu sizes")
        for i in 0..<count { gate.pointer[i] = geluTanh(gate.pointer[i]) * up.pointer[i] }
    }

    /// Adds the original Transformer's sinusoidal position code to each of `n` rows of `dim`
    /// values, row r at position `positions[r]`: element 2i gets sin(p · 10000^(−2i/dim)) and
    /// element 2i + 1 the cosine of the same angle, computed in double precision.
    public static func addSinusoidalPositions(_ buffer: FloatBuffer, rows n: Int, dim: Int, positions: [Int]) {
        precondition(dim % 2 == 0 && n * dim <= buffer.count && positions.count >= n, "sinusoidal positions sizes")
        for r in 0..<n {
            let row = buffer.pointer + r * dim
            for i in 0..<dim / 2 {
                let angle = Double(positions[r]) * pow(10000, -Double(2 * i) / Double(dim))
                row[2 * i] += Float(sin(angle))
                row[2 * i + 1] += Float(cos(angle))
            }
        }
    }

    /// ReLU in place over `count` elements.
    public static func relu(_ buffer: FloatBuffer, count: Int) {
        precondition(count <= buffer.count, "relu sizes")
        for i in 0..<count { buffer.pointer[i] = max(0, buffer.pointer[i]) }
    }
}
