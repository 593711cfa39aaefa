import Dispatch
import QuillKernels

/// What to generate after a prompt.
public struct GenerationRequest: Sendable {
    /// Prompt ids, BOS included.
    public var prompt: [Int]
    /// New tokens to generate; negative means until the context is full.
    public var maxNewTokens: Int
    public var sampling: SamplingParameters
    /// Keep going past end-of-sequence.
    public var ignoreEOS: Bool
    /// Generation ends when the text contains one of these (it is not part of the output).
    public var stopStrings: [String]
    /// What happens when the KV cache is full; nil: generation stops (and a prompt longer than
    /// the cache is an error). Models whose positions cannot shift stop either way.
    public var contextShift: ContextShift?
    /// `--logprobs N`: record each generated token's log-probabilities and its N most likely
    /// alternatives (0: the token's own only); nil records nothing.
    public var logprobs: Int?
    /// Ids that end generation as end-of-sequence does (a chat template's end of turn).
    public var endTokens: [Int]

    public init(prompt: [Int], maxNewTokens: Int = -1, sampling: SamplingParameters = .init(),
                ignoreEOS: Bool = false, stopStrings: [String] = [], contextShift: ContextShift? = nil,
                logprobs: Int? = nil, endTokens: [Int] = []) {
        self.logprobs = logprobs
        self.endTokens = endTokens
        self.prompt = prompt
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.ignoreEOS = ignoreEOS
        self.stopStrings = stopStrings
        self.contextShift = contextShift
    }

    /// Checks that the prompt fits the context window of `config` (and the `capacity`
    /// positions of the KV caches it will use, when smaller). A longer prompt is accepted when
    /// the run shifts (`contextShift` and `canShift`): `fitted` then keeps its head and tail.
    public func validate(for config: ModelConfig, capacity: Int? = nil, canShift: Bool = false) throws(GenerationError) {
        guard !prompt.isEmpty else { throw GenerationError("the prompt has no tokens") }
        let limit = capacity ?? config.contextLength
        let shifts = contextShift != nil && canShift
        if let shift = contextShift, shifts, maxNewTokens < 0 || prompt.count + maxNewTokens > limit, !shift.fits(capacity: limit) {
            throw GenerationError("keeping \(shift.keep) tokens leaves nothing to drop from a KV cache of \(limit) positions "
                                  + "(keep fewer than \(limit - 1), or use a larger cache)")
        }
        if !shifts {
            if let capacity, capacity < config.contextLength, prompt.count > capacity {
                throw GenerationError("prompt is \(prompt.count) tokens but the KV cache holds \(capacity) positions")
            }
            guard prompt.count <= config.contextLength else {
                throw GenerationError("prompt is \(prompt.count) tokens but the context window is \(config.contextLength)")
            }
        }
        if let bad = prompt.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw GenerationError("token id \(bad) is outside the vocabulary (\(config.vocabSize) tokens)")
        }
    }
}

extension GenerationRequest {
    /// The request as a cache of `capacity` positions runs it: a longer prompt keeps its first
    /// `contextShift.keep` tokens and its end (validated first), with the number of tokens dropped.
    func fitted(capacity: Int) -> (GenerationRequest, dropped: Int) {
        guard let shift = contextShift, prompt.count > capacity else { return (self, 0) }
        var fitted = self
        let (kept, dropped) = shift.truncate(prompt, capacity: capacity)
        fitted.prompt = kept
        return (fitted, dropped)
    }
}

/// One generated token as `--json-stream` reports it.
public struct GeneratedToken: Sendable {
    /// The sampled id.
    public var id: Int
    /// The text this token completes: its piece's bytes, with an unfinished UTF-8 character held
    /// back until a later token completes it (stop strings are not removed here).
    public var bytes: [UInt8]
    /// Set when the request asked for `logprobs`.
    public var logprobs: TokenLogprobs?
}

