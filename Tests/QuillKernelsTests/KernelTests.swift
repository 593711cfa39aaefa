import Foundation
import QuillKernels
import XCTest

/// Deterministic pseudo-random floats in [-1, 1) for test inputs.
struct TestValues {
    private var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> Float {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Float(state >> 40) / Float(1 << 23) - 1
    }
    mutating func array(_ count: Int) -> [Float] { (0..<count).map { _ in next() } }
}

func matrix(_ values: [Float], rows: Int, cols: Int) -> WeightMatrix {
    WeightMatrix(rows: rows, cols: cols, storage: .float32(FloatView(FloatBuffer(values))))
}

/// Plain-loop reference: Y (n, rows) = X (n, cols) · Wᵀ.
func naiveMatmul(_ w: [Float], rows: Int, cols: Int, _ x: [Float], n: Int) -> [Float] {
    var y = [Float](repeating: 0, count: n * rows)
    for b in 0..<n {
        for r in 0..<rows {
            var sum = 0.0
            for c in 0..<cols { sum += Double(w[r * cols + c]) * Double(x[b * cols + c]) }
            y[b * rows + r] = Float(sum)
        }
    }
    return y
}

func assertClose(_ a: [Float], _ b: [Float], tolerance: Float, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "sizes differ \(message)", file: file, line: line)
    var worst: Float = 0
    for (x, y) in zip(a, b) { worst = max(worst, abs(x - y)) }
    XCTAssertLessThanOrEqual(worst, tolerance, "max difference \(worst) \(message)", file: file, line: line)
}

final class KernelTests: XCTestCase {
    func testMatmulMatchesPlainLoopsForOddSizes() {
        var random = TestValues(seed: 1)
        for (rows, cols, n) in [(1, 1, 1), (7, 13, 1), (13, 7, 3), (33, 65, 5), (5, 129, 17)] {
            let w = random.array(rows * cols), x = random.array(n * cols)
            let out = FloatBuffer(count: n * rows + 3)
            Kernels.matmul(matrix(w, rows: rows, cols: cols), input: FloatBuffer(x), rows: n, output: out)
            assertClose(out.array(length: n * rows), naiveMatmul(w, rows: rows, cols: cols, x, n: n),
                        tolerance: 1e-5, "\(rows)x\(cols) n=\(n)")
            XCTAssertEqual(out.array(offset: n * rows), [0, 0, 0], "wrote past the output")
        }
    }

    /// Rows split into chunks over workers (and fused products) give the plain-loop result.
    func testParallelFusedMatmulMatchesPlainLoops() {
        var random = TestValues(seed: 8)
        let pool = WorkerPool(workers: 3)
        for (cols, n) in [(129, 1), (97, 4)] {
            let (ra, rb, rc) = (333, 65, 17)
            let wa = random.array(ra * cols), wb = random.array(rb * cols), wc = random.array(rc * cols)
            let x = random.array(n * cols)
            let ya = FloatBuffer(count: n * ra), yb = FloatBuffer(count: 2 + n * rb), yc = FloatBuffer(count: n * rc)
            Kernels.fusedMatmul(.init(.init(matrix(wa, rows: ra, cols: cols), ya), .init(matrix(wb, rows: rb, cols: cols), yb, 2),
                                      .init(matrix(wc, rows: rc, cols: cols), yc)),
                                input: FloatBuffer(x), rows: n, pool: pool)
            assertClose(ya.array(), naiveMatmul(wa, rows: ra, cols: cols, x, n: n), tolerance: 1e-4, "a n=\(n)")
            assertClose(yb.array(offset: 2), naiveMatmul(wb, rows: rb, cols: cols, x, n: n), tolerance: 1e-4, "b n=\(n)")
            assertClose(yc.array(), naiveMatmul(wc, rows: rc, cols: cols, x, n: n), tolerance: 1e-4, "c n=\(n)")
        }
    }

    func testMatmulWithOffsets() {
        var random = TestValues(seed: 2)
        let w = random.array(6 * 5), x = random.array(2 * 5)
        let input = FloatBuffer([9, 9] + x), out = FloatBuffer(count: 4 + 12)
        Kernels.matmul(matrix(w, rows: 6, cols: 5), input: input, inputOffset: 2, rows: 2, output: out, outputOffset: 4)
        XCTAssertEqual(out.array(length: 4), [0, 0, 0, 0])
        assertClose(out.array(offset: 4), naiveMatmul(w, rows: 6, cols: 5, x, n: 2), tolerance: 1e-5)
    }

