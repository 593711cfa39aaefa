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
    public var generatedTokens = 0
    /// Time spent feeding the prompt, in seconds.
    public var promptSeconds = 0.0
    /// Time spent generating (sampling and decoding the new tokens), in seconds.
    public var generateSeconds = 0.0
    public var seed: UInt64 = 0
    public var stopReason = StopReason.length
    /// The generated ids, in order.
    public var tokens: [Int] = []

    public var promptTokensPerSecond: Double { promptSeconds > 0 ? Double(promptTokens) / promptSeconds : 0 }
    public var generateTokensPerSecond: Double {
        generateSeconds > 0 ? Double(generatedTokens) / generateSeconds : 0
    }
}

/// A prompt that does not fit, or a similar request error.
public struct GenerationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The single-sequence loop: prefill the prompt, then sample, emit and feed back one token at a
/// time until a stop rule fires.
public final class Generator {
    public let transformer: Transformer
    public let tokenizer: Tokenizer
    private let cache: KVCache

    public init(transformer: Transformer, tokenizer: Tokenizer) {
        self.transformer = transformer
        self.tokenizer = tokenizer
        cache = transformer.makeCache()
    }

    /// Generates after `prompt` (ids, BOS included). `maxNewTokens` < 0 means until the context
    /// is full. `ignoreEOS` keeps going past end-of-sequence. `stopStrings` end generation when the
    /// text contains one (it is not emitted). `emit` receives each token id with the bytes
    /// that are now safe to print; returning a reason stops generation.
    public func generate(
        prompt: [Int], maxNewTokens: Int, sampling: SamplingParameters, ignoreEOS: Bool = false,
        stopStrings: [String] = [], emit: (Int, [UInt8]) -> StopReason?
    ) throws(GenerationError) -> GenerationStats {
        let context = transformer.config.contextLength
        guard !prompt.isEmpty else { throw GenerationError("the prompt has no tokens") }
        guard prompt.count <= context else {
            throw GenerationError("prompt is \(prompt.count) tokens but the context window is \(context)")
        }
        var sampler = Sampler(parameters: sampling, vocabSize: transformer.config.vocabSize)
        var stats = GenerationStats()
        stats.promptTokens = prompt.count
        stats.seed = sampler.seed
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer, previous: prompt.last)
        var stopFilter = StopStringFilter(stopStrings: stopStrings)
        var history = prompt
        history.reserveCapacity(min(context + 1, prompt.count + max(maxNewTokens, 0) + 1))

        let promptStart = DispatchTime.now()
        var logits = transformer.prefill(prompt, startPosition: 0, cache: cache)
        let generateStart = DispatchTime.now()
        stats.promptSeconds = seconds(from: promptStart, to: generateStart)
        func finished(_ reason: StopReason) -> GenerationStats {
            stats.stopReason = reason
            stats.generateSeconds = seconds(from: generateStart, to: DispatchTime.now())
            return stats
        }

        var position = prompt.count
        while true {
            if maxNewTokens >= 0 && stats.generatedTokens >= maxNewTokens {
                stats.stopReason = .length
                break
            }
            let next = sampler.sample(logits, history: history[...])
            if !ignoreEOS && (next == tokenizer.eosID || next == tokenizer.bosID) {
                stats.stopReason = .eos
                break
            }
            stats.generatedTokens += 1
            stats.tokens.append(next)
            history.append(next)
            let (bytes, stopped) = stopFilter.push(detokenizer.append(next))
            if let reason = emit(next, bytes) { return finished(reason) }
            if stopped { return finished(.stop) }
            if position >= context {
                stats.stopReason = .context
                break
            }
            logits = transformer.forward(token: next, position: position, cache: cache)
            position += 1
        }
        // The end of the text: bytes held back for an unfinished character or a possible stop string.
        let (tail, stopped) = stopFilter.push(detokenizer.finish(), final: true)
        if !tail.isEmpty, let reason = emit(-1, tail) { return finished(reason) }
        return finished(stopped ? .stop : stats.stopReason)
    }
}

func seconds(from start: DispatchTime, to end: DispatchTime) -> Double {
    Double(end.uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
