import Foundation
import QuillKernels
import XCTest

/// Prompt blocks (more than 16 input rows) on GGUF block weights of the types the int8 products
/// decode (gemm_int8.h): against a float64 product of the dequantized weights with the same int8
/// form of the input (tight), against the float input (the int8 error bound), NaN propagation,
/// and rows that do not depend on the batch, the chunks or the workers.
///
/// On a CPU without AVX-512 VNNI the int8 products are never taken (`int8PromptProductsEnabled`
/// is false): those products are then the float32 blocked products or sgemm, which also meet the
/// int8 error bound, and the checks that need the int8 path say so and are skipped.
final class GGMLPromptProductTests: XCTestCase {
    private static let int8Types: [GGMLType] = [.q8_0, .q4_0, .q5_0, .q4_K, .q5_K, .q6_K]
    private static let inputCounts = [17, 33, 100]
    /// Size of the test weights: a model's weights are of order 0.02-0.1.
    private static let weightSize: Float = 0.05

    /// A matrix of random blocks placed 3 bytes past a 64-byte boundary (GGUF blocks have no
    /// alignment), with its rows dequantized by the reference decoder.
    private func randomMatrix(_ type: GGMLType, rows: Int, cols: Int, seed: UInt64) -> (WeightMatrix, [[Float]]) {
        var random = TestValues(seed: seed)
        let bytes = randomGGMLBlocks(type, rows: rows, cols: cols, size: Self.weightSize, positiveMins: true, random: &random)
        let view = ByteBuffer([UInt8](repeating: 0x5A, count: 3) + bytes).view.slice(offset: 3, count: bytes.count)
        let rowBytes = type.rowBytes(count: cols)
        let dequantized = (0..<rows).map { r in
            GGMLQuants.dequantize(type, bytes: view.slice(offset: r * rowBytes, count: rowBytes), count: cols)
        }
        for row in dequantized { precondition(row.allSatisfy(\.isFinite), "\(type.name) test blocks must be finite") }
        return (WeightMatrix(rows: rows, cols: cols, storage: .ggml(type, view)), dequantized)
    }

    /// Activations of order 1 with a few outlier columns (8 times larger), as in a model.
    private func activations(n: Int, cols: Int, seed: UInt64) -> [Float] {
        var random = TestValues(seed: seed)
        return (0..<n * cols).map { i in random.next() * (i % cols % 37 == 5 ? 8 : 1) }
    }

    /// Columns of the test matrices: an odd number of blocks for the 32-value types (a chunk of
    /// 64 columns that is half outside the row), 3 blocks for the K types.
    private func columnCounts(_ type: GGMLType) -> [Int] { type.blockSize == 32 ? [96, 512] : [768] }

    private func product(_ w: WeightMatrix, _ x: [Float], n: Int, inputOffset: Int = 0, workers: Int) -> [Float] {
        let y = FloatBuffer(count: n * w.rows)
        Kernels.matmul(w, input: FloatBuffer(x), inputOffset: inputOffset, rows: n, output: y,
                       scratch: MatmulScratch(maxRows: n, maxCols: w.cols, workers: workers),
                       pool: workers > 1 ? WorkerPool(workers: workers) : nil)
        return y.array()
    }

