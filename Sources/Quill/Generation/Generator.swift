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

/// The single-sequence loop: prefill the prompt in blocks, then sample, emit and feed back one
/// token at a time until a stop rule fires.
public final class Generator {
    public let transformer: Transformer
    public let tokenizer: Tokenizer
    private let cache: KVCache

    public init(transformer: Transformer, tokenizer: Tokenizer) {
        self.transformer = transformer
        self.tokenizer = tokenizer
        cache = transformer.makeCache()
    }

    /// Runs `request`. `emit` receives the bytes that are now safe to print (possibly empty);
    /// returning a reason stops generation (Ctrl-C, closed output).
    public func generate(
        _ request: GenerationRequest, emit: ([UInt8]) -> StopReason?
    ) throws(GenerationError) -> GenerationStats {
        try request.validate(for: transformer.config)
        var sequence = SequenceState(request: request, tokenizer: tokenizer, config: transformer.config)
        let promptStart = DispatchTime.now()
        var logits = transformer.prefill(request.prompt, startPosition: 0, cache: cache)
        sequence.recordPromptTime(seconds(since: promptStart))
        while true {
            var step = sequence.step(logits: logits, offset: 0)
            if let reason = emit(step.bytes), step.stop == nil {
                step = sequence.finish(reason)
                _ = emit(step.bytes)
            }
            guard let next = step.feed else { return sequence.stats }
            logits = transformer.forward(token: next, position: sequence.position - 1, cache: cache)
        }
    }
}

/// Seconds elapsed since `start` (monotonic clock).
public func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
