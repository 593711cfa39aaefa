import Foundation
@testable import QuillKernels
import XCTest

/// The streaming products on GGUF blocks as stored (`ggml_dot.h`): every type, on every path this
/// CPU runs and the portable one, against references that decode the same bytes independently.
///
/// Error bounds used below (u = 2⁻²⁴, float32's unit roundoff):
/// - Same quantized activations: each block's integer dot product is exact; what is left is
///   float32 rounding of the scale products (d_w · d_x, d · scale · d_x, dmin · min · Σ), a few
///   roundings per block term, and the float32 sums of at most `blocks` terms per lane plus an
///   8-lane tree. So |y − Σ w_i · q_i d_i| ≤ (blocks + 16) · 2u · M, with
///   M = Σ_i (|w_i| + c_i) · |q_i d_i|, c_i = |dmin| · 63 for Q4_K and Q5_K (their mins are a
///   separate term, as large as the weights) and 0 otherwise. The dequantized w_i (float32) is
///   itself the rounded value d · scale · q − dmin · min, inside the same bound.
/// - Float activations: x_i − q_i d_i is the int8 rounding error, at most d_blk · (1/2 + 2⁻¹⁷)
///   (the rounding to an integer, plus the relative 2u errors of 1 / d and x · (1 / d) on a
///   value ≤ 128), so |Σ w_i x_i − Σ w_i q_i d_i| ≤ Σ_blk 0.501 · d_blk · Σ_{i ∈ blk} |w_i|.
///   F16 and BF16 keep float32 activations: only the float32 sums, (k / 8 + 16) · 2u · Σ|w_i x_i|.
final class GGMLFastProductTests: XCTestCase {
    static let quantizedTypes: [GGMLType] = [.q8_0, .q4_0, .q5_0, .q4_K, .q5_K, .q6_K]
    static let allTypes: [GGMLType] = [.f16, .bf16] + quantizedTypes
    /// The paths to check: every one this CPU runs (the portable one always).
    static var kernels: [String] {
        let previous = Kernels.ggmlKernelName
        defer { Kernels.forceGGMLKernel(previous) }
        return ["portable", "avx2", "avxvnni", "avx512vnni", "avx512"].filter { Kernels.forceGGMLKernel($0) }
    }

    override func tearDown() {
        Kernels.forceGGMLKernel("auto")
        super.tearDown()
    }

    /// The quantized activations are exactly the formula of `ggml_dot.h` (float32 arithmetic is
    /// the same on every IEEE machine): scale = max|x| / 127, q = round-to-even(x · (1 / scale)),
    /// on the portable quantizer and the vector one. Blocks so small that the scale is subnormal
    /// keep |q| ≤ 127 (the scale rounds up when it fell below max|x| / 127) and, where 1 / scale
    /// overflows, q = round-to-even(x / scale).
    func testActivationQuantizationIsTheFormula() {
        var random = TestValues(seed: 41)
        var x = (0..<384).map { _ in random.next() * Float(sign: .plus, exponent: Int(random.next() * 8), significand: 1) }
        for i in 64..<96 { x[i] = 0 }  // an all-zero block: scale 0, values 0
        x[100] = 127.5  // ties and exact extremes
        for i in 320..<352 { x[i] = random.next() * 1e-38 }  // subnormal scale
        for i in 352..<384 { x[i] = random.next() * 1e-43 }  // 1 / scale overflows
        for kernel in Self.kernels {  // the portable quantizer and the vector one
            XCTAssertTrue(Kernels.forceGGMLKernel(kernel))
            checkQuantization(x, kernel)
        }
    }

