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
}