    /// The int8 form is x · (1 / scale) rounded half to even with scale = max|x| / 127 per block
    /// of 32 (all in float32, as a plain loop computes it; x / scale for blocks so small that
    /// 1 / scale overflows); an all-zero block has scale 0 and zeros; a block with a NaN or an
    /// infinity has a NaN scale and zeros.
    func testInt8FormIsTheRoundedScaledInput() {
        var random = TestValues(seed: 51)
        // Blocks of sizes 2⁻⁸ … 2¹¹, one of zeros, two tiny ones (1 / scale overflows; the scale
        // is subnormal and would round below max|x| / 127).
        var x = (0..<704).map { i in random.next() * Float(sign: .plus, exponent: i / 32 - 8, significand: 1) }
        for i in 64..<96 { x[i] = 0 }
        for i in 640..<672 { x[i] = random.next() * 1e-38 }
        for i in 672..<704 { x[i] = random.next() * 1e-43 }
        x[130] = .nan
        x[200] = -.infinity
        let (values, scales) = Kernels.int8PromptForm(of: x)
        for block in 0..<x.count / 32 {
            let part = x[block * 32..<(block + 1) * 32]
            if part.contains(where: { !$0.isFinite }) {
                XCTAssert(scales[block].isNaN, "block \(block): scale \(scales[block]) for a non-finite input")
                XCTAssertEqual(Array(values[block * 32..<(block + 1) * 32]), [Int8](repeating: 0, count: 32), "block \(block)")
                continue
            }
            let largest = part.map(abs).max()!
            var scale = largest / 127
            // Subnormal: rounded up if it fell below max|x| / 127, so that |q| ≤ 127.
            if scale < .leastNormalMagnitude && Double(scale) * 127 < Double(largest) { scale = scale.nextUp }
            let inverse: Float = scale > 0 ? 1 / scale : 0
            XCTAssertEqual(scales[block].bitPattern, scale.bitPattern, "block \(block) scale")
            XCTAssert(values[block * 32..<(block + 1) * 32].allSatisfy { abs(Int($0)) <= 127 }, "block \(block)")
            for i in block * 32..<(block + 1) * 32 {
                let scaled = inverse.isInfinite ? x[i] / scale : x[i] * inverse
                XCTAssertEqual(values[i], Int8(scaled.rounded(.toNearestOrEven)), "value \(i) (\(x[i]))")
            }
            // The int8 error bound of the next tests: |q · scale − x| ≤ scale / 2 + 3 · 2⁻²⁴ · max|x|.
            for i in block * 32..<(block + 1) * 32 {
                XCTAssertLessThanOrEqual(abs(Double(values[i]) * Double(scale) - Double(x[i])),
                                         Double(scale) / 2 + 3 * 0x1p-24 * Double(largest), "value \(i) (\(x[i]))")
            }
        }
    }

