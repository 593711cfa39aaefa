import QuillKernels

/// The forward pass over a model's weights, following its `Architecture` (Llama's when nothing
/// else is said): each choice is one named step below (`sublayerInput`, `norm`, `addBias`,
/// `activate`, `embedExtras`, ...). It processes a block of rows at once —
/// each row a (token, position, KV cache) — so one code path serves token-by-token decoding,
/// blocked prompt prefill (every projection one sgemm) and several sequences decoded together.
/// All buffers are allocated at init; a forward pass allocates nothing.
public final class Transformer {
    /// What the forward pass runs on (format-free: any reader's weights).
    public let weights: ModelWeights
    public var config: ModelConfig { weights.config }
    /// Most rows one forward pass processes (the prefill block size).
    public let maxRows: Int
    /// Threads for the matrix products (rows split over a WorkerPool) and attention.
    public let threads: Int
    /// Positions each KV cache of this transformer holds: what the run needs, at most the
    /// model's context. Buffers that grow with positions (RoPE table, attention scratch, caches)
    /// are sized by it, never by the header's context alone.
    public let cacheCapacity: Int
    private let rope: RotaryTable
    private let attentionShape: Kernels.AttentionShape

    // Activations, each (maxRows, width).
    private let x: FloatBuffer       // residual stream (rows, dim)
    private let xb: FloatBuffer      // normed input / projection output (rows, dim)
    private let attention: FloatBuffer  // attention output (rows, qDim)
    private let q: FloatBuffer       // (rows, max(qDim, dim)): queries, then the final norm's output
    private let k: FloatBuffer       // (rows, kvDim)
    private let v: FloatBuffer       // (rows, kvDim)
    private let hb: FloatBuffer      // gate (rows, hiddenDim)
    private let hb2: FloatBuffer     // up (rows, hiddenDim)
    private let scores: FloatBuffer  // attention scratch per thread: (cacheCapacity) or (min(rows, 64), cacheCapacity)
    private let matmulScratch: MatmulScratch  // int8 activations, packed prompt blocks
    private let pool: WorkerPool                    // splits each product's rows over the threads
    /// Logits of the rows that asked for them, (maxLogitRows, vocab).
    public let logits: FloatBuffer
    /// Most rows whose logits one call holds (and most sequences `decode` takes).
    public let maxLogitRows: Int

    // Per-row tables, reused between calls.
    private var tokens: [Int]
    private var positions: [Int]
    private var cacheOf: [Int]
    private var keyCaches: [FloatBuffer] = []
    private var valueCaches: [FloatBuffer] = []
    private var rowCaches: [KVCache] = []  // the caches themselves, for their attention sinks
    /// A windowed layer's ring in the order a context shift rebuilds it: (max ring slots, kvDim)
    /// for keys, then the same for values; empty when no ring is shorter than the cache.
    private let shiftScratch: FloatBuffer

