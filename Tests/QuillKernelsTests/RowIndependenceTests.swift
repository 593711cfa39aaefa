import Foundation
import QuillKernels
import XCTest

/// `independentRows: true` (decoding): a row's output is the same bits alone (n = 1) or in a
/// batch of any size, on every path this CPU runs and whatever the pool's chunks, so a
/// sequence's tokens do not depend on which others share its step.
final class RowIndependenceTests: XCTestCase {
    /// 300 weight rows (not a multiple of 16, so chunks end unevenly), input rows with magnitudes
    /// spread over 2⁻⁸…2⁸ so that summing in another order changes low bits.
    private static let weightRows = 300, counts = [1, 2, 17, 33, 256]

    private func inputs(_ random: inout TestValues, rows: Int, cols: Int) -> [Float] {
        (0..<rows * cols).map { _ in random.next() * Float(sign: .plus, exponent: Int(random.next() * 8), significand: 1) }
    }

    /// The rows of `x` one at a time (no pool) and then `n` at a time (2 workers, and 3 for
    /// n = 33) must agree bitwise; each call's output is also checked by `reference`.
    private func checkRows(
        _ w: WeightMatrix, second: WeightMatrix, x: [Float], scratch: MatmulScratch, label: String,
        reference: (_ row: Int, _ output: [Float]) -> Void
    ) {
        let cols = w.cols, rows = w.rows, rows2 = second.rows
        let maxN = Self.counts.max()!
        let input = FloatBuffer(x)
        var single = [[Float]](), single2 = [[Float]]()
        for b in 0..<maxN {
            let y = FloatBuffer(count: rows), y2 = FloatBuffer(count: rows2)
            Kernels.fusedMatmul(.init(.init(w, y), .init(second, y2)), input: input, inputOffset: b * cols, rows: 1,
                                scratch: scratch, independentRows: true)
            single.append(y.array())
            single2.append(y2.array())
            if b < 3 { reference(b, y.array()) }
        }
        for (n, workers) in Self.counts.map({ ($0, 2) }) + [(33, 3)] {
            let pool = WorkerPool(workers: workers)
            let y = FloatBuffer(count: n * rows), y2 = FloatBuffer(count: n * rows2)
            Kernels.fusedMatmul(.init(.init(w, y), .init(second, y2)), input: input, rows: n,
                                scratch: scratch, pool: pool, independentRows: true)
            var differing = 0
            for b in 0..<n {
                let row = y.array(offset: b * rows, length: rows), row2 = y2.array(offset: b * rows2, length: rows2)
                if row.map(\.bitPattern) != single[b].map(\.bitPattern) || row2.map(\.bitPattern) != single2[b].map(\.bitPattern) {
                    differing += 1
                }
            }
            XCTAssertEqual(differing, 0, "\(label): rows of a batch of \(n) (\(workers) workers) that differ from the row alone")
            reference(n - 1, y.array(offset: (n - 1) * rows, length: rows))
        }
    }

    func testFloat32RowsAreTheSameAloneOrInABatch() {
        var random = TestValues(seed: 21)
        let wasBlocked = Kernels.blockedProductsEnabled
        defer {
            Kernels.forceFloatKernel("auto")
            Kernels.setBlockedProducts(enabled: wasBlocked)
        }
        for cols in [288, 301] {
            let rows = Self.weightRows
            let w = random.array(rows * cols), w2 = random.array(40 * cols)
            let x = inputs(&random, rows: Self.counts.max()!, cols: cols)
            for kernel in ["avx512", "avx2", "portable"] where Kernels.forceFloatKernel(kernel) {
                for blocked in [true, false] {
                    Kernels.setBlockedProducts(enabled: blocked)
                    let label = "float32 cols \(cols), \(kernel), blocked products \(Kernels.blockedProductsEnabled)"
                    checkRows(matrix(w, rows: rows, cols: cols), second: matrix(w2, rows: 40, cols: cols), x: x,
                              scratch: MatmulScratch(maxRows: 256, maxCols: cols, workers: 3), label: label) { b, y in
                        let expected = naiveMatmul(w, rows: rows, cols: cols, Array(x[b * cols..<(b + 1) * cols]), n: 1)
                        // Terms reach 2⁸ and sums ~10³: float rounding over 300 terms stays well under 0.05.
                        assertClose(y, expected, tolerance: 0.05, label + " against plain loops, row \(b)")
                    }
                }
            }
        }
    }