    private func checkQuantization(_ x: [Float], _ kernel: String) {
        let (values, scales) = GGMLActivations.quantize(x)
        for block in 0..<x.count / 32 {
            let part = x[32 * block..<32 * block + 32]
            let largest = part.map { abs($0) }.max()!
            var scale = largest / 127
            if scale < .leastNormalMagnitude && Double(scale) * 127 < Double(largest) { scale = scale.nextUp }
            XCTAssertEqual(scales[block].bitPattern, scale.bitPattern, "block \(block) scale, \(kernel)")
            let inverse: Float = scale > 0 ? 1 / scale : 0
            for i in part.indices {
                let want = inverse.isInfinite ? (x[i] / scale).rounded(.toNearestOrEven) : (x[i] * inverse).rounded(.toNearestOrEven)
                XCTAssertEqual(Int(values[i]), Int(want), "value \(i), \(kernel)")
                XCTAssertLessThanOrEqual(abs(Int(values[i])), 127, "value \(i), \(kernel)")
            }
        }
    }

    /// Every type and path, k of 1, 2 and 11 blocks of 256 (odd block counts for the two
    /// accumulators), 7 weight rows (not a multiple of any unroll), 1 … 16 input rows, blocks at
    /// 4 byte offsets from alignment: within the bounds above of the same-activation reference
    /// and of the float one.
    func testProductsMatchReferencesOnEveryPath() {
        var random = TestValues(seed: 42)
        let rows = 7
        for (t, type) in Self.allTypes.enumerated() {
            for (c, cols) in [256, 512, 2816].enumerated() {
                let misalignment = [0, 1, 3, 7][(t + c) % 4]
                let sample = GGMLSample(type, rows: rows, cols: cols, seed: 500 + UInt64(10 * t + c), misalignment: misalignment)
                let n = [1, 5, 16][c]
                let x = (0..<n * cols).map { _ in
                    random.next() * Float(sign: .plus, exponent: Int(random.next() * 4), significand: 1)
                }
                for kernel in Self.kernels {
                    XCTAssertTrue(Kernels.forceGGMLKernel(kernel))
                    let y = FloatBuffer(count: n * rows)
                    Kernels.matmul(sample.matrix, input: FloatBuffer(x), rows: n, output: y,
                                   scratch: MatmulScratch(maxRows: n, maxCols: cols), independentRows: true)
                    let got = y.array()
                    for b in 0..<n {
                        let xb = Array(x[b * cols..<(b + 1) * cols])
                        for r in 0..<rows {
                            let label = "\(type.name) k \(cols) \(kernel) input \(b) row \(r) (offset \(misalignment))"
                            sample.check(got[b * rows + r], row: r, input: xb, label)
                        }
                    }
                }
            }
        }
    }

    /// Prompt blocks (more than 16 rows, not `independentRows`): with the blocked products on,
    /// quantized types take the int8 prompt products where the CPU has them (gemm_int8.h; 32-row
    /// stripes, so 13 and 70 rows end in partial stripes); every output within the same bounds.
    func testPromptBlocksMatchReferences() {
        var random = TestValues(seed: 47)
        let wasBlocked = Kernels.blockedProductsEnabled
        defer { Kernels.setBlockedProducts(enabled: wasBlocked) }
        Kernels.setBlockedProducts(enabled: true)
        for (t, type) in Self.quantizedTypes.enumerated() {
            for (c, (cols, rows)) in [(256, 13), (2816, 70)].enumerated() {
                let sample = GGMLSample(type, rows: rows, cols: cols, seed: 1000 + UInt64(10 * t + c), misalignment: 3 * c)
                for (n, workers) in [(17, 1), (33, 2)] {
                    let x = (0..<n * cols).map { _ in random.next() * Float(sign: .plus, exponent: Int(random.next() * 4), significand: 1) }
                    let y = FloatBuffer(count: n * rows)
                    Kernels.matmul(sample.matrix, input: FloatBuffer(x), rows: n, output: y,
                                   scratch: MatmulScratch(maxRows: n, maxCols: cols, workers: workers),
                                   pool: workers > 1 ? WorkerPool(workers: workers) : nil)
                    let got = y.array()
                    for b in 0..<n {
                        let xb = Array(x[b * cols..<(b + 1) * cols])
                        for r in 0..<rows {
                            sample.check(got[b * rows + r], row: r, input: xb, "\(type.name) prompt block k \(cols) n \(n) input \(b) row \(r)")
                        }
                    }
                }
            }
        }
    }