    /// `maxRows` is the prefill block size; `maxLogitRows` (default min(maxRows, 16)) bounds the
    /// logits held at once, which for a 32000-token vocabulary is 128 KB a row. `cacheCapacity`
    /// (default: the model's context) is the most positions a run reaches. Throws when BLAS
    /// cannot be loaded or the buffers cannot be allocated.
    public init(weights: ModelWeights, maxRows: Int = 64, threads: Int = 1, maxLogitRows: Int? = nil,
                cacheCapacity: Int? = nil) throws {
        precondition(maxRows >= 1 && threads >= 1)
        let c = weights.config
        let capacity = cacheCapacity ?? c.contextLength
        precondition(capacity >= 1 && capacity <= c.contextLength, "cache capacity outside the context")
        self.weights = weights
        self.maxRows = maxRows
        self.threads = threads
        self.cacheCapacity = capacity
        // Quill's own workers run the BLAS calls on chunks of rows, so BLAS stays single-threaded:
        // the two never oversubscribe the cores, and no BLAS thread spin-waits.
        try BLAS.load()
        BLAS.setThreads(1)
        // Every angle comes from the configuration: base, scaling, per-pair factors and pairing.
        rope = try RotaryTable(contextLength: c.architecture.positions == .rope ? capacity : 0, headSize: c.headSize,
                               frequencies: c.ropeFrequencies, pairing: c.ropePairing)
        attentionShape = .init(heads: c.headCount, kvHeads: c.kvHeadCount, headSize: c.headSize,
                               scale: c.attentionScale, softcap: c.architecture.attentionSoftcap)
        func buffer(_ rows: Int, _ width: Int, _ purpose: String) throws(AllocationError) -> FloatBuffer {
            let (count, overflow) = rows.multipliedReportingOverflow(by: width)
            guard !overflow else { throw AllocationError(purpose: purpose, bytes: .max) }
            return try FloatBuffer(allocating: count, for: purpose)
        }
        x = try buffer(maxRows, c.dim, "activations")
        xb = try buffer(maxRows, c.dim, "activations")
        attention = try buffer(maxRows, c.qDim, "activations")
        q = try buffer(maxRows, max(c.qDim, c.dim), "activations")
        k = try buffer(maxRows, c.kvDim, "activations")
        v = try buffer(maxRows, c.kvDim, "activations")
        hb = try buffer(maxRows, c.hiddenDim, "activations")
        hb2 = try buffer(maxRows, c.hiddenDim, "activations")
        // Per thread: one row's scores in decode, or one slice of a block's rows in prefill.
        scores = try buffer(threads, Kernels.blockAttentionScratch(rows: maxRows, length: capacity), "attention scores")
        self.maxLogitRows = min(maxRows, max(1, maxLogitRows ?? 16))
        logits = try buffer(self.maxLogitRows, c.vocabSize, "logits")
        matmulScratch = MatmulScratch(maxRows: maxRows, maxCols: max(c.dim, c.hiddenDim, c.qDim), workers: threads)
        pool = WorkerPool(workers: threads)
        tokens = Array(repeating: 0, count: maxRows)
        positions = Array(repeating: 0, count: maxRows)
        cacheOf = Array(repeating: 0, count: maxRows)
        keyCaches.reserveCapacity(maxRows)
        valueCaches.reserveCapacity(maxRows)
        rowCaches.reserveCapacity(maxRows)
        let slots = KVCache.slots(config: c, capacity: capacity, blockRows: maxRows)
        let longestRing = slots.filter { $0 < capacity }.max() ?? 0
        shiftScratch = try buffer(2, longestRing * c.kvDim, "the context shift")
        layerSlots = slots
        layerOffsets = slots.indices.map { l in slots[..<l].reduce(0, +) * c.kvDim }
    }

    /// A forward pass over a llama2.c checkpoint's weights.
    public convenience init(checkpoint: Checkpoint, maxRows: Int = 64, threads: Int = 1, maxLogitRows: Int? = nil,
                            cacheCapacity: Int? = nil) throws {
        try self.init(weights: checkpoint.weights, maxRows: maxRows, threads: threads, maxLogitRows: maxLogitRows,
                      cacheCapacity: cacheCapacity)
    }

    /// A new, empty KV cache for one sequence, holding `cacheCapacity` positions; `sinks` is the
    /// most first positions a context shift will keep (`ContextShift.keep`).
    public func makeCache(sinks: Int = 0) throws(AllocationError) -> KVCache {
        try KVCache(config: config, capacity: cacheCapacity, blockRows: maxRows, sinks: sinks)
    }

    /// Whether a full cache can drop positions and go on (`shift`): keys carry rotary positions,
    /// which turn back exactly, or no positions at all. Learned and sinusoidal positions are
    /// added to the embedding, so every cached key and value depends on its old position.
    public var canShift: Bool { [.rope, .none].contains(config.architecture.positions) }

