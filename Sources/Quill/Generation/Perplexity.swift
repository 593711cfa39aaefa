import Foundation
import QuillKernels

/// How well a model predicts a token sequence under teacher forcing.
public struct PerplexityResult: Sendable {
    /// Tokens in the sequence (BOS included).
    public var tokens = 0
    /// Tokens that were predicted and scored (every token after the first).
    public var scored = 0
    /// Sum of −log p over scored tokens, in nats.
    public var totalNLL = 0.0
    /// False when scoring was interrupted: the figures cover the tokens scored so far.
    public var complete = true
    /// (position, id, log p) of each scored token, when asked for.
    public var perToken: [(position: Int, id: Int, logProbability: Double)] = []

    public var meanNLL: Double { scored > 0 ? totalNLL / Double(scored) : .nan }
    public var perplexity: Double { exp(meanNLL) }
    /// Total NLL in bits divided by `bytes` (the UTF-8 size of the scored text).
    public func bitsPerByte(bytes: Int) -> Double { bytes > 0 ? totalNLL / log(2) / Double(bytes) : .nan }
}

public enum Perplexity {
    /// At least two tokens, all inside the vocabulary: what both ways of scoring need.
    private static func requireScorable(_ tokens: [Int], vocabSize: Int) throws(GenerationError) {
        guard tokens.count >= 2 else { throw GenerationError("need at least 2 tokens to score, got \(tokens.count)") }
        if let bad = tokens.first(where: { $0 < 0 || $0 >= vocabSize }) {
            throw GenerationError("token id \(bad) is outside the vocabulary (\(vocabSize) tokens)")
        }
    }

    /// Scores `tokens` with `transformer`. Sequences longer than the context are scored in
    /// windows of the context length that start every `stride` tokens; each window scores only
    /// the tokens no earlier window scored, so every token counts once and tokens late in a
    /// window see up to a full context of history. Windows are fed in prefill blocks.
    /// `shouldStop` is checked before each block; when it returns true, the result so far comes
    /// back marked incomplete.
    public static func evaluate(
        _ tokens: [Int], transformer: Transformer, stride: Int? = nil, keepPerToken: Bool = false,
        shouldStop: () -> Bool = { false }
    ) throws -> PerplexityResult {
        let config = transformer.config
        let context = transformer.cacheCapacity
        try requireScorable(tokens, vocabSize: config.vocabSize)
        let step = stride ?? max(1, context / 2)
        guard step <= context else { throw GenerationError("a stride of \(step) is larger than the window of \(context) positions") }
        var result = PerplexityResult()
        result.tokens = tokens.count
        let cache = try transformer.makeCache()
        var scoredUpTo = 0  // tokens[0...scoredUpTo] are accounted for (token 0 is never predicted)
        var begin = 0
        var logProbabilities = [Float](repeating: 0, count: config.vocabSize)
        while scoredUpTo < tokens.count - 1 {
            let end = min(begin + context, tokens.count)
            let window = Array(tokens[begin..<end])
            let firstScored = scoredUpTo + 1  // absolute index of the first token this window scores
            // Position p of the window predicts token begin + p + 1.
            var nonFinite = false
            let fed = transformer.prefill(window, startPosition: 0, cache: cache, stopWhen: shouldStop,
                                          everyPosition: { p, logits, offset in
                let target = begin + p + 1
                guard target >= firstScored && target < end, !nonFinite else { return }
                nonFinite = !score(logits, offset: offset, target: target, of: tokens, keepPerToken: keepPerToken,
                                   into: &result, scratch: &logProbabilities)
            })
            if nonFinite { throw transformer.nonFiniteLogitsError() }
            if fed == nil {
                result.complete = false
                return result
            }
            scoredUpTo = end - 1
            begin += step
            if end == tokens.count { break }
        }
        return result
    }

    /// Scores `tokens` as a stream through one rolling KV cache of `transformer.cacheCapacity`
    /// positions (StreamingLLM's evaluation): every token is fed once, in order; when the cache is
    /// full, `shift` keeps the first `shift.keep` tokens (the attention sinks; 0 for a plain
    /// rolling window) and drops half of the rest, and the kept keys take positions within the
    /// cache. Between shifts the tokens go in as prefill blocks. Each token is scored from the
    /// logits after the one before it; `shouldStop` is checked before each block.
    public static func evaluateStreaming(
        _ tokens: [Int], transformer: Transformer, shift: ContextShift, keepPerToken: Bool = false,
        shouldStop: () -> Bool = { false }
    ) throws -> PerplexityResult {
        let config = transformer.config
        let capacity = transformer.cacheCapacity
        try requireScorable(tokens, vocabSize: config.vocabSize)
        guard transformer.canShift || tokens.count <= capacity else {
            throw GenerationError("a rolling cache needs a model whose positions can shift (RoPE or none); this one has "
                                  + "\(config.architecture.positions.rawValue) positions")
        }
        guard shift.fits(capacity: capacity) || tokens.count <= capacity else {
            throw GenerationError("keeping \(shift.keep) tokens leaves nothing to drop from a KV cache of \(capacity) positions "
                                  + "(keep fewer than \(capacity - 1), or use a larger cache)")
        }
        var result = PerplexityResult()
        result.tokens = tokens.count
        let cache = try transformer.makeCache(sinks: shift.keep)
        var logProbabilities = [Float](repeating: 0, count: config.vocabSize)
        var next = 0      // index in `tokens` of the next token to feed
        var position = 0  // the cache position it goes to
        // The last token is never fed: nothing follows it to score.
        while next < tokens.count - 1 {
            if position == capacity {
                let discard = shift.discard(filled: capacity)
                transformer.shift(cache, keep: shift.keep, discard: discard, filled: capacity)
                position -= discard
            }
            let count = min(capacity - position, tokens.count - 1 - next)
            let block = Array(tokens[next..<next + count])
            let first = next
            var nonFinite = false
            // Row i of the block (token first + i) predicts token first + i + 1.
            let fed = transformer.prefill(block, startPosition: position, cache: cache, stopWhen: shouldStop,
                                          everyPosition: { i, logits, offset in
                guard !nonFinite else { return }
                nonFinite = !score(logits, offset: offset, target: first + i + 1, of: tokens, keepPerToken: keepPerToken,
                                   into: &result, scratch: &logProbabilities)
            })
            if nonFinite { throw transformer.nonFiniteLogitsError() }
            if fed == nil {
                result.complete = false
                return result
            }
            next += count
            position += count
        }
        return result
    }

    /// Adds −log p(tokens[target]) under the logits row at `offset` to `result` (and the token to
    /// its per-token list when kept); false, adding nothing, when the row is not finite.
    /// `scratch` holds one row (vocabulary size).
    private static func score(_ logits: FloatBuffer, offset: Int, target: Int, of tokens: [Int], keepPerToken: Bool,
                              into result: inout PerplexityResult, scratch: inout [Float]) -> Bool {
        if Kernels.firstNonFinite(logits, offset: offset, count: scratch.count) != nil { return false }
        logits.copy(offset: offset, length: scratch.count, into: &scratch)
        let logProbability = logSoftmax(scratch, at: tokens[target])
        result.totalNLL -= logProbability
        result.scored += 1
        if keepPerToken { result.perToken.append((target, tokens[target], logProbability)) }
        return true
    }

    /// log softmax(values)[index], in double precision.
    static func logSoftmax(_ values: [Float], at index: Int) -> Double {
        var top = -Double.infinity
        for v in values { top = max(top, Double(v)) }
        var sum = 0.0
        for v in values { sum += exp(Double(v) - top) }
        return Double(values[index]) - top - log(sum)
    }
}
