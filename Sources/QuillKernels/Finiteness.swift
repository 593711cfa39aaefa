extension Kernels {
    /// Index of the first NaN or infinity among `count` elements of `buffer` from `offset`, or nil.
    public static func firstNonFinite(_ buffer: FloatBuffer, offset: Int = 0, count: Int) -> Int? {
        precondition(offset >= 0 && count >= 0 && offset + count <= buffer.count, "finiteness check bounds")
        return firstNonFinite(UnsafePointer(buffer.pointer + offset), count)
    }

    /// Index of the first NaN or infinity in `view`, or nil.
    public static func firstNonFinite(_ view: FloatView) -> Int? { firstNonFinite(view.pointer, view.count) }

    /// A NaN or an infinity has all exponent bits set: one mask-and-compare per element, with
    /// the scan done in 16-element blocks so the common (all finite) case is a vector loop.
    private static func firstNonFinite(_ p: UnsafePointer<Float>, _ n: Int) -> Int? {
        let exponent: UInt32 = 0x7F80_0000
        let bits = UnsafeRawPointer(p)
        var i = 0
        while i + 16 <= n {
            let block = bits.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self)
            if any((block & exponent) .== SIMD16(repeating: exponent)) { break }
            i += 16
        }
        while i < n {
            if !p[i].isFinite { return i }
            i += 1
        }
        return nil
    }
}
