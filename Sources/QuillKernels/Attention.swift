import CQuillKernels
import Foundation

/// Which two elements of a head one rotary position embedding turns together.
public enum RoPEPairing: String, Sendable {
    /// Pair i is (x[2i], x[2i+1]): llama2.c and llama.cpp's `llama` architecture (ggml's
    /// normal RoPE mode).
    case adjacent
    /// Pair i is (x[i], x[i + headSize/2]): GPT-NeoX-style halves (ggml's NEOX mode, Hugging
    /// Face's `rotate_half`), as llama.cpp runs GPT-NeoX, Qwen2, Gemma and Phi.
    case halves
}

/// Rotary position embedding angles for every (position, pair) of a head, computed once in
/// double precision: pair i at position p turns by p · frequencies[i]. The caller derives the
/// frequencies from the model (base, scaling, per-pair factors); the table assumes none of them.
public final class RotaryTable: @unchecked Sendable {
    public let contextLength: Int
    public let headSize: Int
    /// Which elements of a head form pair i.
    public let pairing: RoPEPairing
    let cosines: FloatBuffer  // (contextLength, headSize / 2)
    let sines: FloatBuffer    // (contextLength, headSize / 2)

    /// A table for positions `0 ..< contextLength` (the positions a run can reach, not
    /// necessarily the model's whole context); `frequencies` (headSize / 2) are the angular
    /// frequencies of the pairs in radians per position.
    public init(contextLength: Int, headSize: Int, frequencies: [Double], pairing: RoPEPairing) throws(AllocationError) {
        precondition(headSize % 2 == 0, "RoPE needs an even head size")
        precondition(frequencies.count == headSize / 2 && frequencies.allSatisfy(\.isFinite), "one finite frequency a pair")
        self.contextLength = contextLength
        self.headSize = headSize
        self.pairing = pairing
        let half = headSize / 2
        cosines = try FloatBuffer(allocating: contextLength * half, for: "the RoPE table")
        sines = try FloatBuffer(allocating: contextLength * half, for: "the RoPE table")
        for position in 0..<contextLength {
            for i in 0..<half {
                let angle = Double(position) * frequencies[i]
                cosines.pointer[position * half + i] = Float(cos(angle))
                sines.pointer[position * half + i] = Float(sin(angle))
            }
        }
    }
}

extension Kernels {
    /// Rotates pair i of every head, as `table.pairing` forms the pairs, by pair i's angle at
    /// the row's position, in each of `n` rows of `width` values; row r is at position `positions[r]`.
    public static func rope(
        _ buffer: FloatBuffer, rows n: Int, width: Int, positions: [Int], table: RotaryTable
    ) {
        let headSize = table.headSize, half = headSize / 2
        precondition(width % headSize == 0 && n * width <= buffer.count && positions.count >= n, "rope sizes")
        // Pair i is (v[i · step], v[i · step + partner]).
        let (step, partner) = table.pairing == .adjacent ? (2, 1) : (1, half)
        for r in 0..<n {
            let position = positions[r]
            precondition(position >= 0 && position < table.contextLength, "rope position out of range")
            let c = table.cosines.pointer + position * half, s = table.sines.pointer + position * half
            let row = buffer.pointer + r * width
            for head in stride(from: 0, to: width, by: headSize) {
                let v = row + head
                for i in 0..<half {
                    let a = i * step, b = a + partner
                    let x0 = v[a], x1 = v[b]
                    v[a] = x0 * c[i] - x1 * s[i]
                    v[b] = x0 * s[i] + x1 * c[i]
                }
            }
        }
    }

    /// The shape of multi-head attention with grouped-query heads, and how scores are formed:
    /// score = scale · q · k, then cap · tanh(score / cap) when `softcap` is set (Gemma 2).
    public struct AttentionShape: Sendable {
        public let heads: Int
        public let kvHeads: Int
        public let headSize: Int
        public let scale: Float
        public let softcap: Float?
        public var dim: Int { heads * headSize }
        public var kvDim: Int { kvHeads * headSize }
        /// `scale` defaults to 1 / √headSize.
        public init(heads: Int, kvHeads: Int, headSize: Int, scale: Float? = nil, softcap: Float? = nil) {
            self.heads = heads
            self.kvHeads = kvHeads
            self.headSize = headSize
            self.scale = scale ?? 1 / Float(headSize).squareRoot()
            self.softcap = softcap
        }
    }