    /// Groups of 64 (AVX-512 VNNI) and of 32 over a row of 288, which 64 does not divide (256-bit
    /// VNNI for one row, a masked half step when several rows share the weights).
    func testQ8MatmulMatchesDequantizedPlainLoops() {
        checkQ8Matmul(cols: 192, groupSize: 64)
        checkQ8Matmul(cols: 288, groupSize: 32)
    }

    private func checkQ8Matmul(cols: Int, groupSize: Int) {
        var random = TestValues(seed: 3)
        let rows = 9, n = 3
        let q = (0..<rows * cols).map { _ in Int8(truncatingIfNeeded: Int(random.next() * 127)) }
        let scales = (0..<rows * cols / groupSize).map { _ in abs(random.next()) / 50 + 0.001 }
        let x = random.array(n * cols)
        let w = WeightMatrix(rows: rows, cols: cols, storage: .q8(
            values: Int8Buffer(q).view, scales: FloatView(FloatBuffer(scales)), groupSize: groupSize))
        let dequantized = (0..<rows * cols).map { Float(q[$0]) * scales[$0 / groupSize] }
        // Independent reference of the Q8_0 product: activations quantized per group
        // (scale = max|x| / 127, round to nearest even), exact integer dot products per group.
        func reference(batch: Int) -> [Float] {
            var y: [Float] = []
            for b in 0..<batch {
                let xb = Array(x[b * cols..<(b + 1) * cols])
                var xq = [Int](repeating: 0, count: cols), xs = [Double](repeating: 0, count: cols / groupSize)
                for g in 0..<cols / groupSize {
                    let largest = xb[g * groupSize..<(g + 1) * groupSize].map { abs($0) }.max()!
                    let scale = largest / 127
                    xs[g] = Double(scale)
                    for i in g * groupSize..<(g + 1) * groupSize {
                        xq[i] = Int((xb[i] * (scale > 0 ? 1 / scale : 0)).rounded(.toNearestOrEven))
                    }
                }
                for r in 0..<rows {
                    var sum = 0.0
                    for g in 0..<cols / groupSize {
                        var dot = 0
                        for i in g * groupSize..<(g + 1) * groupSize { dot += Int(q[r * cols + i]) * xq[i] }
                        sum += Double(dot) * Double(scales[r * cols / groupSize + g]) * xs[g]
                    }
                    y.append(Float(sum))
                }
            }
            return y
        }
        defer { forceQuantizedKernel("auto") }
        for kernel in ["portable", "avx2", "vnni256", "avx512vnni"] where forceQuantizedKernel(kernel) {
        for batch in [1, n] {
            let out = FloatBuffer(count: batch * rows)
            Kernels.matmul(w, input: FloatBuffer(x), rows: batch, output: out, scratch: MatmulScratch(maxRows: batch, maxCols: cols), pool: WorkerPool(workers: 3))
            assertClose(out.array(), reference(batch: batch), tolerance: 1e-4, "batch \(batch), kernel \(quantizedKernelName)")
            // And int8 activations stay near the float product (error ≲ Σ|w|·scale_x / 2).
            let float = naiveMatmul(dequantized, rows: rows, cols: cols, Array(x[..<(batch * cols)]), n: batch)
            assertClose(out.array(), float, tolerance: 0.1, "batch \(batch) against float activations")
        }
        }
        XCTAssertEqual(w.rowValues(4), Array(dequantized[4 * cols..<5 * cols]))
        // Prefill-sized blocks (more than 16 rows) dequantize the weights and use sgemm: float
        // activations, so the result is the float product of the dequantized weights.
        let blockRows = 20
        let block = random.array(blockRows * cols)
        let out = FloatBuffer(count: blockRows * rows)
        Kernels.matmul(w, input: FloatBuffer(block), rows: blockRows, output: out,
                       scratch: MatmulScratch(maxRows: blockRows, maxCols: cols, workers: 3), pool: WorkerPool(workers: 3))
        assertClose(out.array(), naiveMatmul(dequantized, rows: rows, cols: cols, block, n: blockRows), tolerance: 1e-4)
    }

