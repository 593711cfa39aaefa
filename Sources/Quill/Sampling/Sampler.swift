import Foundation
import QuillKernels

/// A sampled token's log-probabilities (natural log). `logprob` and `top` come from the
/// distribution the sampler drew from before truncation: the logits after the repetition
/// penalty, divided by the temperature (1 when greedy), softmaxed over the whole vocabulary;
/// top-k, top-p and min-p only choose which tokens may be drawn, they do not rescale these.
/// `rawLogprob` is the token's log-softmax of the model's own logits.
public struct TokenLogprobs: Sendable, Equatable {
    /// From the sampler's distribution (penalty and temperature, before truncation).
    public var logprob: Double
    /// From the model's own logits.
    public var rawLogprob: Double
    /// The most likely tokens of that distribution, most likely first (ties: lower id first).
    public var top: [Alternative]

    /// One of the most likely tokens.
    public struct Alternative: Sendable, Equatable {
        /// The token.
        public var id: Int
        /// Its log-probability in the sampler's distribution.
        public var logprob: Double
    }
}

/// Chooses next tokens from logits with one seeded generator. Buffers are sized to the
/// vocabulary once, so sampling a token allocates nothing.
public struct Sampler {
    public let parameters: SamplingParameters
    /// The seed in use (drawn at random when the parameters gave none).
    public let seed: UInt64
    private var generator: SeededGenerator
    private var logits: [Float]
    private var candidates: [Int]      // ids still in the running, most likely first
    private var probabilities: [Double]
    private var seen: [Bool]

    public init(parameters: SamplingParameters, vocabSize: Int) {
        self.parameters = parameters
        seed = parameters.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        generator = SeededGenerator(seed: seed)
        logits = Array(repeating: 0, count: vocabSize)
        candidates = []
        candidates.reserveCapacity(vocabSize)
        probabilities = Array(repeating: 0, count: vocabSize)
        seen = Array(repeating: false, count: vocabSize)
    }

    /// Samples from the `vocabSize` logits at `offset` of `buffer`. `history` is the sequence so
    /// far (prompt and generated), used by the repetition penalty.
    public mutating func sample(_ buffer: FloatBuffer, offset: Int = 0, history: ArraySlice<Int> = []) -> Int {
        buffer.copy(offset: offset, length: logits.count, into: &logits)
        applyRepeatPenalty(history)
        if parameters.temperature == 0 { return greedy() }
        selectTopK()
        keepTopP()
        keepMinP()
        return draw()
    }

    /// Same as `sample` on an array of logits (tests, tools).
    public mutating func sample(logits values: [Float], history: ArraySlice<Int> = []) -> Int {
        sample(FloatBuffer(values), history: history)
    }

    /// The log-probabilities of `token` (just returned by `sample` on the same logits) and of the
    /// `top` most likely tokens; `buffer` and `offset` as given to `sample` (the raw logits).
    /// See `TokenLogprobs` for which distribution they describe.
    public func logprobs(of token: Int, top: Int, raw buffer: FloatBuffer, offset: Int = 0) -> TokenLogprobs {
        // `logits` still holds this step's penalised logits: the truncation steps only reorder
        // and shorten `candidates`.
        let temperature = parameters.temperature == 0 ? 1 : Double(parameters.temperature)
        let normaliser = Sampler.logSumExp(logits, scale: 1 / temperature)
        // One vocabulary-sized copy a token, made only when log-probabilities were asked for.
        let raw = buffer.array(offset: offset, length: logits.count)  // (vocab)
        let rawLogprob = Double(raw[token]) - Sampler.logSumExp(raw, scale: 1)
        var best: [Int] = []  // ids, most likely first; at most `top`
        if top > 0 {
            best.reserveCapacity(top + 1)
            for id in 0..<logits.count {
                if best.count == top && logits[id] <= logits[best[top - 1]] { continue }
                var slot = best.count
                while slot > 0 && logits[best[slot - 1]] < logits[id] { slot -= 1 }
                best.insert(id, at: slot)
                if best.count > top { best.removeLast() }
            }
        }
        func logprob(_ id: Int) -> Double { Double(logits[id]) / temperature - normaliser }
        return TokenLogprobs(logprob: logprob(token), rawLogprob: rawLogprob,
                             top: best.map { TokenLogprobs.Alternative(id: $0, logprob: logprob($0)) })
    }

    /// log Σ exp(scale · v), computed in Double from the largest value down so nothing overflows.
    static func logSumExp(_ values: [Float], scale: Double) -> Double {
        guard let largest = values.max() else { return -.infinity }
        let top = Double(largest) * scale
        var sum = 0.0
        for v in values { sum += exp(Double(v) * scale - top) }
        return top + log(sum)
    }

    private mutating func applyRepeatPenalty(_ history: ArraySlice<Int>) {
        let penalty = parameters.repeatPenalty
        guard penalty != 1, parameters.repeatLastN != 0, !history.isEmpty else { return }
        let window = parameters.repeatLastN < 0 ? history : history.suffix(parameters.repeatLastN)
        for id in window where id >= 0 && id < logits.count && !seen[id] {
            seen[id] = true
            logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty
        }
        for id in window where id >= 0 && id < logits.count { seen[id] = false }
    }

    private func greedy() -> Int {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return best
    }

    /// Fills `candidates` with the k best ids in decreasing logit order (all ids when k is 0).
    private mutating func selectTopK() {
        let k = parameters.topK == 0 ? logits.count : min(parameters.topK, logits.count)
        candidates.removeAll(keepingCapacity: true)
        if k == logits.count {
            candidates.append(contentsOf: 0..<logits.count)
        } else {
            // Keep a small sorted list; most ids lose the first comparison against its tail.
            for id in 0..<logits.count {
                let value = logits[id]
                if candidates.count == k {
                    if value <= logits[candidates[k - 1]] { continue }
                    candidates.removeLast()
                }
                var slot = candidates.count
                while slot > 0 && logits[candidates[slot - 1]] < value { slot -= 1 }
                candidates.insert(id, at: slot)
            }
            return
        }
        let values = logits
        candidates.sort { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }
    }

    /// Probabilities (temperature 1) of the current candidates, written to `probabilities`.
    private mutating func candidateProbabilities(temperature: Float = 1) {
        let top = Double(logits[candidates[0]])
        var sum = 0.0
        for (i, id) in candidates.enumerated() {
            let p = exp((Double(logits[id]) - top) / Double(temperature))
            probabilities[i] = p
            sum += p
        }
        for i in 0..<candidates.count { probabilities[i] /= sum }
    }

    private mutating func keepTopP() {
        guard parameters.topP < 1 else { return }
        candidateProbabilities()
        var cumulative = 0.0
        for i in 0..<candidates.count {
            cumulative += probabilities[i]
            if cumulative >= Double(parameters.topP) {
                candidates.removeLast(candidates.count - i - 1)
                return
            }
        }
    }

    private mutating func keepMinP() {
        guard parameters.minP > 0 else { return }
        // Relative to the best logit: p_i / p_max = exp(l_i - l_max).
        let threshold = Double(logits[candidates[0]]) + log(Double(parameters.minP))
        var keep = candidates.count
        while keep > 1 && Double(logits[candidates[keep - 1]]) < threshold { keep -= 1 }
        candidates.removeLast(candidates.count - keep)
    }

    private mutating func draw() -> Int {
        candidateProbabilities(temperature: parameters.temperature)
        let u = generator.nextUnit()
        var cumulative = 0.0
        for i in 0..<candidates.count {
            cumulative += probabilities[i]
            if u < cumulative { return candidates[i] }
        }
        return candidates[candidates.count - 1]
    }
}
