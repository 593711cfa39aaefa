import Dispatch
import QuillKernels

/// Why generation ended.
public enum StopReason: String, Sendable {
    /// `-n` new tokens were generated.
    case length
    /// The context window is full.
    case context
    /// The model emitted end-of-sequence (or beginning-of-sequence, which ends a story).
    case eos
    /// A stop string appeared in the text.
    case stop
    /// The caller asked to stop (Ctrl-C, closed output).
    case interrupted
}

/// What one generation did, for `--verbose` and JSON output.
public struct GenerationStats: Sendable {
    public var promptTokens = 0
    /// Prompt tokens fed to the model (fewer than `promptTokens` when interrupted during prefill).
    public var promptTokensProcessed = 0
    public var generatedTokens = 0
    /// Time spent feeding the prompt, in seconds.
    public var promptSeconds = 0.0
    /// Time spent generating (sampling and decoding the new tokens), in seconds.
    public var generateSeconds = 0.0
    public var seed: UInt64 = 0
    public var stopReason = StopReason.length
    /// Prompt tokens left out because the prompt was longer than the KV cache.
    public var tokensDropped = 0
    /// Context shifts made (each dropped part of a full KV cache).
    public var shifts = 0
    /// The generated ids, in order.
    public var tokens: [Int] = []
    /// Each generated token's log-probabilities, when the request asked for them.
    public var logprobs: [TokenLogprobs] = []

    public var promptTokensPerSecond: Double { promptSeconds > 0 ? Double(promptTokens) / promptSeconds : 0 }
    public var generateTokensPerSecond: Double {
        generateSeconds > 0 ? Double(generatedTokens) / generateSeconds : 0
    }
}

/// A prompt that does not fit, a model that produces NaN, or a similar request error.
public struct GenerationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Transformer {
    /// Throws when any of `rows` rows of logits (from the start of `logits`) is NaN or infinite:
    /// sampling from them would print garbage. The error names the first non-finite weight
    /// (the whole checkpoint is scanned only now, on the failure path), or says the activations
    /// overflowed when every weight is finite.
    func requireFiniteLogits(rows: Int = 1) throws(GenerationError) {
        guard Kernels.firstNonFinite(logits, count: rows * config.vocabSize) != nil else { return }
        throw nonFiniteLogitsError()
    }

    func nonFiniteLogitsError() -> GenerationError {
        if let bad = weights.firstNonFiniteWeight() {
            return GenerationError("\(weights.source): \(bad); the checkpoint is corrupt")
        }
        return GenerationError("\(weights.source): the model produced NaN or infinite logits although its weights "
                               + "are finite (an activation overflowed)")
    }
}

/// The single-sequence loop: prefill the prompt in blocks, then sample, emit and feed back one
/// token at a time until a stop rule fires. The KV cache outlives a call, so a conversation
/// can continue the sequence it holds (`continuing`) without recomputing it.
public final class Generator {
    public let transformer: Transformer
    public let tokenizer: Tokenizer
    private var cache: KVCache
    /// The ids whose keys and values the cache holds, in position order (after context shifts,
    /// what is left of them).
    public private(set) var cached: [Int] = []

    public init(transformer: Transformer, tokenizer: Tokenizer) throws(AllocationError) {
        self.transformer = transformer
        self.tokenizer = tokenizer
        cache = try transformer.makeCache()
    }

    /// Forgets the sequence in the cache (`/clear`): the next call starts at position 0.
    public func clear() { cached = [] }