    /// Every int8 type, n = 17, 33, 100 input rows (partial panels), 77 weight rows (a partial
    /// stripe), 1 and 2 workers, unaligned blocks: each output against the float64 product of the
    /// dequantized rows with the same int8 form of the input, x̂ = values · scale.
    ///
    /// Tight tolerance: the int8 products compute each block's integer sum exactly and scale it in
    /// float32 (two roundings per block and sub-block, and one per block for the sum over blocks),
    /// so they are within (blocks + 4) · 2⁻²³ · Σ|w·x̂| of the exact product of the weights' exact
    /// values d · scale · q − dmin · min; the reference decoder rounds each weight once (twice with
    /// a min), by at most 2⁻²³ · (|w| + 2 · |dmin · min|), and |dmin · min| ≤ 1.5 · weightSize here.
    /// The tolerance below is (blocks + 8) · 2⁻²³ · Σ (|w| + 2 · minBound) · |x̂|. The int8 error
    /// itself (next test) is hundreds of times larger, so an unscaled block, a wrong sub-block
    /// scale or min, a swapped row or column is far outside.
    func testPromptProductsMatchTheProductWithTheSameInt8Input() throws {
        let wasEnabled = Kernels.setInt8PromptProducts(enabled: true)
        defer { Kernels.setInt8PromptProducts(enabled: wasEnabled) }
        guard Kernels.int8PromptProductsEnabled else {
            throw XCTSkip("no AVX-512 VNNI: the int8 prompt products are not taken on this CPU")
        }
        let rows = 77
        for (t, type) in Self.int8Types.enumerated() {
            for cols in columnCounts(type) {
                let (w, dequantized) = randomMatrix(type, rows: rows, cols: cols, seed: 500 + UInt64(t) * 10 + UInt64(cols))
                let minBound = type == .q4_K || type == .q5_K ? 1.5 * Double(Self.weightSize) : 0
                let blocks = Double(cols / 32)
                for n in Self.inputCounts {
                    let x = activations(n: n, cols: cols, seed: 600 + UInt64(n))
                    for workers in [1, 2] {
                        let got = product(w, x, n: n, workers: workers)
                        for b in 0..<n {
                            let (values, scales) = Kernels.int8PromptForm(of: Array(x[b * cols..<(b + 1) * cols]))
                            let xq = (0..<cols).map { Double(values[$0]) * Double(scales[$0 / 32]) }
                            for r in 0..<rows {
                                var sum = 0.0, magnitude = 0.0
                                for c in 0..<cols {
                                    sum += Double(dequantized[r][c]) * xq[c]
                                    magnitude += (abs(Double(dequantized[r][c])) + 2 * minBound) * abs(xq[c])
                                }
                                let tolerance = (blocks + 8) * 0x1p-23 * magnitude
                                let value = got[b * rows + r]
                                if !(abs(Double(value) - sum) <= tolerance) {
                                    XCTFail("\(type.name) \(cols) cols, n \(n), \(workers) workers: y[\(b)][\(r)] = \(value), "
                                        + "float64 with the int8 input \(sum), tolerance \(tolerance)")
                                    return
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Against the float input, with the int8 products on and off: each output within the int8
    /// error bound of the float64 product of the dequantized rows and x. Bound: x̂ = q · s with
    /// q = round(x · fl(1/s)), so |x̂ − x| ≤ s/2 + 3 · 2⁻²⁴ · max|x| over the block (one rounding of
    /// 1/s, one of x · (1/s)), and |Σ w (x̂ − x)| ≤ Σ_blocks (s/2 + 3 · 2⁻²⁴ · max|x|) · Σ_block |w|;
    /// plus the float32 rounding of the previous test (and of the float32 path when off,
    /// cols · 2⁻²³ · Σ|w·x|, as GGMLWeightTests).
    func testPromptProductsAreWithinTheInt8BoundOfTheFloatProduct() {
        let wasEnabled = Kernels.int8PromptProductsEnabled
        defer { Kernels.setInt8PromptProducts(enabled: wasEnabled) }
        let rows = 77
        for (t, type) in Self.int8Types.enumerated() {
            for cols in columnCounts(type) {
                let (w, dequantized) = randomMatrix(type, rows: rows, cols: cols, seed: 700 + UInt64(t) * 10 + UInt64(cols))
                let minBound = type == .q4_K || type == .q5_K ? 1.5 * Double(Self.weightSize) : 0
                for n in Self.inputCounts {
                    let x = activations(n: n, cols: cols, seed: 800 + UInt64(n))
                    for int8 in [true, false] {
                        Kernels.setInt8PromptProducts(enabled: int8)
                        let got = product(w, x, n: n, workers: 2)
                        var worstRatio = 0.0
                        for b in 0..<n {
                            let (_, scales) = Kernels.int8PromptForm(of: Array(x[b * cols..<(b + 1) * cols]))
                            for r in 0..<rows {
                                var sum = 0.0, rounding = 0.0, int8Error = 0.0
                                for block in 0..<cols / 32 {
                                    var largest = 0.0, weights = 0.0
                                    for c in block * 32..<(block + 1) * 32 {
                                        let (wc, xc) = (Double(dequantized[r][c]), Double(x[b * cols + c]))
                                        sum += wc * xc
                                        rounding += (abs(wc) + 2 * minBound) * (abs(xc) + Double(scales[block]))
                                        largest = max(largest, abs(xc))
                                        weights += abs(wc)
                                    }
                                    int8Error += (Double(scales[block]) / 2 + 3 * 0x1p-24 * largest) * weights
                                }
                                let bound = int8Error + Double(cols) * 0x1p-23 * rounding
                                let value = Double(got[b * rows + r])
                                worstRatio = max(worstRatio, abs(value - sum) / bound)
                                if !(abs(value - sum) <= bound) {
                                    XCTFail("\(type.name) \(cols) cols, n \(n), int8 \(int8): y[\(b)][\(r)] = \(value), "
                                        + "float64 \(sum), bound \(bound)")
                                    return
                                }
                            }
                        }
                        // The bound is a worst case; random rounding errors stay well inside it.
                        XCTAssertLessThan(worstRatio, 0.5, "\(type.name) \(cols) cols, n \(n), int8 \(int8)")
                    }
                }
            }
        }
    }

    /// F32, F16 and BF16 weights (unaligned) keep float32 activations in prompt blocks, converted
    /// while the blocked products pack them: the same bits as the float32 matrix of their values.
    /// (sgemm, without AVX-512, makes no promise about bits across chunkings; there the float64
    /// checks of GGMLWeightTests hold.)
    func testFloatTypesAreTheSameBitsAsTheirFloat32Matrix() throws {
        guard Kernels.blockedProductsEnabled else { throw XCTSkip("no AVX-512: prompt blocks use sgemm") }
        var random = TestValues(seed: 1200)
        for type in [GGMLType.f32, .f16, .bf16] {
            for (rows, cols) in [(77, 512), (40, 200)] {
                let values = random.array(rows * cols)
                var bytes = [UInt8]()
                for value in values {
                    switch type {
                    case .f32: bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init)
                    case .f16: bytes += withUnsafeBytes(of: Float16(value).bitPattern.littleEndian, Array.init)
                    default: bytes += withUnsafeBytes(of: UInt16(value.bitPattern >> 16).littleEndian, Array.init)
                    }
                }
                let view = ByteBuffer([0, 0, 0] + bytes).view.slice(offset: 3, count: bytes.count)
                let w = WeightMatrix(rows: rows, cols: cols, storage: .ggml(type, view))
                let float32 = matrix(GGMLQuants.dequantize(type, bytes: view, count: rows * cols), rows: rows, cols: cols)
                for n in Self.inputCounts {
                    let x = activations(n: n, cols: cols, seed: 1201)
                    XCTAssertEqual(product(w, x, n: n, workers: 2).map(\.bitPattern), product(float32, x, n: n, workers: 2).map(\.bitPattern),
                                   "\(type.name) \(rows) × \(cols), n \(n)")
                }
            }
        }
    }

    /// An input row with a NaN (or an infinity) in one block gives NaN in every output of that row,
    /// never a finite number; the other rows are the same bits as without it.
    func testNonFiniteInputsPropagateToTheirRowOnly() {
        let cols = 512, rows = 40, n = 20
        for (t, type) in Self.int8Types.enumerated() {
            let (w, _) = randomMatrix(type, rows: rows, cols: cols, seed: 900 + UInt64(t))
            let clean = activations(n: n, cols: cols, seed: 901)
            var x = clean
            x[3 * cols + 100] = .nan
            x[11 * cols + 511] = .infinity
            x[12 * cols] = -.infinity
            let got = product(w, x, n: n, workers: 2), reference = product(w, clean, n: n, workers: 2)
            for b in 0..<n {
                let row = Array(got[b * rows..<(b + 1) * rows])
                if [3, 11, 12].contains(b) {
                    // The int8 form of a block with an infinity has a NaN scale: NaN everywhere. (The
                    // float32 paths, without AVX-512 VNNI, may give ±infinity instead.)
                    XCTAssert(row.allSatisfy { Kernels.int8PromptProductsEnabled ? $0.isNaN : !$0.isFinite },
                              "\(type.name): row \(b) has a non-finite input: \(row.prefix(4))")
                } else {
                    XCTAssertEqual(row.map(\.bitPattern), reference[b * rows..<(b + 1) * rows].map(\.bitPattern),
                                   "\(type.name): row \(b)")
                }
            }
        }
    }

    /// A row's outputs are the same bits whichever other rows share the block (17 rows from
    /// offset 0 or 33 from offset 5), whatever the workers and chunks, and in a fused call with
    /// products of other types (int8 and float32 inputs packed in one call).
    func testRowsDoNotDependOnTheBatchTheWorkersOrTheFusedProducts() {
        let cols = 512
        // sgemm (without AVX-512) makes no such promise about rows; the blocked products do.
        for (t, type) in Self.int8Types.enumerated() where Kernels.blockedProductsEnabled {
            let (w, _) = randomMatrix(type, rows: 77, cols: cols, seed: 1000 + UInt64(t))
            let x = activations(n: 40, cols: cols, seed: 1001)
            let first = product(w, x, n: 17, workers: 1)
            let shifted = product(w, x, n: 33, inputOffset: 5 * cols, workers: 2)
            // Rows 5 ..< 17 of the first call are rows 0 ..< 12 of the shifted one.
            XCTAssertEqual(first[5 * 77..<17 * 77].map(\.bitPattern), shifted[0..<12 * 77].map(\.bitPattern), type.name)
            XCTAssertEqual(product(w, x, n: 33, workers: 1).map(\.bitPattern), product(w, x, n: 33, workers: 2).map(\.bitPattern),
                           "\(type.name): 1 against 2 workers")
        }
        let (a, _) = randomMatrix(.q4_K, rows: 13, cols: cols, seed: 1100)
        let (b, _) = randomMatrix(.q6_K, rows: 40, cols: cols, seed: 1101)
        let (c, _) = randomMatrix(.q8_0, rows: 64, cols: cols, seed: 1102)
        let f = matrix(activations(n: 24, cols: cols, seed: 1103), rows: 24, cols: cols)
        let x = FloatBuffer(activations(n: 33, cols: cols, seed: 1104))
        let pool = WorkerPool(workers: 2)
        let scratch = MatmulScratch(maxRows: 33, maxCols: cols, workers: 2)
        for (first, second, third) in [(a, b, c), (a, f, c), (f, b, a)] {
            let outputs = [first, second, third].map { FloatBuffer(count: 33 * $0.rows) }
            Kernels.fusedMatmul(.init(.init(first, outputs[0]), .init(second, outputs[1]), .init(third, outputs[2])), input: x,
                                rows: 33, scratch: scratch, pool: pool)
            for (w, y) in zip([first, second, third], outputs) {
                let alone = FloatBuffer(count: 33 * w.rows)
                Kernels.matmul(w, input: x, rows: 33, output: alone, scratch: scratch, pool: pool)
                XCTAssertEqual(y.array().map(\.bitPattern), alone.array().map(\.bitPattern), "fused, \(w.rows) rows")
            }
        }
    }
}