    /// Groups of 64 (320 wide) and of 32 over 288, which 64 does not divide.
    func testQ8RowsAreTheSameAloneOrInABatch() {
        var random = TestValues(seed: 22)
        let wasBlocked = Kernels.blockedProductsEnabled
        defer {
            forceQuantizedKernel("auto")
            Kernels.setBlockedProducts(enabled: wasBlocked)
        }
        for (cols, groupSize) in [(320, 64), (288, 32)] {
            let rows = Self.weightRows
            func q8(rows: Int) -> (WeightMatrix, [Int8], [Float]) {
                let q = (0..<rows * cols).map { _ in Int8(truncatingIfNeeded: Int(random.next() * 127)) }
                let scales = (0..<rows * cols / groupSize).map { _ in abs(random.next()) / 50 + 0.001 }
                let w = WeightMatrix(rows: rows, cols: cols, storage: .q8(
                    values: Int8Buffer(q).view, scales: FloatView(FloatBuffer(scales)), groupSize: groupSize))
                return (w, q, scales)
            }
            let (w, q, scales) = q8(rows: rows), (w2, _, _) = q8(rows: 40)
            let x = inputs(&random, rows: Self.counts.max()!, cols: cols)
            for kernel in ["portable", "avx2", "vnni256", "avx512vnni"] where forceQuantizedKernel(kernel) {
                for blocked in [true, false] {
                    Kernels.setBlockedProducts(enabled: blocked)
                    let label = "q8 cols \(cols) group \(groupSize), \(kernel), blocked products \(Kernels.blockedProductsEnabled)"
                    checkRows(w, second: w2, x: x, scratch: MatmulScratch(maxRows: 256, maxCols: cols, workers: 3), label: label) { b, y in
                        let expected = q8Reference(q, scales, rows: rows, cols: cols, groupSize: groupSize,
                                                   Array(x[b * cols..<(b + 1) * cols]))
                        assertClose(y, expected, tolerance: 0.05, label + " against exact integer sums, row \(b)")
                    }
                }
            }
        }
    }

    /// GGUF blocks of every type (F16, BF16 against float32 inputs; the quantized types against
    /// int8 input blocks, see ggml_dot.h) on every path this CPU runs and the portable one, over
    /// 512 columns; each call's output is also checked against the float64 references of
    /// GGMLFastProductTests (same quantized inputs, and float inputs within their rounding).
    func testGGUFBlockRowsAreTheSameAloneOrInABatch() {
        var random = TestValues(seed: 23)
        defer { Kernels.forceGGMLKernel("auto") }
        let cols = 512, rows = Self.weightRows
        let x = inputs(&random, rows: Self.counts.max()!, cols: cols)
        for (t, type) in GGMLFastProductTests.allTypes.enumerated() {
            let sample = GGMLSample(type, rows: rows, cols: cols, seed: 1100 + UInt64(t), misalignment: t % 4)
            let second = GGMLSample(type, rows: 40, cols: cols, seed: 1200 + UInt64(t), misalignment: 1)
            for kernel in GGMLFastProductTests.kernels {
                XCTAssertTrue(Kernels.forceGGMLKernel(kernel))
                let label = "\(type.name) cols \(cols), \(kernel)"
                checkRows(sample.matrix, second: second.matrix, x: x, scratch: MatmulScratch(maxRows: 256, maxCols: cols, workers: 3),
                          label: label) { b, y in
                    let xb = Array(x[b * cols..<(b + 1) * cols])
                    for r in stride(from: 0, to: rows, by: 37) { sample.check(y[r], row: r, input: xb, label + " row \(r) input \(b)") }
                }
            }
        }
    }
}

/// Independent reference of a Q8_0 product for one input row: activations quantized per group
/// (scale = max|x| / 127, round to nearest even), exact integer dot products per group, the
/// scaled group sums added in double precision.
func q8Reference(_ q: [Int8], _ scales: [Float], rows: Int, cols: Int, groupSize: Int, _ x: [Float]) -> [Float] {
    var xq = [Int](repeating: 0, count: cols), xs = [Double](repeating: 0, count: cols / groupSize)
    for g in 0..<cols / groupSize {
        let largest = x[g * groupSize..<(g + 1) * groupSize].map { abs($0) }.max()!
        let scale = largest / 127
        xs[g] = Double(scale)
        for i in g * groupSize..<(g + 1) * groupSize {
            xq[i] = Int((x[i] * (scale > 0 ? 1 / scale : 0)).rounded(.toNearestOrEven))
        }
    }
    return (0..<rows).map { r in
        var sum = 0.0
        for g in 0..<cols / groupSize {
            var dot = 0
            for i in g * groupSize..<(g + 1) * groupSize { dot += Int(q[r * cols + i]) * xq[i] }
            sum += Double(dot) * Double(scales[r * cols / groupSize + g]) * xs[g]
        }
        return Float(sum)
    }
}
