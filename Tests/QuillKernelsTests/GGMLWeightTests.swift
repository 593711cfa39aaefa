import Foundation
import QuillKernels
import XCTest

/// Weight matrices stored as GGUF blocks (`WeightMatrix.Storage.ggml`): products on every path
/// against a float64 reference of the dequantized matrix, decoding rows the same bits alone or in
/// a batch, and the embedding lookup.
final class GGMLWeightTests: XCTestCase {
    private static let rows = 40, cols = 512, inputCounts = [1, 3, 17, 40]

    /// `rows` rows of random blocks of `type`, placed 3 bytes past a 64-byte boundary (GGUF
    /// blocks have no alignment). Quantized values are random bits; each f16 scale is replaced
    /// by a finite one chosen so that the values are of order 1 (random bits would give
    /// infinities and NaNs, which the products pass through but a tolerance cannot judge).
    private func randomMatrix(_ type: GGMLType, rows: Int, cols: Int, seed: UInt64) -> (WeightMatrix, [[Float]]) {
        var random = TestValues(seed: seed)
        let bytes = randomGGMLBlocks(type, rows: rows, cols: cols, random: &random)
        let view = ByteBuffer([UInt8](repeating: 0xA5, count: 3) + bytes).view.slice(offset: 3, count: bytes.count)
        let dequantized = (0..<rows).map { r in
            GGMLQuants.dequantize(type, bytes: view.slice(offset: r * type.rowBytes(count: cols), count: type.rowBytes(count: cols)),
                                  count: cols)
        }
        for row in dequantized { precondition(row.allSatisfy(\.isFinite), "\(type.name) test blocks must be finite") }
        return (WeightMatrix(rows: rows, cols: cols, storage: .ggml(type, view)), dequantized)
    }

    /// Y (n, rows) = X (n, cols) · Wᵀ in float64 on the dequantized rows, with Σ|w·x| per output.
    private func reference(_ w: [[Float]], _ x: [Float], n: Int) -> (values: [Double], magnitudes: [Double]) {
        let cols = w[0].count
        var values = [Double](), magnitudes = [Double]()
        for b in 0..<n {
            for row in w {
                var sum = 0.0, magnitude = 0.0
                for c in 0..<cols {
                    let term = Double(row[c]) * Double(x[b * cols + c])
                    sum += term
                    magnitude += abs(term)
                }
                values.append(sum)
                magnitudes.append(magnitude)
            }
        }
        return (values, magnitudes)
    }

    /// Every type, n = 1, 3, 17, 40 input rows, 1 and 2 workers, the blocked products on and off,
    /// with and without `independentRows`: each output y within cols · ε · Σ|w·x| of the float64
    /// product of the dequantized matrix (ε = float32 epsilon, 2⁻²³). A float32 sum of cols terms,
    /// in any order and with or without fused multiply-adds, is within (cols − 1) · 2⁻²⁴ · Σ|w·x|
    /// of the exact sum (the products w·x of float32 values are exact or rounded once), so the
    /// tolerance is twice the worst case; a wrong weight, a wrong row or a lost block is far
    /// outside it. Streaming products of the quantized types read the input as int8 blocks
    /// (ggml_dot.h), which adds at most Σ_blocks 0.501 · scale · Σ|w| (half a step of each
    /// block's int8 grid, see GGMLFastProductTests). That term is added for every quantized
    /// type. Prompt blocks on CPUs with AVX-512 VNNI would take the int8 prompt products
    /// (gemm_int8.h); they are switched off here and checked in GGMLPromptProductTests.
    func testProductsMatchTheFloat64ProductOfTheDequantizedMatrix() {
        let (rows, cols) = (Self.rows, Self.cols)
        var random = TestValues(seed: 31)
        let x = random.array(Self.inputCounts.max()! * cols)
        let wasBlocked = Kernels.blockedProductsEnabled
        // Float32 activations throughout: the int8 prompt products are GGMLPromptProductTests' own.
        let wasInt8 = Kernels.setInt8PromptProducts(enabled: false)
        defer {
            Kernels.setBlockedProducts(enabled: wasBlocked)
            Kernels.setInt8PromptProducts(enabled: wasInt8)
        }
        for (t, type) in GGMLType.allCases.enumerated() {
            let (w, dequantized) = randomMatrix(type, rows: rows, cols: cols, seed: 100 + UInt64(t))
            for n in Self.inputCounts {
                let (expected, magnitudes) = reference(dequantized, x, n: n)
                for workers in [1, 2] {
                    let pool = workers > 1 ? WorkerPool(workers: workers) : nil
                    for blocked in [true, false] {
                        Kernels.setBlockedProducts(enabled: blocked)
                        for independentRows in [false, true] {
                            let y = FloatBuffer(count: n * rows)
                            Kernels.matmul(w, input: FloatBuffer(x), rows: n, output: y,
                                           scratch: MatmulScratch(maxRows: n, maxCols: cols, workers: workers), pool: pool,
                                           independentRows: independentRows)
                            let got = y.array()
                            // Streaming products and, on AVX-512 VNNI, prompt blocks too.
                            let int8Input = type.blockSize >= 32
                            var worst = -Double.infinity, at = 0
                            for i in got.indices {
                                var rounding = 0.0
                                if int8Input {
                                    let b = i / rows, row = dequantized[i % rows]
                                    let scales = GGMLActivations.quantize(Array(x[b * cols..<(b + 1) * cols])).scales
                                    for c in 0..<cols { rounding += 0.501 * Double(scales[c / 32]) * abs(Double(row[c])) }
                                }
                                let excess = abs(Double(got[i]) - expected[i]) - rounding
                                    - Double(cols) * Double(Float.ulpOfOne) * magnitudes[i]
                                if excess > worst { (worst, at) = (excess, i) }
                            }
                            XCTAssertLessThanOrEqual(
                                worst, 0, "\(type.name) n \(n), \(workers) workers, blocked \(Kernels.blockedProductsEnabled), "
                                    + "independentRows \(independentRows): output \(at) is \(got[at]), float64 \(expected[at])")
                        }
                    }
                }
            }
        }
    }

