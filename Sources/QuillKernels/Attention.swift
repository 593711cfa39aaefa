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

    /// The slots holding positions `first ..< first + count` of a ring of `slots` slots (position
    /// p in slot p mod slots, count ≤ slots): one run, or two when the range wraps past the end.
    @inline(__always)
    static func ringPieces(first: Int, count: Int, slots: Int) -> (Range<Int>, Range<Int>) {
        let start = first % slots
        let head = min(count, slots - start)
        return (start..<start + head, 0..<count - head)
    }

    /// `quill_attend` over the keys and values of two runs of slots (a ring's wrapped window),
    /// with cap · tanh(s / cap) between the scores and the softmax when `cap` is set; the order of
    /// positions does not matter to a softmax-weighted sum. `scores` holds both runs' counts.
    static func attendPieces(
        _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>, stride: Int,
        pieces: (Range<Int>, Range<Int>), headSize: Int, scale: Float, cap: Float?,
        scores: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    ) {
        let slots = Array(pieces.0) + Array(pieces.1)
        for (t, slot) in slots.enumerated() { scores[t] = scale * dot(q, k + slot * stride, headSize) }
        if let cap { softcap(scores, slots.count, cap) }
        softmax(scores, slots.count)
        output.update(repeating: 0, count: headSize)
        for (t, slot) in slots.enumerated() {
            let p = scores[t], vt = v + slot * stride
            for i in 0..<headSize { output[i] += p * vt[i] }
        }
    }

    /// Causal attention for `n` query rows. Row r reads the cache `keys[cacheOf[r]]` /
    /// `values[cacheOf[r]]` (this layer's `slots` slots of kvDim starting at `layerOffset`,
    /// position p in slot p mod slots; slots defaults to contextLength, a slot per position) over
    /// positions 0...positions[r], or the last `window` of them (window ≤ slots). Query head h reads
    /// KV head h / (heads / kvHeads). Output row r, head h goes to output[r·dim + h·headSize ...].
    /// (row, head) pairs run in parallel on `pool` when there is enough work; `scores` is scratch
    /// of at least `workers × contextLength` floats.
    public static func attention(
        query: FloatBuffer, rows n: Int, shape: AttentionShape,
        keys: [FloatBuffer], values: [FloatBuffer], cacheOf: [Int], positions: [Int],
        layerOffset: Int, contextLength: Int, scores: FloatBuffer, output: FloatBuffer, pool: WorkerPool? = nil,
        window: Int? = nil, slots: Int? = nil
    ) {
        let slots = slots ?? contextLength
        precondition(slots >= 1 && slots <= contextLength, "attention slots")
        precondition(window.map { $0 >= 1 } ?? true, "attention window")
        // Every visible position must still be in its slot.
        precondition(slots == contextLength || (window.map { $0 <= slots } ?? false), "a ring shorter than the window")
        let dim = shape.dim, kvDim = shape.kvDim, headSize = shape.headSize
        precondition(n * dim <= query.count && n * dim <= output.count, "attention buffer sizes")
        precondition(cacheOf.count >= n && positions.count >= n, "attention row tables")
        var work = 0
        for r in 0..<n {
            precondition(positions[r] >= 0 && positions[r] < contextLength, "attention position out of range")
            let cache = cacheOf[r]
            precondition(layerOffset + slots * kvDim <= keys[cache].count
                         && layerOffset + slots * kvDim <= values[cache].count, "attention cache size")
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
            let pieces = ringPieces(first: first, count: positions[r] + 1 - first, slots: slots)
            let q = UnsafePointer(query.pointer + r * dim + h * headSize)
            let kvOffset = layerOffset + (h / groupSize) * headSize
            let k = UnsafePointer(keys[cacheOf[r]].pointer + kvOffset)
            let v = UnsafePointer(values[cacheOf[r]].pointer + kvOffset)
            let out = output.pointer + r * dim + h * headSize
            if shape.softcap == nil && pieces.1.isEmpty {
                let at = pieces.0.lowerBound * kvDim
                quill_attend(q, k + at, v + at, Int32(kvDim), Int32(pieces.0.count), Int32(headSize), scale, scratch, out)
            } else {
                attendPieces(q, k, v, stride: kvDim, pieces: pieces, headSize: headSize, scale: scale, cap: shape.softcap,
                             scores: scratch, output: out)
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
    /// sequence, as two sgemm per head: scores S (n, L) = Q_h (n, hs) · K_hᵀ (hs, L) over the
    /// L cached positions some row sees, a causal (or banded, with `window`) mask with softmax per
    /// row, then O_h (n, hs) = P (n, L) · V_h (L, hs). Used for prompt prefill, where it replaces
    /// n × heads small dot-product loops with a few large matrix products. The layer's keys are
    /// `slots` slots from `layerOffset` (position p in slot p mod slots; default contextLength), so
    /// a windowed layer's ring, which must hold window + n − 1 slots, splits a product in two
    /// where the positions wrap. Heads run in parallel on `pool`; `scores` is scratch of at least
    /// workers × min(n, 64) × (start + n) floats (`blockAttentionScratch`).
    public static func blockAttention(
        query: FloatBuffer, rows n: Int, start: Int, shape: AttentionShape,
        keys: FloatBuffer, values: FloatBuffer, layerOffset: Int, contextLength: Int,
        scores: FloatBuffer, output: FloatBuffer, pool: WorkerPool? = nil, window: Int? = nil, slots: Int? = nil
    ) {
        let slots = slots ?? contextLength
        precondition(window.map { $0 >= 1 } ?? true, "attention window")
        // The block's own positions were written before it attends: the ring must still hold the
        // window of its first row.
        precondition(slots == contextLength || (window.map { $0 + n - 1 <= slots } ?? false),
                     "a ring shorter than the window and the block")
        let dim = shape.dim, kvDim = shape.kvDim, headSize = shape.headSize
        let length = start + n
        precondition(n >= 1 && start >= 0 && length <= contextLength && slots <= contextLength, "block attention positions")
        let workers = pool?.workers ?? 1
        precondition(n * dim <= query.count && n * dim <= output.count
                     && workers * blockAttentionScratch(rows: n, length: length) <= scores.count, "block attention buffers")
        precondition(layerOffset + slots * kvDim <= keys.count && layerOffset + slots * kvDim <= values.count,
                     "block attention cache size")
        let groupSize = shape.heads / shape.kvHeads
        let scale = shape.scale, cap = shape.softcap
        // Causal: rows are taken in slices, and a slice multiplies only the keys its rows can
        // see, which for a prompt from position 0 skips nearly half of both products (and with a
        // window, all but window + slice − 1 keys).
        let slice = blockAttentionSlice
        let head = { (h: Int, worker: Int) in
            let s = scores.pointer + worker * blockAttentionScratch(rows: n, length: length)
            let kvOffset = layerOffset + (h / groupSize) * headSize
            for first in stride(from: 0, to: n, by: slice) {
                let rows = min(slice, n - first)
                let seen = start + first + rows  // keys lo ..< seen are visible to some row of the slice
                let lo = firstVisible(position: start + first, window: window)
                let width = seen - lo
                let pieces = ringPieces(first: lo, count: width, slots: slots)
                // S (rows, width) = scale · Q_h (rows, hs) · K_hᵀ, one product a run of slots;
                // Q rows stride dim, K rows stride kvDim; column j is position lo + j.
                var column = 0
                for piece in 0..<2 {
                    let piece = piece == 0 ? pieces.0 : pieces.1
                    if piece.isEmpty { continue }
                    quill_sgemm(1, Int32(rows), Int32(piece.count), Int32(headSize), scale,
                                query.pointer + first * dim + h * headSize, Int32(dim),
                                keys.pointer + kvOffset + piece.lowerBound * kvDim, Int32(kvDim), 0, s + column, Int32(width))
                    column += piece.count
                }
                for r in 0..<rows {
                    let row = s + r * width
                    let visible = start + first + r + 1  // this row sees positions begin ..< visible
                    let begin = firstVisible(position: visible - 1, window: window)
                    let a = begin - lo, b = visible - lo
                    if let cap { softcap(row + a, b - a, cap) }
                    softmax(row + a, b - a)
                    if a > 0 { row.update(repeating: 0, count: a) }
                    if b < width { (row + b).update(repeating: 0, count: width - b) }
                }
                // O_h (rows, hs) = P (rows, width) · V_h (width, hs), summed over the runs; output rows stride dim.
                column = 0
                for piece in 0..<2 {
                    let piece = piece == 0 ? pieces.0 : pieces.1
                    if piece.isEmpty { continue }
                    quill_sgemm(0, Int32(rows), Int32(headSize), Int32(piece.count), 1,
                                s + column, Int32(width), values.pointer + kvOffset + piece.lowerBound * kvDim, Int32(kvDim),
                                column == 0 ? 0 : 1, output.pointer + first * dim + h * headSize, Int32(dim))
                    column += piece.count
                }
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