    /// Prompt-sized blocks (more than 16 rows), on the AVX-512 blocked products and on sgemm:
    /// fused float32 and int8 products give the plain-loop result on the dequantized weights,
    /// for sizes that leave partial panels and stripes, depths past one k block (384) and not a
    /// multiple of 16, and int8 groups both of 16 and of 4 (the vector and the element-wise packing).
    func testBlockedProductsMatchPlainLoops() {
        var random = TestValues(seed: 11)
        let pool = WorkerPool(workers: 3)
        let wasEnabled = Kernels.blockedProductsEnabled
        defer { Kernels.setBlockedProducts(enabled: wasEnabled) }
        for blocked in [true, false] {
            Kernels.setBlockedProducts(enabled: blocked)
            if blocked && !Kernels.blockedProductsEnabled { print("no AVX-512: blocked products skipped"); continue }
            for (cols, n, groupSize) in [(20, 17, 4), (800, 29, 16), (404, 25, 4), (768, 64, 16)] {
                let (ra, rb) = (100, 33)
                let wa = random.array(ra * cols), x = random.array(n * cols)
                let q = (0..<rb * cols).map { _ in Int8(truncatingIfNeeded: Int(random.next() * 127)) }
                let scales = (0..<rb * cols / groupSize).map { _ in abs(random.next()) / 50 + 0.001 }
                let wb = WeightMatrix(rows: rb, cols: cols, storage: .q8(
                    values: Int8Buffer(q).view, scales: FloatView(FloatBuffer(scales)), groupSize: groupSize))
                let dequantized = (0..<rb * cols).map { Float(q[$0]) * scales[$0 / groupSize] }
                let ya = FloatBuffer(count: n * ra + 1), yb = FloatBuffer(count: 3 + n * rb)
                Kernels.fusedMatmul(.init(.init(matrix(wa, rows: ra, cols: cols), ya), .init(wb, yb, 3)),
                                    input: FloatBuffer(x), rows: n,
                                    scratch: MatmulScratch(maxRows: n, maxCols: cols, workers: 3), pool: pool)
                let label = "cols \(cols), n \(n), blocked \(blocked)"
                assertClose(ya.array(length: n * ra), naiveMatmul(wa, rows: ra, cols: cols, x, n: n), tolerance: 1e-4, "f32 " + label)
                assertClose(yb.array(offset: 3), naiveMatmul(dequantized, rows: rb, cols: cols, x, n: n), tolerance: 1e-4, "q8 " + label)
                XCTAssertEqual(ya.array(offset: n * ra) + yb.array(length: 3), [0, 0, 0, 0], "wrote outside the outputs")
            }
        }
    }

    func testRMSNormMatchesFormula() {
        var random = TestValues(seed: 4)
        let dim = 19, n = 3
        let x = random.array(n * dim), weight = random.array(dim)
        let out = FloatBuffer(count: n * dim)
        Kernels.rmsnorm(input: FloatBuffer(x), weight: FloatView(FloatBuffer(weight)), rows: n, dim: dim, output: out,
                        epsilon: 1e-3)
        var expected: [Float] = []
        for r in 0..<n {
            let row = x[r * dim..<(r + 1) * dim]
            let meanSquare = row.map { Double($0 * $0) }.reduce(0, +) / Double(dim)
            let scale = 1 / (meanSquare + 1e-3).squareRoot()
            expected += zip(row, weight).map { Float(Double($0) * scale * Double($1)) }
        }
        assertClose(out.array(), expected, tolerance: 1e-5)
    }

