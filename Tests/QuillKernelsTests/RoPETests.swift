import Foundation
import QuillKernels
import XCTest

/// The RoPE kernel against a plain double-precision loop, for both pairings: the table turns
/// pair i by position · frequencies[i] and nothing else (no base or scaling of its own).
final class RoPETests: XCTestCase {
    /// Rotates `x` (rows of `width`, heads of `headSize`) in doubles, naming the two elements of
    /// pair i directly from the definition of each pairing.
    private func naiveRoPE(_ x: [Float], width: Int, headSize: Int, positions: [Int], frequencies: [Double],
                           pairing: RoPEPairing) -> [Float] {
        var out = x.map(Double.init)
        for (r, position) in positions.enumerated() {
            for head in stride(from: r * width, to: (r + 1) * width, by: headSize) {
                for i in 0..<headSize / 2 {
                    let a = head + (pairing == .adjacent ? 2 * i : i)
                    let b = pairing == .adjacent ? a + 1 : a + headSize / 2
                    let angle = Double(position) * frequencies[i]
                    let x0 = Double(x[a]), x1 = Double(x[b])
                    out[a] = x0 * cos(angle) - x1 * sin(angle)
                    out[b] = x0 * sin(angle) + x1 * cos(angle)
                }
            }
        }
        return out.map { Float($0) }
    }

    func testBothPairingsMatchThePlainLoop() throws {
        var random = TestValues(seed: 11)
        let headSize = 8, width = 24, positions = [0, 1, 7, 300, 4095]
        // Unrelated frequencies (not a power series), so a pair using another pair's angle shows.
        let frequencies = [1.0, 0.37, 0.05, 1e-4]
        for pairing in [RoPEPairing.adjacent, .halves] {
            let table = try RotaryTable(contextLength: 4096, headSize: headSize, frequencies: frequencies, pairing: pairing)
            let x = random.array(positions.count * width)
            let buffer = FloatBuffer(x + [9])
            Kernels.rope(buffer, rows: positions.count, width: width, positions: positions, table: table)
            let expected = naiveRoPE(x, width: width, headSize: headSize, positions: positions, frequencies: frequencies,
                                     pairing: pairing)
            // |x| < 1: cos and sin rounded to float, two products and a sum rounded (2⁻²⁴ relative
            // each) stay below 6 · 2⁻²⁴ ≈ 3.6e-7, plus half an ulp for rounding the expected value.
            assertClose(buffer.array(length: x.count), expected, tolerance: 5e-7, "\(pairing)")
            XCTAssertEqual(buffer.array(offset: x.count), [9], "rope wrote past its rows")
        }
    }

    /// The two pairings are different rotations of the same vector (so the tests above tell
    /// them apart), and each keeps every pair's length.
    func testPairingsDifferAndKeepPairLengths() throws {
        let headSize = 6, frequencies = [0.9, 0.3, 0.1]
        let x: [Float] = [1, 2, 3, 4, 5, 6]
        var results: [[Float]] = []
        for pairing in [RoPEPairing.adjacent, .halves] {
            let table = try RotaryTable(contextLength: 4, headSize: headSize, frequencies: frequencies, pairing: pairing)
            let buffer = FloatBuffer(x)
            Kernels.rope(buffer, rows: 1, width: headSize, positions: [3], table: table)
            let y = buffer.array()
            let pairs = pairing == .adjacent ? [(0, 1), (2, 3), (4, 5)] : [(0, 3), (1, 4), (2, 5)]
            for (a, b) in pairs {
                XCTAssertEqual(Double(y[a] * y[a] + y[b] * y[b]), Double(x[a] * x[a] + x[b] * x[b]), accuracy: 1e-4)
            }
            results.append(y)
        }
        XCTAssertGreaterThan(zip(results[0], results[1]).map { abs($0 - $1) }.max()!, 0.5)
    }
}