    /// One block (k = 32; 256 for the K types) and a row range that is not the whole matrix:
    /// chunks of any range give their rows the same bits as the whole call.
    func testSmallestRowsAndChunkRanges() {
        var random = TestValues(seed: 43)
        for (t, type) in Self.allTypes.enumerated() {
            let cols = type.blockSize == 256 ? 256 : 32
            let rows = 13
            let sample = GGMLSample(type, rows: rows, cols: cols, seed: 600 + UInt64(t), misalignment: 5)
            let n = 3
            let x = random.array(n * cols)
            for kernel in Self.kernels {
                XCTAssertTrue(Kernels.forceGGMLKernel(kernel))
                let whole = Kernels.ggmlStreamingProduct(sample.matrix, input: x, rows: n, rowRange: 0..<rows)
                for b in 0..<n {
                    for r in 0..<rows {
                        sample.check(whole[b * rows + r], row: r, input: Array(x[b * cols..<(b + 1) * cols]),
                                     "\(type.name) one block \(kernel) input \(b) row \(r)")
                    }
                }
                for range in [0..<1, 3..<11, 12..<13, 5..<6] {
                    let part = Kernels.ggmlStreamingProduct(sample.matrix, input: x, rows: n, rowRange: range)
                    for b in 0..<n {
                        for r in 0..<rows {
                            let want = range.contains(r) ? whole[b * rows + r].bitPattern : 0
                            XCTAssertEqual(part[b * rows + r].bitPattern, want, "\(type.name) \(kernel) rows \(range), input \(b) row \(r)")
                        }
                    }
                }
            }
        }
    }

    /// Rows of 9 … 15 blocks of 32: the 512-bit kernels take blocks 8 at a time, two per
    /// vector, and the rest one by one; every remainder must give the reference's sum.
    func testBlocksPastTheLastGroupOfEight() {
        var random = TestValues(seed: 47)
        for (t, type) in [GGMLType.q8_0, .q4_0, .q5_0].enumerated() {
            for blocks in 9...15 {
                let cols = 32 * blocks, rows = 5, n = 2
                let sample = GGMLSample(type, rows: rows, cols: cols, seed: 900 + UInt64(16 * t + blocks), misalignment: blocks % 4)
                let x = random.array(n * cols)
                for kernel in Self.kernels {
                    XCTAssertTrue(Kernels.forceGGMLKernel(kernel))
                    let y = Kernels.ggmlStreamingProduct(sample.matrix, input: x, rows: n, rowRange: 0..<rows)
                    for b in 0..<n {
                        for r in 0..<rows {
                            sample.check(y[b * rows + r], row: r, input: Array(x[b * cols..<(b + 1) * cols]),
                                         "\(type.name) \(blocks) blocks \(kernel) input \(b) row \(r)")
                        }
                    }
                }
            }
        }
    }

    /// A row's output is the same bits alone and in a batch of 2 … 16 (and 40, past the
    /// kernels' unroll), with 1, 2 and 3 workers, on every path.
    func testRowsAreTheSameAloneOrInABatch() {
        var random = TestValues(seed: 44)
        let rows = 70, cols = 512
        for (t, type) in Self.allTypes.enumerated() {
            let sample = GGMLSample(type, rows: rows, cols: cols, seed: 700 + UInt64(t), misalignment: 2)
            let x = (0..<40 * cols).map { _ in random.next() * Float(sign: .plus, exponent: Int(random.next() * 8), significand: 1) }
            let input = FloatBuffer(x)
            for kernel in Self.kernels {
                XCTAssertTrue(Kernels.forceGGMLKernel(kernel))
                let scratch = MatmulScratch(maxRows: 40, maxCols: cols, workers: 3)
                func product(n: Int, offset: Int, pool: WorkerPool?) -> [UInt32] {
                    let y = FloatBuffer(count: n * rows)
                    Kernels.matmul(sample.matrix, input: input, inputOffset: offset * cols, rows: n, output: y,
                                   scratch: scratch, pool: pool, independentRows: true)
                    return y.array().map(\.bitPattern)
                }
                let alone = (0..<40).flatMap { product(n: 1, offset: $0, pool: nil) }
                for (n, workers) in [(2, 1), (3, 2), (4, 3), (5, 2), (8, 2), (13, 3), (16, 2), (40, 2)] {
                    let pool = workers > 1 ? WorkerPool(workers: workers) : nil
                    XCTAssertEqual(product(n: n, offset: 0, pool: pool), Array(alone[0..<n * rows]),
                                   "\(type.name) \(kernel): a batch of \(n) (\(workers) workers) against rows alone")
                }
            }
        }
    }