    func testSoftmaxSumsToOneAndKeepsOrder() {
        let buffer = FloatBuffer([0, 1, 2, 3, 1000, -5])
        Kernels.softmax(buffer, offset: 0, count: 4)
        let p = buffer.array(length: 4)
        XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-6)
        let e = [0.0, 1, 2, 3].map { exp($0) }, total = e.reduce(0, +)
        assertClose(p, e.map { Float($0 / total) }, tolerance: 1e-6)
        XCTAssertEqual(buffer.array(offset: 4), [1000, -5], "softmax touched elements outside its range")
        XCTAssertEqual(Kernels.argmax(FloatBuffer([1, 5, 5, 2]), count: 4), 1, "ties go to the first index")
    }

    func testSwiGLU() {
        let gate = FloatBuffer([-2, 0, 1.5]), up = FloatBuffer([3, 4, -1])
        Kernels.swiglu(gate: gate, up: up, count: 3)
        let expected = zip([-2.0, 0, 1.5], [3.0, 4, -1]).map { g, u in Float(g / (1 + exp(-g)) * u) }
        assertClose(gate.array(), expected, tolerance: 1e-6)
        // Split over a pool (more than one 16K piece), every element once.
        var random = TestValues(seed: 9)
        let g = random.array(40_000), u = random.array(40_000)
        let big = FloatBuffer(g)
        Kernels.swiglu(gate: big, up: FloatBuffer(u), count: 40_000, pool: WorkerPool(workers: 2))
        assertClose(big.array(), zip(g, u).map { a, b in Float(Double(a) / (1 + exp(-Double(a))) * Double(b)) },
                    tolerance: 1e-6)
    }

    /// The vectorised exponentials (softmax, SwiGLU) against double precision, relative to each
    /// value, for every length up to 40 (whole vectors and tails) and inputs from -100 to 100.
    /// The allowance is a few float ulps plus the rounding of the float argument of exp
    /// (|argument| · 2⁻²⁴), which expf itself could not avoid either.
    func testActivationsMatchDoublePrecision() {
        let wasVector = Kernels.setVectorActivations(enabled: true)
        defer { Kernels.setVectorActivations(enabled: wasVector) }
        for vector in [true, false] {
        Kernels.setVectorActivations(enabled: vector)
        var random = TestValues(seed: 12)
        func assertRelative(_ got: [Float], _ want: [Double], arguments: [Float], _ label: String) {
            for (i, (a, b)) in zip(got, want).enumerated()
            where abs(Double(a) - b) > (4e-7 + Double(abs(arguments[i])) * 0x1p-24) * abs(b) + 1e-30 {
                XCTFail("\(label): \(a) against \(b)")
                return
            }
        }
        for n in 1...40 {
            let x = random.array(n).map { $0 * 30 }
            let buffer = FloatBuffer(x + [7])
            Kernels.softmax(buffer, count: n)
            let top = Double(x.max()!), e = x.map { exp(Double($0) - top) }, total = e.reduce(0, +)
            assertRelative(buffer.array(length: n), e.map { $0 / total }, arguments: x.map { $0 - x.max()! }, "softmax n=\(n)")
            XCTAssertEqual(buffer.array(offset: n), [7], "softmax wrote past its range")
        }
        let g = random.array(4_000).map { $0 * 100 } + [-100, -88, -87, 0, 87, 88, 100]
        let u = random.array(g.count)
        let gate = FloatBuffer(g)
        Kernels.swiglu(gate: gate, up: FloatBuffer(u), count: g.count)
        assertRelative(gate.array(), zip(g, u).map { a, b in Double(a) / (1 + exp(-Double(a))) * Double(b) }, arguments: g, "swiglu")
        }
    }

    func testRoPERotatesAdjacentPairsPerHead() throws {
        var random = TestValues(seed: 5)
        let headSize = 6, width = 12, positions = [0, 3, 17]
        let frequencies = (0..<headSize / 2).map { pow(500_000, -Double(2 * $0) / Double(headSize)) }
        let table = try RotaryTable(contextLength: 20, headSize: headSize, frequencies: frequencies, pairing: .adjacent)
        let x = random.array(positions.count * width)
        let buffer = FloatBuffer(x)
        Kernels.rope(buffer, rows: positions.count, width: width, positions: positions, table: table)
        var expected = x
        for (r, position) in positions.enumerated() {
            for head in stride(from: 0, to: width, by: headSize) {
                for i in 0..<headSize / 2 {
                    let angle = Double(position) * pow(500_000, -Double(2 * i) / Double(headSize))
                    let a = Double(x[r * width + head + 2 * i]), b = Double(x[r * width + head + 2 * i + 1])
                    expected[r * width + head + 2 * i] = Float(a * cos(angle) - b * sin(angle))
                    expected[r * width + head + 2 * i + 1] = Float(a * sin(angle) + b * cos(angle))
                }
            }
        }
        assertClose(buffer.array(), expected, tolerance: 1e-5)
    }

    func testAttentionMatchesPlainLoopsWithGroupedHeads() {
        var random = TestValues(seed: 6)
        // Head sizes below one vector, and past four vectors with a partial fifth (the kernel
        // takes 64 floats of output at a time); the vector and the portable loops.
        let wasVector = Kernels.setVectorActivations(enabled: true)
        defer { Kernels.setVectorActivations(enabled: wasVector) }
        for (headSize, vector) in [(10, true), (80, true), (10, false), (80, false)] {
        Kernels.setVectorActivations(enabled: vector)
        let shape = Kernels.AttentionShape(heads: 6, kvHeads: 2, headSize: headSize)
        let context = 40, layers = 2, layer = 1
        let keys = FloatBuffer(random.array(layers * context * shape.kvDim))
        let values = FloatBuffer(random.array(layers * context * shape.kvDim))
        let positions = [0, 5, 39]
        let q = random.array(positions.count * shape.dim)
        for workers in [1, 3] {
            let pool = WorkerPool(workers: workers)
            let out = FloatBuffer(count: positions.count * shape.dim)
            Kernels.attention(
                query: FloatBuffer(q), rows: positions.count, shape: shape, keys: [keys], values: [values],
                cacheOf: [0, 0, 0], positions: positions, layerOffset: layer * context * shape.kvDim,
                contextLength: context, scores: FloatBuffer(count: workers * context), output: out, pool: pool)
            var expected: [Float] = []
            for (r, position) in positions.enumerated() {
                for h in 0..<shape.heads {
                    let g = h / (shape.heads / shape.kvHeads)
                    let base = layer * context * shape.kvDim + g * shape.headSize
                    var scores = (0...position).map { t -> Double in
                        var s = 0.0
                        for i in 0..<shape.headSize {
                            s += Double(q[r * shape.dim + h * shape.headSize + i]) * Double(keys[base + t * shape.kvDim + i])
                        }
                        return s / Double(shape.headSize).squareRoot()
                    }
                    let top = scores.max()!
                    scores = scores.map { exp($0 - top) }
                    let total = scores.reduce(0, +)
                    for i in 0..<shape.headSize {
                        var sum = 0.0
                        for t in 0...position { sum += scores[t] / total * Double(values[base + t * shape.kvDim + i]) }
                        expected.append(Float(sum))
                    }
                }
            }
            assertClose(out.array(), expected, tolerance: 1e-5, "head size \(headSize), vector \(vector), workers \(workers)")
        }
        }
    }

    func testBlockAttentionEqualsRowByRowAttention() {
        var random = TestValues(seed: 7)
        let shape = Kernels.AttentionShape(heads: 4, kvHeads: 2, headSize: 6)
        // 9 rows: one causal slice; 150 rows: three slices of 64, the last partial.
        for (context, start, n) in [(30, 5, 9), (160, 5, 150)] {
        let layers = 2, layer = 1
        let keys = FloatBuffer(random.array(layers * context * shape.kvDim))
        let values = FloatBuffer(random.array(layers * context * shape.kvDim))
        let q = FloatBuffer(random.array(n * shape.dim))
        let layerOffset = layer * context * shape.kvDim
        let expected = FloatBuffer(count: n * shape.dim), actual = FloatBuffer(count: n * shape.dim)
        Kernels.attention(query: q, rows: n, shape: shape, keys: [keys], values: [values], cacheOf: Array(repeating: 0, count: n),
                          positions: Array(start..<start + n), layerOffset: layerOffset, contextLength: context,
                          scores: FloatBuffer(count: context), output: expected)
        Kernels.blockAttention(query: q, rows: n, start: start, shape: shape, keys: keys, values: values,
                               layerOffset: layerOffset, contextLength: context,
                               scores: FloatBuffer(count: n * (start + n)), output: actual)
        assertClose(actual.array(), expected.array(), tolerance: 1e-5)
        let parallel = FloatBuffer(count: n * shape.dim)
        Kernels.blockAttention(query: q, rows: n, start: start, shape: shape, keys: keys, values: values,
                               layerOffset: layerOffset, contextLength: context,
                               scores: FloatBuffer(count: 3 * n * (start + n)), output: parallel, pool: WorkerPool(workers: 3))
        assertClose(parallel.array(), expected.array(), tolerance: 1e-5, "heads over 3 workers")
        }
    }
}
