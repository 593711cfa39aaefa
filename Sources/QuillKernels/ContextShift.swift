import Foundation

extension Kernels {
    /// Turns every pair of every head back by `delta` positions, in `rows` rows of `width` values
    /// starting at element `offset` of `buffer`: a key rotated for position p becomes the key
    /// rotated for p − delta. It is the forward pass's rotation (`rope`) with the table's angle at
    /// `delta` negated, so it honours the same pairing and frequencies (base, scaling, per-pair
    /// factors); rotations compose, so one pass moves a cached key to its new position.
    public static func unrotate(
        _ buffer: FloatBuffer, offset: Int, rows: Int, width: Int, by delta: Int, table: RotaryTable
    ) {
        let headSize = table.headSize, half = headSize / 2
        precondition(width % headSize == 0 && offset >= 0 && rows >= 0 && offset + rows * width <= buffer.count,
                     "unrotate sizes")
        precondition(delta >= 0 && delta < table.contextLength, "unrotate angle out of the table")
        // Pair i is (v[i · step], v[i · step + partner]), as in `rope`.
        let (step, partner) = table.pairing == .adjacent ? (2, 1) : (1, half)
        let c = table.cosines.pointer + delta * half, s = table.sines.pointer + delta * half
        for r in 0..<rows {
            let row = buffer.pointer + offset + r * width
            for head in stride(from: 0, to: width, by: headSize) {
                let v = row + head
                for i in 0..<half {
                    let a = i * step, b = a + partner
                    let x0 = v[a], x1 = v[b]
                    // R(−θ) = [[cos θ, sin θ], [−sin θ, cos θ]].
                    v[a] = x0 * c[i] + x1 * s[i]
                    v[b] = x1 * c[i] - x0 * s[i]
                }
            }
        }
    }

    /// Moves `count` elements of `buffer` from `source` to `destination`; the ranges may overlap
    /// (memmove), as they do when a KV cache's kept positions slide down over dropped ones.
    public static func moveElements(_ buffer: FloatBuffer, from source: Int, to destination: Int, count: Int) {
        precondition(count >= 0 && source >= 0 && destination >= 0
                     && source + count <= buffer.count && destination + count <= buffer.count, "move range")
        memmove(buffer.pointer + destination, buffer.pointer + source, count * 4)
    }
}
