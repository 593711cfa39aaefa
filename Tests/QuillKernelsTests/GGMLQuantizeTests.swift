import QuillKernels
import XCTest

/// The float32 → half and bfloat16 roundings against independent truths: Swift's own `Float16`
/// conversion (LLVM's correctly rounded fptrunc) and the definition of rounding to nearest even.
/// The block quantizers are checked byte for byte against the PyPI `gguf` package in
/// Tests/python/test_gguf_writer.py.
final class GGMLQuantizeTests: XCTestCase {
    func testHalfRoundingMatchesFloat16ForEveryHalfAndEveryMidpoint() {
        // Every finite half, the midpoints between neighbours (ties), and one float32 step either
        // side of each midpoint: the cases where rounding can go wrong.
        for bits in UInt16(0)...UInt16(0x7bff) {
            for sign: UInt16 in [0, 0x8000] {
                let half = Float16(bitPattern: bits | sign)
                let value = Float(half)
                XCTAssertEqual(GGMLQuants.halfBits(value), bits | sign)
                let next = Float(Float16(bitPattern: (bits + 1) | sign))
                let midpoint = (value + next) / 2  // exact in float32
                for probe in [midpoint, midpoint.nextUp, midpoint.nextDown] {
                    XCTAssertEqual(GGMLQuants.halfBits(probe), Float16(probe).bitPattern, "\(probe)")
                }
            }
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200_000 {
            let value = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))
            guard !value.isNaN else { continue }
            XCTAssertEqual(GGMLQuants.halfBits(value), Float16(value).bitPattern, "\(value)")
        }
        XCTAssertEqual(GGMLQuants.halfBits(65519.99), 0x7bff)
        XCTAssertEqual(GGMLQuants.halfBits(65520), 0x7c00)
        XCTAssertEqual(GGMLQuants.halfBits(-.infinity), 0xfc00)
        XCTAssertTrue(Float16(bitPattern: GGMLQuants.halfBits(.nan)).isNaN)
    }

    func testBFloat16RoundsToNearestEven() {
        // The top 16 bits, plus one when the dropped 16 bits are above half, or exactly half
        // with an odd result: written out for a few bit patterns, then over random ones.
        func reference(_ x: Float) -> UInt16 {
            let bits = x.bitPattern
            let kept = UInt16(bits >> 16), dropped = bits & 0xffff
            return dropped > 0x8000 || (dropped == 0x8000 && kept & 1 == 1) ? kept &+ 1 : kept
        }
        XCTAssertEqual(GGMLQuants.bfloat16Bits(Float(bitPattern: 0x3f80_8000)), 0x3f80)  // tie, even stays
        XCTAssertEqual(GGMLQuants.bfloat16Bits(Float(bitPattern: 0x3f81_8000)), 0x3f82)  // tie, odd rounds up
        XCTAssertEqual(GGMLQuants.bfloat16Bits(Float(bitPattern: 0x3f80_8001)), 0x3f81)
        XCTAssertTrue(Float(bitPattern: UInt32(GGMLQuants.bfloat16Bits(.nan)) << 16).isNaN)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200_000 {
            let value = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))
            guard !value.isNaN else { continue }
            XCTAssertEqual(GGMLQuants.bfloat16Bits(value), reference(value), "\(value)")
        }
    }

    func testQuantizedRowsDecodeWithinHalfAStepOfTheInput() {
        // A property of every block format: each decoded value is within half a quantization step
        // of the value it came from, plus the scale's own F16 rounding (2⁻¹¹ of the block's
        // largest magnitude); a full step for the one code Q4_0 and Q5_0 clamp (+8, +16).
        var generator = SystemRandomNumberGenerator()
        let values = (0..<4096).map { _ in Float.random(in: -1...1, using: &generator) }
        for (type, codes) in [(GGMLType.q8_0, Float(127)), (.q4_0, 8), (.q5_0, 16)] {
            let bytes = GGMLQuants.quantize(type, values, rowLength: 256)
            XCTAssertEqual(bytes.count, type.rowBytes(count: 256) * 16)
            let decoded = GGMLQuants.dequantize(type, bytes: ByteBuffer(bytes).view, count: values.count)
            for block in 0..<values.count / 32 {
                let range = block * 32..<(block + 1) * 32
                let largest = range.map { abs(values[$0]) }.max()!
                let step = largest / codes
                let bound = (type == .q8_0 ? step / 2 : step) + largest * 0x1p-11 * 1.01
                for i in range {
                    XCTAssertLessThanOrEqual(abs(decoded[i] - values[i]), bound, "\(type.name) \(i)")
                }
            }
        }
    }
}