    /// Runs `request`. `emit` receives the bytes that are now safe to print (possibly empty);
    /// returning a reason stops generation (Ctrl-C, closed output). `shouldStop` is also checked
    /// between prompt blocks, so a long prompt stops within one block. `onToken` sees each
    /// generated token before its bytes are emitted. With `continuing`, the prompt goes after
    /// the sequence already in the cache (`cached`), which is not fed again; a cache too full
    /// for the prompt shifts first (when the request shifts) or is an error.
    public func generate(
        _ request: GenerationRequest, continuing: Bool = false, shouldStop: () -> Bool = { false },
        onToken: (GeneratedToken) -> Void = { _ in }, emit: ([UInt8]) -> StopReason?
    ) throws(GenerationError) -> GenerationStats {
        try request.validate(for: transformer.config, capacity: transformer.cacheCapacity, canShift: transformer.canShift)
        var request = request
        var dropped = 0
        if continuing && !cached.isEmpty {
            try makeRoom(for: request)
        } else {
            cached = []
            (request, dropped) = request.fitted(capacity: transformer.cacheCapacity)
            cache = try transformer.cache(cache, keeping: request.contextShift)
        }
        let previous = cached
        var sequence = SequenceState(request: request, tokenizer: tokenizer, transformer: transformer, dropped: dropped,
                                     previous: previous)
        let promptStart = DispatchTime.now()
        var processed = 0
        let prefilled = transformer.prefill(request.prompt, startPosition: previous.count, cache: cache, stopWhen: shouldStop,
                                            processed: { processed = $0 })
        sequence.recordPrompt(seconds: seconds(since: promptStart), processed: processed)
        cached += request.prompt.prefix(processed)
        guard var logits = prefilled else {
            _ = sequence.finish(.interrupted)
            return sequence.stats
        }
        while true {
            try transformer.requireFiniteLogits()
            var step = sequence.step(logits: logits, offset: 0)
            if let token = step.token { onToken(token) }
            if let reason = emit(step.bytes), step.stop == nil {
                step = sequence.finish(reason)
                _ = emit(step.bytes)
            }
            guard let next = step.feed else { return sequence.stats }
            if let plan = step.shift { shift(plan) }
            logits = transformer.forward(token: next, position: sequence.position - 1, cache: cache)
            cached.append(next)
        }
    }

    /// Drops `plan.discard` positions after the first `plan.keep` from the cache and from `cached`.
    private func shift(_ plan: ShiftPlan) {
        transformer.shift(cache, keep: plan.keep, discard: plan.discard, filled: plan.filled)
        cached.removeSubrange(plan.keep..<(plan.keep + plan.discard))
    }

    /// Shifts the cache so that `request.prompt` and one generated token fit after `cached`;
    /// throws when the request does not shift or the prompt is too long to fit beside the sinks.
    private func makeRoom(for request: GenerationRequest) throws(GenerationError) {
        let capacity = transformer.cacheCapacity
        let needed = cached.count + request.prompt.count + 1 - capacity
        guard needed > 0 else { return }
        guard let rule = request.contextShift, transformer.canShift else {
            throw GenerationError("the KV cache is full: it holds \(cached.count) of \(capacity) positions and this turn "
                                  + "needs \(request.prompt.count) more (/clear starts over; a larger -c holds more)")
        }
        let discard = max(needed, rule.discard(filled: cached.count))
        guard rule.keep + discard <= cached.count else {
            throw GenerationError("this turn is \(request.prompt.count) tokens: with the \(rule.keep) kept at the start it "
                                  + "does not fit a KV cache of \(capacity) positions (a larger -c holds more)")
        }
        shift(ShiftPlan(keep: rule.keep, discard: discard, filled: cached.count))
    }
}

extension Transformer {
    /// `cache`, or a new one when it did not keep aside the sinks `shift` keeps (a windowed
    /// layer's ring that wraps needs them after a shift).
    func cache(_ cache: KVCache, keeping shift: ContextShift?) throws(GenerationError) -> KVCache {
        guard let shift, shift.keep > cache.sinkCount, cache.layerSlots.contains(where: { $0 < cacheCapacity }) else { return cache }
        do { return try makeCache(sinks: shift.keep) } catch { throw GenerationError(error.description) }
    }
}

/// Seconds elapsed since `start` (monotonic clock).
public func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