    /// A NaN or an infinity in the input reaches every output of its row (never read as zeros),
    /// and the other rows of the batch stay finite.
    func testNonFiniteActivationsPropagate() {
        var random = TestValues(seed: 45)
        let rows = 9, cols = 512
        for (t, type) in Self.allTypes.enumerated() {
            let sample = GGMLSample(type, rows: rows, cols: cols, seed: 800 + UInt64(t), misalignment: 1)
            for kernel in Self.kernels {
                XCTAssertTrue(Kernels.forceGGMLKernel(kernel))
                for bad in [Float.nan, .infinity, -.infinity] {
                    var x = random.array(3 * cols)
                    x[cols + 300] = bad  // input row 1
                    let y = FloatBuffer(count: 3 * rows)
                    Kernels.matmul(sample.matrix, input: FloatBuffer(x), rows: 3, output: y,
                                   scratch: MatmulScratch(maxRows: 3, maxCols: cols), independentRows: true)
                    let got = y.array()
                    for r in 0..<rows {
                        XCTAssertTrue(got[r].isFinite && got[2 * rows + r].isFinite, "\(type.name) \(kernel) \(bad): other rows")
                        XCTAssertFalse(got[rows + r].isFinite, "\(type.name) \(kernel) \(bad): row \(r) is \(got[rows + r])")
                        if type != .f16 && type != .bf16 {
                            // A NaN or an infinity has no int8 form: the block's scale is NaN.
                            XCTAssertTrue(got[rows + r].isNaN, "\(type.name) \(kernel) \(bad): row \(r) is \(got[rows + r])")
                        }
                    }
                }
            }
        }
    }

    /// One fused call over Q4_K, Q6_K, Q8_0, F16 and Q5_0 matrices (as a mixed Q4_K_M file has):
    /// the input is quantized once for all, and each output is the same bits as its own call.
    func testFusedCallsMixTypes() {
        var random = TestValues(seed: 46)
        let cols = 512
        let samples = [GGMLSample(.q4_K, rows: 33, cols: cols, seed: 901, misalignment: 0),
                       GGMLSample(.q6_K, rows: 17, cols: cols, seed: 902, misalignment: 3),
                       GGMLSample(.f16, rows: 20, cols: cols, seed: 903, misalignment: 2)]
        let others = [GGMLSample(.q8_0, rows: 24, cols: cols, seed: 904, misalignment: 1),
                      GGMLSample(.q5_0, rows: 24, cols: cols, seed: 905, misalignment: 0)]
        let pool = WorkerPool(workers: 2)
        for kernel in Self.kernels {
            XCTAssertTrue(Kernels.forceGGMLKernel(kernel))
            for n in [1, 4] {
                let x = FloatBuffer(random.array(n * cols))
                let scratch = MatmulScratch(maxRows: n, maxCols: cols, workers: 2)
                for group in [samples, others] {
                    let outputs = group.map { FloatBuffer(count: n * $0.matrix.rows) }
                    let targets = zip(group, outputs).map { Kernels.MatmulTarget($0.matrix, $1) }
                    let products = targets.count == 3 ? Kernels.Products(targets[0], targets[1], targets[2])
                                                      : Kernels.Products(targets[0], targets[1])
                    Kernels.fusedMatmul(products, input: x, rows: n, scratch: scratch, pool: pool, independentRows: true)
                    for (sample, y) in zip(group, outputs) {
                        let alone = FloatBuffer(count: n * sample.matrix.rows)
                        Kernels.matmul(sample.matrix, input: x, rows: n, output: alone, scratch: scratch, independentRows: true)
                        XCTAssertEqual(y.array().map(\.bitPattern), alone.array().map(\.bitPattern),
                                       "\(sample.type.name) \(kernel) n \(n) fused with others")
                    }
                }
            }
        }
    }
}

