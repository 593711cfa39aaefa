import Foundation
import QuillKernels
import XCTest

/// The pieces of the architectures beyond Llama against plain double-precision loops: the
/// elementwise kernels, and attention with a scale, a soft cap and a sliding window read from a
/// ring of slots, in the decode and the block path.
final class ArchitectureKernelTests: XCTestCase {
    func testElementwiseKernelsMatchTheirFormulas() {
        var random = TestValues(seed: 21)
        let rows = 3, dim = 37
        let x = random.array(rows * dim).map { $0 * 4 }
        let weight = random.array(dim), bias = random.array(dim)
        // LayerNorm: mean and biased variance per row.
        let normed = FloatBuffer(count: rows * dim)
        Kernels.layerNorm(input: FloatBuffer(x), weight: FloatView(FloatBuffer(weight)), bias: FloatView(FloatBuffer(bias)),
                          rows: rows, dim: dim, output: normed, epsilon: 1e-5)
        var expected: [Float] = []
        for r in 0..<rows {
            let row = x[r * dim..<(r + 1) * dim].map(Double.init)
            let mean = row.reduce(0, +) / Double(dim)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(dim)
            for i in 0..<dim { expected.append(Float((row[i] - mean) / (variance + 1e-5).squareRoot() * Double(weight[i]) + Double(bias[i]))) }
        }
        // Values of a few units: float32 sums of 37 terms stay within 1e-5 of the double result.
        assertClose(normed.array(), expected, tolerance: 1e-5, "layerNorm")

        func geluTanh(_ v: Double) -> Double { 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))) }
        let g = FloatBuffer(x)
        Kernels.gelu(g, count: x.count)
        assertClose(g.array(), x.map { Float(geluTanh(Double($0))) }, tolerance: 1e-5, "gelu")
        let up = random.array(x.count)
        let gate = FloatBuffer(x)
        Kernels.geglu(gate: gate, up: FloatBuffer(up), count: x.count)
        assertClose(gate.array(), zip(x, up).map { Float(geluTanh(Double($0)) * Double($1)) }, tolerance: 1e-5, "geglu")
        let relu = FloatBuffer(x)
        Kernels.relu(relu, count: x.count)
        XCTAssertEqual(relu.array(), x.map { max(0, $0) })  // exact: a comparison, no arithmetic
        let capped = FloatBuffer(x)
        Kernels.softcap(capped, count: x.count, cap: 3)
        assertClose(capped.array(), x.map { Float(3 * tanh(Double($0) / 3)) }, tolerance: 1e-6, "softcap")
        XCTAssertTrue(capped.array().allSatisfy { abs($0) < 3 })
        let biased = FloatBuffer(x)
        Kernels.addBias(biased, bias: FloatView(FloatBuffer(bias)), rows: rows, width: dim)
        XCTAssertEqual(biased.array(), (0..<rows * dim).map { x[$0] + bias[$0 % dim] })  // one rounding, same as the formula
    }

    /// Attention of the query at `position` over positions `first...position` of `cache`
    /// (position → (key, value) of one KV head), in doubles: scale, optional cap, softmax, sum.
    func naiveAttention(query: ArraySlice<Float>, position: Int, window: Int?, scale: Double, cap: Double?,
                        key: (Int) -> ArraySlice<Float>, value: (Int) -> ArraySlice<Float>) -> [Float] {
        let first = window.map { max(0, position + 1 - $0) } ?? 0
        var scores = (first...position).map { t -> Double in
            var s = 0.0
            for (a, b) in zip(query, key(t)) { s += Double(a) * Double(b) }
            s *= scale
            return cap.map { $0 * tanh(s / $0) } ?? s
        }
        let top = scores.max()!
        scores = scores.map { exp($0 - top) }
        let total = scores.reduce(0, +)
        let size = query.count
        return (0..<size).map { i in
            var sum = 0.0
            for (j, t) in (first...position).enumerated() { sum += scores[j] / total * Double(value(t)[value(t).startIndex + i]) }
            return Float(sum)
        }
    }

    func testWindowedAttentionFromARingMatchesPlainLoops() {
        var random = TestValues(seed: 22)
        let geometry = Kernels.AttentionShape(heads: 4, kvHeads: 2, headSize: 8)
        let kvDim = geometry.kvDim, dim = geometry.dim
        let context = 40, window = 6
        // Keys and values of every position, then the ring of a layer: position p in slot p mod slots.
        let allKeys = random.array(context * kvDim), allValues = random.array(context * kvDim)
        for (cap, label) in [(Float?.some(2), "capped"), (nil, "uncapped")] {
            let shape = Kernels.AttentionShape(heads: 4, kvHeads: 2, headSize: 8, scale: 0.3, softcap: cap)
            // Decode: one row a sequence, each at its own position; a ring of exactly the window.
            let slots = window
            let positions = [0, 3, 6, 13, 39]
            var keyRings: [FloatBuffer] = [], valueRings: [FloatBuffer] = []
            for p in positions {
                let k = FloatBuffer(count: slots * kvDim), v = FloatBuffer(count: slots * kvDim)
                for t in max(0, p + 1 - slots)...p {
                    let slot = t % slots
                    FloatBuffer(allKeys).copy(offset: t * kvDim, length: kvDim, to: k, at: slot * kvDim)
                    FloatBuffer(allValues).copy(offset: t * kvDim, length: kvDim, to: v, at: slot * kvDim)
                }
                keyRings.append(k)
                valueRings.append(v)
            }
            let q = random.array(positions.count * dim)
            let out = FloatBuffer(count: positions.count * dim)
            Kernels.attention(query: FloatBuffer(q), rows: positions.count, shape: shape, keys: keyRings, values: valueRings,
                              cacheOf: Array(positions.indices), positions: positions, layerOffset: 0, contextLength: context,
                              scores: FloatBuffer(count: context), output: out, window: window, slots: slots)
            var expected: [Float] = []
            for (r, p) in positions.enumerated() {
                for h in 0..<shape.heads {
                    let g = (h / 2) * shape.headSize
                    expected += naiveAttention(
                        query: q[(r * dim + h * shape.headSize)..<(r * dim + (h + 1) * shape.headSize)], position: p,
                        window: window, scale: 0.3, cap: cap.map(Double.init),
                        key: { allKeys[($0 * kvDim + g)..<($0 * kvDim + g + shape.headSize)] },
                        value: { allValues[($0 * kvDim + g)..<($0 * kvDim + g + shape.headSize)] })
                }
            }
            assertClose(out.array(), expected, tolerance: 1e-5, "decode, \(label)")

            // Block: positions start ..< start + n written into a ring of window + n − 1 slots, which
            // wraps; slices of 64 rows when n is larger.
            for (start, n) in [(0, 5), (9, 5), (17, 23), (3, 70)] {
                let slots = window + n - 1, length = start + n
                let keys = FloatBuffer(count: slots * kvDim), values = FloatBuffer(count: slots * kvDim)
                let all = (FloatBuffer(random.array(length * kvDim)), FloatBuffer(random.array(length * kvDim)))
                for t in max(0, length - slots)..<length {
                    all.0.copy(offset: t * kvDim, length: kvDim, to: keys, at: (t % slots) * kvDim)
                    all.1.copy(offset: t * kvDim, length: kvDim, to: values, at: (t % slots) * kvDim)
                }
                let keyArray = all.0.array(), valueArray = all.1.array()
                let q = random.array(n * dim)
                for workers in [1, 2] {
                    let out = FloatBuffer(count: n * dim)
                    Kernels.blockAttention(query: FloatBuffer(q), rows: n, start: start, shape: shape, keys: keys, values: values,
                                           layerOffset: 0, contextLength: length + slots,
                                           scores: FloatBuffer(count: workers * Kernels.blockAttentionScratch(rows: n, length: length)),
                                           output: out, pool: WorkerPool(workers: workers), window: window, slots: slots)
                    var expected: [Float] = []
                    for r in 0..<n {
                        for h in 0..<shape.heads {
                            let g = (h / 2) * shape.headSize
                            expected += naiveAttention(
                                query: q[(r * dim + h * shape.headSize)..<(r * dim + (h + 1) * shape.headSize)], position: start + r,
                                window: window, scale: 0.3, cap: cap.map(Double.init),
                                key: { keyArray[($0 * kvDim + g)..<($0 * kvDim + g + shape.headSize)] },
                                value: { valueArray[($0 * kvDim + g)..<($0 * kvDim + g + shape.headSize)] })
                        }
                    }
                    assertClose(out.array(), expected, tolerance: 1e-5, "block start \(start) n \(n), \(workers) workers, \(label)")
                }
            }
        }
    }
}