    /// A context shift: of the `filled` positions of `cache`, keeps positions 0 ..< keep (the
    /// attention sinks) and keep + discard ..< filled, which move down to keep ..< filled − discard,
    /// their keys turned back by `discard` positions (StreamingLLM's positions within the cache).
    /// Every layer is one pass: a full layer slides its kept slots down; a windowed layer's ring is
    /// rebuilt in its new order (from the sinks kept aside when the ring had overwritten them).
    public func shift(_ cache: KVCache, keep: Int, discard: Int, filled: Int) {
        precondition(canShift, "shift needs rotary positions or none")
        precondition(cache.layerSlots == layerSlots, "a KV cache made by another transformer")
        precondition(keep >= 0 && discard >= 1 && keep + discard <= filled && filled <= cacheCapacity, "shift ranges")
        let kvDim = config.kvDim, rotary = config.architecture.positions == .rope
        let remaining = filled - discard
        for l in 0..<config.layerCount {
            let offset = layerOffsets[l], slots = layerSlots[l]
            if slots == cacheCapacity {
                // Slot p holds position p: slide keep + discard ..< filled down by discard.
                let moved = (filled - keep - discard) * kvDim
                Kernels.moveElements(cache.keys, from: offset + (keep + discard) * kvDim, to: offset + keep * kvDim, count: moved)
                Kernels.moveElements(cache.values, from: offset + (keep + discard) * kvDim, to: offset + keep * kvDim, count: moved)
                if rotary {
                    Kernels.unrotate(cache.keys, offset: offset + keep * kvDim, rows: filled - keep - discard, width: kvDim,
                                     by: discard, table: rope)
                }
                continue
            }
            // A ring: new position p′ ∈ [first, remaining) goes to slot p′ mod slots. It was position
            // p′ (a sink) or p′ + discard; the ring still holds every such p ≥ filled − slots, and the
            // sinks it overwrote were kept aside.
            let first = max(0, remaining - slots)
            let valueBase = shiftScratch.count / 2
            for (i, newPosition) in (first..<remaining).enumerated() {
                let old = newPosition < keep ? newPosition : newPosition + discard
                let (keys, values, at): (FloatBuffer, FloatBuffer, Int)
                if old >= filled - slots {
                    (keys, values, at) = (cache.keys, cache.values, offset + (old % slots) * kvDim)
                } else {
                    precondition(old < cache.sinkCount, "a sink the ring overwrote was not kept aside (make the cache with sinks ≥ keep)")
                    (keys, values, at) = (cache.sinkKeys, cache.sinkValues, cache.sinkOffset(layer: l, position: old))
                }
                keys.copy(offset: at, length: kvDim, to: shiftScratch, at: i * kvDim)
                values.copy(offset: at, length: kvDim, to: shiftScratch, at: valueBase + i * kvDim)
            }
            for (i, newPosition) in (first..<remaining).enumerated() {
                let slot = offset + (newPosition % slots) * kvDim
                shiftScratch.copy(offset: i * kvDim, length: kvDim, to: cache.keys, at: slot)
                shiftScratch.copy(offset: valueBase + i * kvDim, length: kvDim, to: cache.values, at: slot)
                if rotary && newPosition >= keep {
                    Kernels.unrotate(cache.keys, offset: slot, rows: 1, width: kvDim, by: discard, table: rope)
                }
            }
        }
    }

    /// Slots of each layer in the caches this transformer makes (rings for windowed layers).
    private var layerSlots: [Int] = []
    /// Element offset of each layer in those caches.
    private var layerOffsets: [Int] = []

    /// Feeds one token at `position` and returns the logits buffer; the next-token logits are
    /// its first `vocabSize` elements.
    @discardableResult
    public func forward(token: Int, position: Int, cache: KVCache) -> FloatBuffer {
        tokens[0] = token
        positions[0] = position
        cacheOf[0] = 0
        setCaches(single: cache)
        run(rows: 1, blockStart: nil)
        computeLogits(rows: 0..<1, decoding: true)
        return logits
    }

    /// Feeds `tokens` at positions `startPosition...` in blocks of `maxRows` and returns the
    /// logits after the last one (first `vocabSize` elements of the returned buffer).
    /// `everyPosition`, when given, receives each position's logits: (index in `tokens`,
    /// buffer, offset of that row's logits).
    @discardableResult
    public func prefill(
        _ input: [Int], startPosition: Int, cache: KVCache,
        everyPosition: ((Int, FloatBuffer, Int) -> Void)? = nil
    ) -> FloatBuffer {
        prefill(input, startPosition: startPosition, cache: cache, stopWhen: { false }, everyPosition: everyPosition)!
    }