    /// The first position a query at `position` sees: `window` positions end at it (itself and
    /// the window − 1 before it), or the whole prefix when `window` is nil.
    @inline(__always)
    public static func firstVisible(position: Int, window: Int?) -> Int {
        guard let window else { return 0 }
        return max(0, position + 1 - window)
    }

    /// `quill_attend` with soft-capped scores: the same three steps with cap · tanh(s / cap)
    /// between the scores and the softmax.
    static func attendCapped(
        _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>, stride: Int, length: Int,
        headSize: Int, scale: Float, cap: Float, scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    ) {
        for t in 0..<length { scores[t] = scale * dot(q, k + t * stride, headSize) }
        softcap(scores, length, cap)
        softmax(scores, length)
        output.update(repeating: 0, count: headSize)
        for t in 0..<length {
            let p = scores[t], vt = v + t * stride
            for i in 0..<headSize { output[i] += p * vt[i] }
        }
    }

    /// Causal attention for `n` query rows. Row r reads the cache `keys[cacheOf[r]]` /
    /// `values[cacheOf[r]]` (each laid out (layer, contextLength, kvDim), this layer starting at
    /// `layerOffset`) over positions 0...positions[r], or the last `window` of them. Query head h reads KV head
    /// h / (heads / kvHeads). Output row r, head h goes to output[r·dim + h·headSize ...].
    /// (row, head) pairs run in parallel on `pool` when there is enough work; `scores` is scratch
    /// of at least `workers × contextLength` floats.
    public static func attention(
        query: FloatBuffer, rows n: Int, shape: AttentionShape,
        keys: [FloatBuffer], values: [FloatBuffer], cacheOf: [Int], positions: [Int],
        layerOffset: Int, contextLength: Int, scores: FloatBuffer, output: FloatBuffer, pool: WorkerPool? = nil,
        window: Int? = nil
    ) {
        precondition(window.map { $0 >= 1 } ?? true, "attention window")
        let dim = shape.dim, kvDim = shape.kvDim, headSize = shape.headSize
        precondition(n * dim <= query.count && n * dim <= output.count, "attention buffer sizes")
        precondition(cacheOf.count >= n && positions.count >= n, "attention row tables")
        var work = 0
        for r in 0..<n {
            precondition(positions[r] >= 0 && positions[r] < contextLength, "attention position out of range")
            let cache = cacheOf[r]
            precondition(layerOffset + contextLength * kvDim <= keys[cache].count
                         && layerOffset + contextLength * kvDim <= values[cache].count, "attention cache size")
            work += (positions[r] + 1) * dim
        }
        let parallel = pool != nil && work >= 1 << 13 && n * shape.heads > 1
        precondition(scores.count >= (parallel ? pool!.workers : 1) * contextLength, "attention scratch size")
        let groupSize = shape.heads / shape.kvHeads
        let scale = shape.scale

        // One (row, head) pair: scores against every visible cached key, softmax, weighted sum of values.
        func attend(item: Int, scratch: UnsafeMutablePointer<Float>) {
            let r = item / shape.heads, h = item % shape.heads
            let first = firstVisible(position: positions[r], window: window)
            let length = positions[r] + 1 - first
            let q = UnsafePointer(query.pointer + r * dim + h * headSize)
            let kvOffset = layerOffset + first * kvDim + (h / groupSize) * headSize
            let k = UnsafePointer(keys[cacheOf[r]].pointer + kvOffset)
            let v = UnsafePointer(values[cacheOf[r]].pointer + kvOffset)
            let out = output.pointer + r * dim + h * headSize
            if let cap = shape.softcap {
                attendCapped(q, k, v, stride: kvDim, length: length, headSize: headSize, scale: scale, cap: cap,
                             scores: scratch, output: out)
            } else {
                quill_attend(q, k, v, Int32(kvDim), Int32(length), Int32(headSize), scale, scratch, out)
            }
        }

        let items = n * shape.heads
        if let pool, parallel {
            // Chunks of a few items each; every worker has its own row of scratch.
            let perChunk = max(1, items / (4 * pool.workers))
            pool.run(chunks: (items + perChunk - 1) / perChunk) { chunk, worker in
                for item in chunk * perChunk..<min(items, (chunk + 1) * perChunk) {
                    attend(item: item, scratch: scores.pointer + worker * contextLength)
                }
            }
        } else {
            for item in 0..<items { attend(item: item, scratch: scores.pointer) }
        }
    }
}