    /// Decoding (`independentRows`): each row of a batch of 3, 17 or 40 (1 or 2 workers) is the
    /// same bits as that row alone, on every float32 streaming path this CPU runs; for F32
    /// blocks (the only type without a kernel of its own, ggml_dot.h) also the same bits as the
    /// float32 product of the dequantized matrix.
    func testDecodingRowsAreTheSameAloneOrInABatchAndAsFloat32() {
        let (rows, cols) = (Self.rows, Self.cols)
        var random = TestValues(seed: 32)
        // Magnitudes spread over 2⁻⁸…2⁸, so that another summation order changes low bits.
        let x = (0..<Self.inputCounts.max()! * cols).map { _ in
            random.next() * Float(sign: .plus, exponent: Int(random.next() * 8), significand: 1)
        }
        defer { Kernels.forceFloatKernel("auto") }
        for (t, type) in GGMLType.allCases.enumerated() {
            let (w, dequantized) = randomMatrix(type, rows: rows, cols: cols, seed: 200 + UInt64(t))
            let float32 = matrix(dequantized.flatMap { $0 }, rows: rows, cols: cols)
            for kernel in ["avx512", "avx2", "portable"] where Kernels.forceFloatKernel(kernel) {
                let scratch = MatmulScratch(maxRows: Self.inputCounts.max()!, maxCols: cols, workers: 2)
                func product(_ w: WeightMatrix, n: Int, offset: Int = 0, pool: WorkerPool? = nil) -> [UInt32] {
                    let y = FloatBuffer(count: n * rows)
                    Kernels.matmul(w, input: FloatBuffer(x), inputOffset: offset * cols, rows: n, output: y,
                                   scratch: scratch, pool: pool, independentRows: true)
                    return y.array().map(\.bitPattern)
                }
                let alone = (0..<Self.inputCounts.max()!).flatMap { product(w, n: 1, offset: $0) }
                for n in Self.inputCounts {
                    for workers in [1, 2] {
                        let pool = workers > 1 ? WorkerPool(workers: workers) : nil
                        let label = "\(type.name), \(kernel), n \(n), \(workers) workers"
                        XCTAssertEqual(product(w, n: n, pool: pool), Array(alone[0..<n * rows]), label + ": batch against rows alone")
                        if type == .f32 {
                            XCTAssertEqual(product(w, n: n, pool: pool), product(float32, n: n, pool: pool),
                                           label + ": against the float32 dequantized matrix")
                        }
                    }
                }
            }
        }
    }

    /// Two GGUF matrices of different types and a float32 one in one fused call, streaming and
    /// blocked: each output the same as its own `matmul`.
    func testFusedProductsMixTypes() {
        let cols = 256
        var random = TestValues(seed: 33)
        let (a, _) = randomMatrix(.q4_K, rows: 48, cols: cols, seed: 301)
        let (b, _) = randomMatrix(.q8_0, rows: 40, cols: cols, seed: 302)
        let c = matrix(random.array(24 * cols), rows: 24, cols: cols)
        let pool = WorkerPool(workers: 2)
        for n in [2, 33] {
            let x = FloatBuffer(random.array(n * cols))
            let scratch = MatmulScratch(maxRows: n, maxCols: cols, workers: 2)
            let ya = FloatBuffer(count: n * 48), yb = FloatBuffer(count: n * 40), yc = FloatBuffer(count: n * 24)
            Kernels.fusedMatmul(.init(.init(a, ya), .init(b, yb), .init(c, yc)), input: x, rows: n, scratch: scratch, pool: pool)
            for (w, y) in [(a, ya), (b, yb), (c, yc)] {
                let alone = FloatBuffer(count: n * w.rows)
                Kernels.matmul(w, input: x, rows: n, output: alone, scratch: scratch, pool: pool)
                XCTAssertEqual(y.array().map(\.bitPattern), alone.array().map(\.bitPattern), "n \(n), \(w.rows) rows")
            }
        }
    }

    /// The embedding lookup: `copyRow` (and `rowValues`) give the dequantized row exactly, at an
    /// offset, without touching the neighbours.
    func testCopyRowIsTheDequantizedRow() {
        let cols = 256
        for (t, type) in GGMLType.allCases.enumerated() {
            let (w, dequantized) = randomMatrix(type, rows: 5, cols: cols, seed: 400 + UInt64(t))
            for row in 0..<5 {
                let buffer = FloatBuffer([Float](repeating: -7, count: cols + 10))
                Kernels.copyRow(of: w, row: row, into: buffer, at: 4)
                let got = buffer.array()
                XCTAssertEqual(got[4..<4 + cols].map(\.bitPattern), dequantized[row].map(\.bitPattern), "\(type.name) row \(row)")
                XCTAssertEqual(Array(got[0..<4] + got[(4 + cols)...]), [Float](repeating: -7, count: 10), "\(type.name) neighbours")
                XCTAssertEqual(w.rowValues(row).map(\.bitPattern), dequantized[row].map(\.bitPattern), "\(type.name) rowValues")
            }
        }
    }
}