    /// `prefill`, checking `stopWhen` before each block: returns nil when it asked to stop
    /// (Ctrl-C), so a long prompt stops within one block. `processed`, when given, receives the
    /// number of tokens fed so far after each block.
    public func prefill(
        _ input: [Int], startPosition: Int, cache: KVCache, stopWhen: () -> Bool,
        processed: ((Int) -> Void)? = nil, everyPosition: ((Int, FloatBuffer, Int) -> Void)? = nil
    ) -> FloatBuffer? {
        precondition(!input.isEmpty, "prefill needs at least one token")
        setCaches(single: cache)
        var start = 0
        while start < input.count {
            if stopWhen() { return nil }
            let n = min(maxRows, input.count - start)
            for r in 0..<n {
                tokens[r] = input[start + r]
                positions[r] = startPosition + start + r
                cacheOf[r] = 0
            }
            let isLast = start + n == input.count
            run(rows: n, blockStart: startPosition + start)
            if let everyPosition {
                // Logits in chunks of maxLogitRows rows; the chunk holding the last row is computed last.
                for first in stride(from: 0, to: n, by: maxLogitRows) {
                    let rows = first..<min(n, first + maxLogitRows)
                    computeLogits(rows: rows, decoding: false)
                    for r in rows { everyPosition(start + r, logits, (r - first) * config.vocabSize) }
                }
                if isLast {
                    let lastRow = (n - 1) % maxLogitRows
                    logits.copy(offset: lastRow * config.vocabSize, length: config.vocabSize, to: logits, at: 0)
                }
            } else if isLast {
                computeLogits(rows: n - 1..<n, decoding: false)
            }
            start += n
            processed?(start)
        }
        return logits
    }

    /// One step for several sequences at once: row r feeds `batchTokens[r]` at
    /// `batchPositions[r]` into `caches[r]`. Logits of row r are at r · vocabSize.
    @discardableResult
    public func decode(batchTokens: [Int], batchPositions: [Int], caches: [KVCache]) -> FloatBuffer {
        let n = batchTokens.count
        precondition(n >= 1 && n <= maxLogitRows && batchPositions.count == n && caches.count == n)
        keyCaches.removeAll(keepingCapacity: true)
        valueCaches.removeAll(keepingCapacity: true)
        rowCaches.removeAll(keepingCapacity: true)
        for r in 0..<n {
            tokens[r] = batchTokens[r]
            positions[r] = batchPositions[r]
            cacheOf[r] = r
            precondition(caches[r].layerSlots == layerSlots, "a KV cache made by another transformer")
            keyCaches.append(caches[r].keys)
            valueCaches.append(caches[r].values)
            rowCaches.append(caches[r])
        }
        run(rows: n, blockStart: nil)
        computeLogits(rows: 0..<n, decoding: true)
        return logits
    }

    private func setCaches(single cache: KVCache) {
        precondition(cache.layerSlots == layerSlots, "a KV cache made by another transformer")
        keyCaches.removeAll(keepingCapacity: true)
        valueCaches.removeAll(keepingCapacity: true)
        rowCaches.removeAll(keepingCapacity: true)
        keyCaches.append(cache.keys)
        valueCaches.append(cache.values)
        rowCaches.append(cache)
    }