/// One sequence being generated: its sampler, its text state and its counters. The single
/// and the batched loops both drive it one sampled token at a time.
struct SequenceState {
    let request: GenerationRequest
    private var sampler: Sampler
    private var detokenizer: StreamingDetokenizer
    private var stopFilter: StopStringFilter
    private var history: [Int]
    private let eosID: Int
    private let bosID: Int
    /// Positions the sequence's KV cache holds (at most the model's context).
    private let capacity: Int
    /// The shift to make when the cache is full, nil when the sequence stops there instead.
    private let contextShift: ContextShift?
    /// The position the next fed token takes.
    private(set) var position: Int
    private(set) var stats = GenerationStats()
    let started = DispatchTime.now()

    /// What a step decided: bytes now safe to print, the token to feed next (nil when the
    /// sequence is finished) and, when finished, why.
    struct Step {
        var bytes: [UInt8]
        var feed: Int?
        var stop: StopReason?
        /// A context shift to make on the sequence's cache before `feed` goes in.
        var shift: ShiftPlan?
        /// The token sampled in this step, when one was (it is also in `stats.tokens`).
        var token: GeneratedToken?
    }

    /// `request` as `fitted` made it (its prompt fits the cache), `dropped` the prompt tokens
    /// it left out. `previous`: the ids already in the cache before the prompt (a conversation's
    /// earlier turns), which the prompt follows.
    init(request: GenerationRequest, tokenizer: Tokenizer, transformer: Transformer, dropped: Int = 0, previous: [Int] = []) {
        self.request = request
        sampler = Sampler(parameters: request.sampling, vocabSize: transformer.config.vocabSize)
        detokenizer = StreamingDetokenizer(tokenizer: tokenizer, previous: request.prompt.last)
        stopFilter = StopStringFilter(stopStrings: request.stopStrings)
        history = previous + request.prompt
        eosID = tokenizer.eosID
        bosID = tokenizer.bosID
        capacity = transformer.cacheCapacity
        contextShift = transformer.canShift ? request.contextShift : nil
        position = previous.count + request.prompt.count
        stats.promptTokens = request.prompt.count
        stats.tokensDropped = dropped
        stats.seed = sampler.seed
    }

    mutating func recordPrompt(seconds: Double, processed: Int) {
        stats.promptSeconds = seconds
        stats.promptTokensProcessed = processed
    }

    /// Samples the next token from the logits at `offset` of `logits` and applies the stop rules.
    mutating func step(logits: FloatBuffer, offset: Int) -> Step {
        if request.maxNewTokens >= 0 && stats.generatedTokens >= request.maxNewTokens { return finish(.length) }
        let next = sampler.sample(logits, offset: offset, history: history[...])
        let logprobs = request.logprobs.map { sampler.logprobs(of: next, top: $0, raw: logits, offset: offset) }
        if !request.ignoreEOS && (next == eosID || next == bosID || request.endTokens.contains(next)) { return finish(.eos) }
        stats.generatedTokens += 1
        stats.tokens.append(next)
        if let logprobs { stats.logprobs.append(logprobs) }
        history.append(next)
        let pieceBytes = detokenizer.append(next)
        let token = GeneratedToken(id: next, bytes: pieceBytes, logprobs: logprobs)
        let (bytes, stopped) = stopFilter.push(pieceBytes)
        if stopped {
            var step = finish(.stop, before: bytes)
            step.token = token
            return step
        }
        var shift: ShiftPlan?
        if position >= capacity {
            guard let contextShift else {
                var step = finish(.context, before: bytes)
                step.token = token
                return step
            }
            let discard = contextShift.discard(filled: position)
            shift = ShiftPlan(keep: contextShift.keep, discard: discard, filled: position)
            position -= discard
            stats.shifts += 1
        }
        position += 1
        return Step(bytes: bytes, feed: next, stop: nil, shift: shift, token: token)
    }

    /// Ends the sequence (also used for interruption); releases held-back text unless a stop
    /// string matched.
    mutating func finish(_ reason: StopReason, before bytes: [UInt8] = []) -> Step {
        var out = bytes
        var stop = reason
        if reason != .stop {
            let (tail, stopped) = stopFilter.push(detokenizer.finish(), final: true)
            out += tail
            if stopped { stop = .stop }
        }
        stats.stopReason = stop
        stats.generateSeconds = seconds(since: started) - stats.promptSeconds
        return Step(bytes: out, feed: nil, stop: stop)
    }
}
