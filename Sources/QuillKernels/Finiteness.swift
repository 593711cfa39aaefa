import CQuillKernels

extension Kernels {
    /// Index of the first NaN or infinity among `count` elements of `buffer` from `offset`, or nil.
    public static func firstNonFinite(_ buffer: FloatBuffer, offset: Int = 0, count: Int) -> Int? {
        precondition(offset >= 0 && count >= 0 && offset + count <= buffer.count, "finiteness check bounds")
        return firstNonFinite(UnsafePointer(buffer.pointer + offset), count)
    }

    /// Index of the first NaN or infinity in `view`, or nil.
    public static func firstNonFinite(_ view: FloatView) -> Int? { firstNonFinite(view.pointer, view.count) }

    private static func firstNonFinite(_ p: UnsafePointer<Float>, _ n: Int) -> Int? {
        let index = quill_first_non_finite(p, n)
        return index < 0 ? nil : index
    }
}