    /// The layers for rows 0..<n of the row tables, leaving each row's final residual in `x`.
    /// `blockStart`, when given, says the rows are consecutive positions `blockStart ..< blockStart + n`
    /// of the first cache (a prefill block), which lets attention run as matrix products.
    private func run(rows n: Int, blockStart: Int?) {
        let c = config, a = c.architecture
        // Decoding (no block): each row is its own sequence, so each row's products must not
        // depend on how many sequences share the step (a request gives the same text alone or
        // in a batch of any size).
        let independent = blockStart == nil
        let dim = c.dim, kvDim = c.kvDim, hidden = c.hiddenDim
        for r in 0..<n {
            precondition(tokens[r] >= 0 && tokens[r] < c.vocabSize, "token \(tokens[r]) outside the vocabulary")
            precondition(positions[r] >= 0 && positions[r] < cacheCapacity, "position outside the KV cache")
            Kernels.copyRow(of: weights.tokenEmbedding, row: tokens[r], into: x, at: r * dim)
        }
        embedExtras(rows: n)
        for (l, layer) in weights.layers.enumerated() {
            let e = layer.extras
            // Attention block: h = norm(x); q, k, v = W h (+ b); rotate; cache; attend; x += wo · att.
            let h = sublayerInput(layer.attentionNorm, e.attentionNormBias, rows: n)
            // q (n, qDim), k (n, kvDim), v (n, kvDim) = h (n, dim) · (wq, wk, wv)ᵀ in one parallel region.
            Kernels.fusedMatmul(.init(.init(layer.wq, q), .init(layer.wk, k), .init(layer.wv, v)),
                                input: h, rows: n, scratch: matmulScratch, pool: pool, independentRows: independent)
            addBias(e.queryBias, to: q, rows: n)
            addBias(e.keyBias, to: k, rows: n)
            addBias(e.valueBias, to: v, rows: n)
            if a.positions == .rope {
                Kernels.rope(q, rows: n, width: c.qDim, positions: positions, table: rope)
                Kernels.rope(k, rows: n, width: kvDim, positions: positions, table: rope)
            }
            // Position p goes to slot p mod slots: itself in a full layer, a ring in a windowed one.
            let layerOffset = layerOffsets[l], slots = layerSlots[l]
            for r in 0..<n {
                let slot = layerOffset + (positions[r] % slots) * kvDim
                k.copy(offset: r * kvDim, length: kvDim, to: keyCaches[cacheOf[r]], at: slot)
                v.copy(offset: r * kvDim, length: kvDim, to: valueCaches[cacheOf[r]], at: slot)
                // A ring overwrites its first positions; a context shift may need them back.
                if slots < cacheCapacity, positions[r] < rowCaches[cacheOf[r]].sinkCount {
                    let cache = rowCaches[cacheOf[r]]
                    let aside = cache.sinkOffset(layer: l, position: positions[r])
                    k.copy(offset: r * kvDim, length: kvDim, to: cache.sinkKeys, at: aside)
                    v.copy(offset: r * kvDim, length: kvDim, to: cache.sinkValues, at: aside)
                }
            }
            let window = a.window(layer: l)
            if let blockStart, n > 1 {
                Kernels.blockAttention(
                    query: q, rows: n, start: blockStart, shape: attentionShape, keys: keyCaches[0],
                    values: valueCaches[0], layerOffset: layerOffset, contextLength: cacheCapacity,
                    scores: scores, output: attention, pool: pool, window: window, slots: slots)
            } else {
                Kernels.attention(
                    query: q, rows: n, shape: attentionShape, keys: keyCaches, values: valueCaches,
                    cacheOf: cacheOf, positions: positions, layerOffset: layerOffset,
                    contextLength: cacheCapacity, scores: scores, output: attention, pool: pool, window: window,
                    slots: slots)
            }
            Kernels.matmul(layer.wo, input: attention, rows: n, output: xb, scratch: matmulScratch, pool: pool,
                           independentRows: independent)  // (n, qDim) → (n, dim)
            addBias(e.outputBias, to: xb, rows: n)
            if let post = e.postAttentionNorm { norm(xb, weight: post, bias: nil, rows: n, output: xb) }
            Kernels.add(xb, into: x, count: n * dim)
            normAfterSum(layer.attentionNorm, e.attentionNormBias, rows: n)

            // Feed-forward block: x += w2 · f(h) (+ b), h = norm(x); f gated (w1, w3) or not (w3 alone).
            let f = sublayerInput(layer.ffnNorm, e.ffnNormBias, rows: n)
            if a.feedForward.isGated {
                // gate hb (n, hidden), up hb2 (n, hidden) = f · (w1, w3)ᵀ in one parallel region.
                Kernels.fusedMatmul(.init(.init(layer.w1, hb), .init(layer.w3, hb2)),
                                    input: f, rows: n, scratch: matmulScratch, pool: pool, independentRows: independent)
            } else {
                // up hb (n, hidden) = f · w3ᵀ
                Kernels.matmul(layer.w3, input: f, rows: n, output: hb, scratch: matmulScratch, pool: pool,
                               independentRows: independent)
                addBias(e.upBias, to: hb, rows: n)
            }
            activate(count: n * hidden)
            Kernels.matmul(layer.w2, input: hb, rows: n, output: xb, scratch: matmulScratch, pool: pool,
                           independentRows: independent)   // (n, hidden) → (n, dim)
            addBias(e.downBias, to: xb, rows: n)
            if let post = e.postFFNNorm { norm(xb, weight: post, bias: nil, rows: n, output: xb) }
            Kernels.add(xb, into: x, count: n * dim)
            normAfterSum(layer.ffnNorm, e.ffnNormBias, rows: n)
        }
    }

