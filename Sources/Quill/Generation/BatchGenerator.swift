import Dispatch
import QuillKernels

/// The result of one request of a batch.
public struct BatchResult: Sendable {
    /// Index of the request in the order it was given.
    public let index: Int
    public let text: [UInt8]
    public let stats: GenerationStats
}

/// Generates many requests with up to `parallel` sequences decoded together: one step feeds
/// every active sequence's last token as one block, so each weight matrix is read once per step
/// (sgemm) instead of once per sequence. A finished sequence's slot is refilled at once.
public final class BatchGenerator {
    public let transformer: Transformer
    public let tokenizer: Tokenizer
    public let parallel: Int
    private let caches: [KVCache]

    public init(transformer: Transformer, tokenizer: Tokenizer, parallel: Int) {
        precondition(parallel >= 1 && parallel <= transformer.maxLogitRows, "parallel must fit the transformer's logit rows")
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.parallel = parallel
        caches = (0..<parallel).map { _ in transformer.makeCache() }
    }

    private struct Slot {
        var index: Int
        var sequence: SequenceState
        var text: [UInt8] = []
        var pending: Int  // the token to feed at the next step
    }

    /// Runs `requests` (each already validated) and calls `finished` with each result as soon
    /// as it is done (not necessarily in input order). `shouldStop` is polled between steps;
    /// when it returns true, unfinished requests are abandoned and the function returns.
    public func run(
        _ requests: [GenerationRequest], finished: (BatchResult) -> Void, shouldStop: () -> Bool = { false }
    ) {
        var next = 0
        var slots: [Slot?] = Array(repeating: nil, count: parallel)
        let vocab = transformer.config.vocabSize
        var tokens: [Int] = [], positions: [Int] = [], active: [Int] = [], batchCaches: [KVCache] = []

        /// Applies one sampled step to a slot; frees it (reporting the result) when finished.
        func advance(_ s: Int, logits: FloatBuffer, offset: Int) {
            let step = slots[s]!.sequence.step(logits: logits, offset: offset)
            slots[s]!.text += step.bytes
            if let feed = step.feed {
                slots[s]!.pending = feed
            } else {
                let slot = slots[s]!
                slots[s] = nil
                finished(BatchResult(index: slot.index, text: slot.text, stats: slot.sequence.stats))
            }
        }

        while true {
            if shouldStop() { return }
            // Refill free slots: prefill each new prompt into its slot's cache, then sample its first token.
            for s in 0..<parallel where slots[s] == nil && next < requests.count {
                let request = requests[next]
                var sequence = SequenceState(request: request, tokenizer: tokenizer, config: transformer.config)
                let start = DispatchTime.now()
                let logits = transformer.prefill(request.prompt, startPosition: 0, cache: caches[s])
                sequence.recordPromptTime(seconds(since: start))
                slots[s] = Slot(index: next, sequence: sequence, pending: 0)
                next += 1
                advance(s, logits: logits, offset: 0)
            }
            active.removeAll(keepingCapacity: true)
            for s in 0..<parallel where slots[s] != nil { active.append(s) }
            if active.isEmpty {
                if next >= requests.count { return }
                continue
            }
            tokens.removeAll(keepingCapacity: true)
            positions.removeAll(keepingCapacity: true)
            batchCaches.removeAll(keepingCapacity: true)
            for s in active {
                tokens.append(slots[s]!.pending)
                positions.append(slots[s]!.sequence.position - 1)
                batchCaches.append(caches[s])
            }
            let logits = transformer.decode(batchTokens: tokens, batchPositions: positions, caches: batchCaches)
            for (row, s) in active.enumerated() { advance(s, logits: logits, offset: row * vocab) }
        }
    }
}
