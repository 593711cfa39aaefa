import Dispatch
import QuillKernels

/// The result of one request of a batch.
public struct BatchResult: Sendable {
    /// The tag the request was given with (the batch file's line index, for `quill --batch`).
    public let tag: Int
    public let text: [UInt8]
    public let stats: GenerationStats
    /// Why the request failed (the model produced NaN logits, ...), or nil.
    public let failure: String?
}

/// What the request source has for the generator when asked.
public enum BatchInput {
    /// A request (already validated) and the tag its result carries.
    case request(GenerationRequest, tag: Int)
    /// Nothing yet (input still arriving); decode the active sequences meanwhile.
    case notReady
    /// No more requests.
    case end
}

/// Generates many requests with up to `parallel` sequences decoded together: one step feeds
/// every active sequence's last token as one block, so each weight matrix is read once per step
/// instead of once per sequence. A finished sequence's slot is refilled at once. Requests are
/// pulled one at a time, so the input is streamed and the first results appear while later
/// requests are still unread.
public final class BatchGenerator {
    public let transformer: Transformer
    public let tokenizer: Tokenizer
    public let parallel: Int
    private var caches: [KVCache]

    public init(transformer: Transformer, tokenizer: Tokenizer, parallel: Int) throws(AllocationError) {
        precondition(parallel >= 1 && parallel <= transformer.maxLogitRows, "parallel must fit the transformer's logit rows")
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.parallel = parallel
        var caches: [KVCache] = []
        for _ in 0..<parallel { caches.append(try transformer.makeCache()) }
        self.caches = caches
    }

    private struct Slot {
        var tag: Int
        var sequence: SequenceState
        var text: [UInt8] = []
        var pending: Int  // the token to feed at the next step
    }

    /// Runs requests from `next` until it says `.end` and every sequence is done, calling
    /// `finished` with each result as soon as it is done (not necessarily in input order).
    /// `next(canWait)` is asked for a request whenever a slot is free: with `canWait` false
    /// (other sequences are running) it may answer `.notReady`; with `canWait` true it must
    /// wait for a request or the end. `shouldStop` is polled between steps and prompt blocks;
    /// when it returns true, unfinished requests are abandoned and the function returns.
    public func run(
        next: (_ canWait: Bool) -> BatchInput, finished: (BatchResult) -> Void, shouldStop: () -> Bool = { false }
    ) {
        var slots: [Slot?] = Array(repeating: nil, count: parallel)
        var inputEnded = false
        let vocab = transformer.config.vocabSize
        var tokens: [Int] = [], positions: [Int] = [], active: [Int] = [], batchCaches: [KVCache] = []

        func fail(_ s: Int, _ message: String) {
            let slot = slots[s]!
            slots[s] = nil
            finished(BatchResult(tag: slot.tag, text: slot.text, stats: slot.sequence.stats, failure: message))
        }

        /// Applies one sampled step to a slot; frees it (reporting the result) when finished.
        func advance(_ s: Int, logits: FloatBuffer, offset: Int) {
            if Kernels.firstNonFinite(logits, offset: offset, count: vocab) != nil {
                return fail(s, transformer.nonFiniteLogitsError().description)
            }
            let step = slots[s]!.sequence.step(logits: logits, offset: offset)
            slots[s]!.text += step.bytes
            // Each sequence shifts its own cache when it is full, whatever the others do.
            if let plan = step.shift { transformer.shift(caches[s], keep: plan.keep, discard: plan.discard, filled: plan.filled) }
            if let feed = step.feed {
                slots[s]!.pending = feed
            } else {
                let slot = slots[s]!
                slots[s] = nil
                finished(BatchResult(tag: slot.tag, text: slot.text, stats: slot.sequence.stats, failure: nil))
            }
        }

        while true {
            if shouldStop() { return }
            // Refill free slots: prefill each new prompt into its slot's cache, then sample its first token.
            refill: for s in 0..<parallel where slots[s] == nil && !inputEnded {
                let anyActive = slots.contains { $0 != nil }
                switch next(!anyActive) {
                case .end:
                    inputEnded = true
                case .notReady:
                    break refill
                case .request(let request, let tag):
                    // Requests come validated; a longer prompt keeps its head and tail (see `fitted`).
                    let (request, dropped) = request.fitted(capacity: transformer.cacheCapacity)
                    do {
                        caches[s] = try transformer.cache(caches[s], keeping: request.contextShift)
                    } catch {
                        let sequence = SequenceState(request: request, tokenizer: tokenizer, transformer: transformer)
                        finished(BatchResult(tag: tag, text: [], stats: sequence.stats, failure: error.description))
                        continue
                    }
                    var sequence = SequenceState(request: request, tokenizer: tokenizer, transformer: transformer,
                                                 dropped: dropped)
                    let start = DispatchTime.now()
                    var processed = 0
                    let logits = transformer.prefill(request.prompt, startPosition: 0, cache: caches[s], stopWhen: shouldStop,
                                                     processed: { processed = $0 })
                    sequence.recordPrompt(seconds: seconds(since: start), processed: processed)
                    guard let logits else { return }
                    slots[s] = Slot(tag: tag, sequence: sequence, pending: 0)
                    advance(s, logits: logits, offset: 0)
                }
                if shouldStop() { return }
            }
            active.removeAll(keepingCapacity: true)
            for s in 0..<parallel where slots[s] != nil { active.append(s) }
            if active.isEmpty {
                if inputEnded { return }
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