    /// A sublayer's input, rows 0..<n: norm(x) in `xb` when the norms come first, else x itself.
    @inline(__always)
    private func sublayerInput(_ weight: FloatView, _ bias: FloatView?, rows n: Int) -> FloatBuffer {
        if config.architecture.normPlacement == .post { return x }
        norm(x, weight: weight, bias: bias, rows: n, output: xb)
        return xb
    }

    /// With post-norms only (the original Transformer), x = norm(x) after each residual sum.
    @inline(__always)
    private func normAfterSum(_ weight: FloatView, _ bias: FloatView?, rows n: Int) {
        if config.architecture.normPlacement == .post { norm(x, weight: weight, bias: bias, rows: n, output: x) }
    }

    /// The embedding's scale (Gemma: ×√dim) and learned absolute positions (GPT-2), for rows
    /// 0..<n of `x`. Llama has neither.
    private func embedExtras(rows n: Int) {
        let dim = config.dim, a = config.architecture
        if let factor = a.embeddingScale { Kernels.scale(x, count: n * dim, by: factor) }
        if let table = weights.positionEmbedding {
            for r in 0..<n {
                Kernels.copyRow(of: table, row: positions[r], into: xb, at: r * dim)
            }
            Kernels.add(xb, into: x, count: n * dim)
        }
        if a.positions == .sinusoidal {
            Kernels.addSinusoidalPositions(x, rows: n, dim: dim, positions: positions)
        }
    }

    /// The model's norm of `rows` rows of `dim`: RMSNorm, or LayerNorm with its bias.
    /// `input` and `output` may be the same buffer.
    private func norm(_ input: FloatBuffer, weight: FloatView, bias: FloatView?, rows n: Int, output: FloatBuffer) {
        let c = config
        switch c.architecture.norm {
        case .rms:
            Kernels.rmsnorm(input: input, weight: weight, rows: n, dim: c.dim, output: output, epsilon: c.normEpsilon)
        case .layer:
            Kernels.layerNorm(input: input, weight: weight, bias: bias!, rows: n, dim: c.dim, output: output,
                              epsilon: c.normEpsilon)
        }
    }

    /// Adds a projection's bias to each of `n` rows of `buffer`, when the model has that bias.
    @inline(__always)
    private func addBias(_ bias: FloatView?, to buffer: FloatBuffer, rows n: Int) {
        if let bias { Kernels.addBias(buffer, bias: bias, rows: n, width: bias.count) }
    }

    /// The feed-forward nonlinearity over `count` values, leaving the result in `hb`: gated
    /// kinds read gate `hb` and up `hb2`, the others transform `hb` alone.
    private func activate(count: Int) {
        switch config.architecture.feedForward {
        case .swiglu: Kernels.swiglu(gate: hb, up: hb2, count: count, pool: pool)
        case .geglu: Kernels.geglu(gate: hb, up: hb2, count: count)
        case .gelu: Kernels.gelu(hb, count: count)
        case .relu: Kernels.relu(hb, count: count)
        }
    }

    /// Final norm and classifier for `rows` of the last `run` (at most maxLogitRows), written to
    /// the start of `logits` one row after another. Rows whose logits nobody wants skip this.
    /// `decoding`: rows are separate sequences (see `run`), so the classifier must give each row
    /// the result it would have alone.
    private func computeLogits(rows: Range<Int>, decoding: Bool) {
        precondition(rows.count <= maxLogitRows, "too many logit rows at once")
        let dim = config.dim
        let first = rows.lowerBound, count = rows.count
        x.copy(offset: first * dim, length: count * dim, to: xb, at: 0)
        norm(xb, weight: weights.finalNorm, bias: weights.finalNormBias, rows: count, output: q)
        Kernels.matmul(weights.classifier, input: q, rows: count, output: logits, scratch: matmulScratch, pool: pool,
                       independentRows: decoding)  // (count, dim) → (count, vocab)
        if let cap = config.architecture.finalSoftcap {
            Kernels.softcap(logits, count: count * config.vocabSize, cap: cap)
        }
    }
}