/// Random GGUF blocks of one type with their exact dequantization and the checks of the bounds
/// above. Quantized values are random bits; each f16 scale is a finite one chosen so that the
/// values are of order 1 (random bits would give infinities and NaNs).
struct GGMLSample {
    let type: GGMLType
    let matrix: WeightMatrix
    /// The rows dequantized exactly (`GGMLQuants.dequantize`).
    let rows: [[Float]]
    /// Per row and value, c_i of the bound: |dmin| · 63 for Q4_K and Q5_K, else 0.
    let minMagnitudes: [[Double]]

    init(_ type: GGMLType, rows: Int, cols: Int, seed: UInt64, misalignment: Int) {
        var random = TestValues(seed: seed)
        let bytes = randomGGMLBlocks(type, rows: rows, cols: cols, random: &random)
        let rowBytes = type.rowBytes(count: cols)
        precondition(bytes.count == rows * rowBytes)
        let view = ByteBuffer([UInt8](repeating: 0xA5, count: misalignment) + bytes).view.slice(offset: misalignment, count: bytes.count)
        self.type = type
        matrix = WeightMatrix(rows: rows, cols: cols, storage: .ggml(type, view))
        self.rows = (0..<rows).map { r in
            GGMLQuants.dequantize(type, bytes: view.slice(offset: r * rowBytes, count: rowBytes), count: cols)
        }
        minMagnitudes = (0..<rows).map { r in
            guard type == .q4_K || type == .q5_K else { return [Double](repeating: 0, count: cols) }
            return (0..<cols).map { i in
                let at = r * rowBytes + i / 256 * type.bytesPerBlock + 2
                let dmin = Float(Float16(bitPattern: UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8))
                return Double(abs(dmin)) * 63
            }
        }
        for row in self.rows { precondition(row.allSatisfy(\.isFinite), "\(type.name) test blocks must be finite") }
    }

    /// `got` (output `row` for input `x`) against the reference on the same quantized
    /// activations and the float one, with the bounds of GGMLFastProductTests.
    func check(_ got: Float, row r: Int, input x: [Float], _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let w = rows[r], cols = w.count
        let u = Double(Float.ulpOfOne) / 2
        var exact = 0.0, magnitude = 0.0
        if type == .f16 || type == .bf16 {
            for i in 0..<cols {
                exact += Double(w[i]) * Double(x[i])
                magnitude += abs(Double(w[i]) * Double(x[i]))
            }
            let bound = (Double(cols) / 8 + 16) * 2 * u * magnitude
            XCTAssertLessThanOrEqual(abs(Double(got) - exact), bound, "\(label): \(got), float64 \(exact)", file: file, line: line)
            return
        }
        let (q, scales) = GGMLActivations.quantize(x)
        var quantized = 0.0, float = 0.0, rounding = 0.0
        for i in 0..<cols {
            let xq = Double(q[i]) * Double(scales[i / 32])
            quantized += Double(w[i]) * xq
            float += Double(w[i]) * Double(x[i])
            magnitude += (abs(Double(w[i])) + minMagnitudes[r][i]) * abs(xq)
            rounding += 0.501 * Double(scales[i / 32]) * abs(Double(w[i]))
        }
        let bound = (Double(cols / 32) + 16) * 2 * u * magnitude
        XCTAssertLessThanOrEqual(abs(Double(got) - quantized), bound,
                                 "\(label): \(got), same activations in float64 \(quantized)", file: file, line: line)
        XCTAssertLessThanOrEqual(abs(Double(got) - float), bound + rounding,
                                 "\(label): \(got), float activations in float64 \(float)", file: file, line: line)
        // The bound must be tight enough to see a wrong block: below the smallest |block term|
        // would be too strict to ask, but it must be far below the total magnitude.
        XCTAssertLessThan(bound, magnitude / 100, "\(label): bound too loose", file: file, line: line)
    }
}
