import QuillKernels

/// Random GGUF blocks for the tests of products on them: quantized values are random bits; each
/// f16 scale is replaced by a finite one (`size` ÷ the largest quantized magnitude, times
/// 0.5 ..< 1.5) so that every value d · q (or d · scale · q − dmin · min) is of order `size`
/// (random bits would give infinities and NaNs, which the products pass through but a
/// tolerance cannot judge).
func randomGGMLBlocks(_ type: GGMLType, rows: Int, cols: Int, size: Float = 1, positiveMins: Bool = false,
                      random: inout TestValues) -> [UInt8] {
    var bytes = [UInt8]()
    func half(_ value: Float) -> [UInt8] {
        let bits = Float16(value).bitPattern
        return [UInt8(bits & 0xFF), UInt8(bits >> 8)]
    }
    func randomBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: Int((random.next() + 1) * 128)) }
    }
    // A scale of `size` · (0.5 ..< 1.5), either sign (or positive).
    func scale(_ size: Float, signed: Bool = true) -> [UInt8] {
        half(size * (signed && random.next() < 0 ? -1 : 1) * (1 + random.next() / 2))
    }
    for _ in 0..<rows * cols / type.blockSize {
        switch type {
        case .f32: bytes += withUnsafeBytes(of: (random.next() * size).bitPattern.littleEndian, Array.init)
        case .f16: bytes += half(random.next() * size)
        case .bf16: bytes += withUnsafeBytes(of: UInt16((random.next() * size).bitPattern >> 16).littleEndian, Array.init)
        // d, then q: |q| ≤ 128, 8, 16.
        case .q8_0: bytes += scale(size / 128) + randomBytes(32)
        case .q4_0: bytes += scale(size / 8) + randomBytes(16)
        case .q5_0: bytes += scale(size / 16) + randomBytes(20)
        // d, dmin, then 6-bit scales and mins (≤ 63) and 4- or 5-bit values.
        case .q4_K: bytes += scale(size / (63 * 15)) + scale(size / 63, signed: !positiveMins) + randomBytes(140)
        case .q5_K: bytes += scale(size / (63 * 31)) + scale(size / 63, signed: !positiveMins) + randomBytes(172)
        // ql, qh, int8 scales, then d: |scale · (q − 32)| ≤ 128 · 32.
        case .q6_K: bytes += randomBytes(208) + scale(size / (128 * 32))
        }
    }
    precondition(bytes.count == rows * type.rowBytes(count: cols))
    return bytes
}
