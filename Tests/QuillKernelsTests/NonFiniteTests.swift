import QuillKernels
import XCTest

/// NaN must survive every kernel it passes through: Quill detects corrupt weights by the NaN
/// they put into the logits, so a kernel that turns NaN into a number hides the corruption.
final class NonFiniteTests: XCTestCase {
    func testSoftmaxAndSwiGLUPropagateNaNOnEveryPath() {
        for vector in [true, false] {
            let previous = Kernels.setVectorActivations(enabled: vector)
            defer { Kernels.setVectorActivations(enabled: previous) }
            for length in [1, 5, 16, 33] {
                for position in [0, length / 2, length - 1] {
                    var values = (0..<length).map { Float($0) * 0.1 }
                    values[position] = .nan
                    let buffer = FloatBuffer(values)
                    Kernels.softmax(buffer, count: length)
                    XCTAssertNotNil(Kernels.firstNonFinite(buffer, count: length), "softmax, vector \(vector), n \(length)")

                    let gate = FloatBuffer(values), up = FloatBuffer([Float](repeating: 1, count: length))
                    Kernels.swiglu(gate: gate, up: up, count: length)
                    XCTAssertTrue(gate[position].isNaN, "swiglu, vector \(vector), n \(length), at \(position)")
                }
            }
        }
    }

    func testFirstNonFiniteFindsTheFirstNaNOrInfinity() {
        for length in [0, 1, 15, 16, 17, 40] {
            XCTAssertNil(Kernels.firstNonFinite(FloatBuffer([Float](repeating: 1, count: length)), count: length))
            for position in 0..<length {
                for bad in [Float.nan, .infinity, -.infinity] {
                    var values = [Float](repeating: -3.5, count: length)
                    values[position] = bad
                    if position + 1 < length { values[length - 1] = .nan }
                    XCTAssertEqual(Kernels.firstNonFinite(FloatBuffer(values), count: length), position)
                }
            }
        }
    }

    /// An int8 product whose input holds a NaN gives NaN in every output of that row, on every
    /// int8 path (quantizing the activations used to turn the NaN's group into zeros).
    func testInt8ProductsCarryNaNInputsIntoTheirOutputs() {
        let rows = 8, cols = 64
        let values = (0..<rows * cols).map { Int8(truncatingIfNeeded: $0 * 37 % 255 - 127) }
        for groupSize in [32, 64] {
            let w = WeightMatrix(rows: rows, cols: cols, storage: .q8(
                values: Int8Buffer(values).view,
                scales: FloatView(FloatBuffer([Float](repeating: 0.01, count: rows * cols / groupSize))), groupSize: groupSize))
            defer { forceQuantizedKernel("auto") }
            for kernel in ["portable", "avx2", "vnni256", "avx512vnni"] where forceQuantizedKernel(kernel) {
                for n in [1, 3, 20] {
                    var x = (0..<n * cols).map { Float($0 % 7) - 3 }
                    x[cols + 5 < x.count ? cols + 5 : 5] = .nan  // row 1 (row 0 when n = 1)
                    let nanRow = n > 1 ? 1 : 0
                    let y = FloatBuffer(count: n * rows)
                    Kernels.matmul(w, input: FloatBuffer(x), rows: n, output: y,
                                   scratch: MatmulScratch(maxRows: n, maxCols: cols), independentRows: true)
                    for r in 0..<rows {
                        XCTAssertTrue(y[nanRow * rows + r].isNaN, "\(kernel), group \(groupSize), n \(n), output \(r)")
                    }
                    if n > 1 { XCTAssertNil(Kernels.firstNonFinite(y, count: rows), "row 0 has no NaN input") }
                }
            }
        }
    }
}