extension Kernels {
    /// Causal attention for a block of `n` consecutive positions `start ..< start + n` of one
    /// sequence, as two sgemm per head: scores S (n, L) = Q_h (n, hs) · K_hᵀ (hs, L) over all
    /// L = start + n cached positions, a causal mask with softmax per row, then
    /// O_h (n, hs) = P (n, L) · V_h (L, hs). Used for prompt prefill, where it replaces
    /// n × heads small dot-product loops with a few large matrix products.
    /// Heads run in parallel on `pool`; `scores` is scratch of at least
    /// workers × min(n, 64) × (start + n) floats (`blockAttentionScratch`).
    public static func blockAttention(
        query: FloatBuffer, rows n: Int, start: Int, shape: AttentionShape,
        keys: FloatBuffer, values: FloatBuffer, layerOffset: Int, contextLength: Int,
        scores: FloatBuffer, output: FloatBuffer, pool: WorkerPool? = nil, window: Int? = nil
    ) {
        precondition(window.map { $0 >= 1 } ?? true, "attention window")
        let dim = shape.dim, kvDim = shape.kvDim, headSize = shape.headSize
        let length = start + n
        precondition(n >= 1 && start >= 0 && length <= contextLength, "block attention positions")
        let workers = pool?.workers ?? 1
        precondition(n * dim <= query.count && n * dim <= output.count
                     && workers * blockAttentionScratch(rows: n, length: length) <= scores.count, "block attention buffers")
        precondition(layerOffset + contextLength * kvDim <= keys.count && layerOffset + contextLength * kvDim <= values.count,
                     "block attention cache size")
        let groupSize = shape.heads / shape.kvHeads
        let scale = shape.scale, cap = shape.softcap
        // Causal: rows are taken in slices, and a slice multiplies only the keys its last row
        // can see, which for a prompt from position 0 skips nearly half of both products.
        let slice = blockAttentionSlice
        let head = { (h: Int, worker: Int) in
            let s = scores.pointer + worker * blockAttentionScratch(rows: n, length: length)
            let kvOffset = layerOffset + (h / groupSize) * headSize
            for first in stride(from: 0, to: n, by: slice) {
                let rows = min(slice, n - first)
                let seen = start + first + rows  // keys 0 ..< seen are visible to some row of the slice
                // S (rows, seen) = scale · Q_h (rows, hs) · K_hᵀ ; Q rows stride dim, K rows stride kvDim.
                quill_sgemm(1, Int32(rows), Int32(seen), Int32(headSize), scale,
                            query.pointer + first * dim + h * headSize, Int32(dim), keys.pointer + kvOffset, Int32(kvDim),
                            0, s, Int32(seen))
                for r in 0..<rows {
                    let row = s + r * seen
                    let visible = start + first + r + 1  // causal: this row sees positions begin ..< visible
                    let begin = firstVisible(position: visible - 1, window: window)
                    if let cap { softcap(row + begin, visible - begin, cap) }
                    softmax(row + begin, visible - begin)
                    if begin > 0 { row.update(repeating: 0, count: begin) }
                    if visible < seen { (row + visible).update(repeating: 0, count: seen - visible) }
                }
                // O_h (rows, hs) = P (rows, seen) · V_h (seen, hs); output rows stride dim.
                quill_sgemm(0, Int32(rows), Int32(headSize), Int32(seen), 1,
                            s, Int32(seen), values.pointer + kvOffset, Int32(kvDim),
                            0, output.pointer + first * dim + h * headSize, Int32(dim))
            }
        }
        if let pool { pool.run(chunks: shape.heads, head) } else { for h in 0..<shape.heads { head(h, 0) } }
    }

    /// Rows of a prompt block whose scores block attention holds at once.
    static let blockAttentionSlice = 64

    /// Floats of score scratch one worker needs for block attention over `rows` query rows and
    /// `length` visible positions: one slice of rows at a time.
    public static func blockAttentionScratch(rows: Int, length: Int) -> Int { min(rows, blockAttentionSlice) * length }
}
