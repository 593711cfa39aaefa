import Dispatch
import Foundation
import QuillKernels

/// Speed measurements for `quill bench`. Each returns one figure per repetition so the caller
/// can report the median and the spread.
public enum Benchmark {
    /// The llama2.c TinyStories model shapes, with the Llama 2 vocabulary.
    public static func shape(named name: String) -> ModelConfig? {
        switch name {
        case "15m": ModelConfig(dim: 288, hiddenDim: 768, layerCount: 6, headCount: 6, kvHeadCount: 6,
                                vocabSize: 32000, contextLength: 256, sharedClassifier: true,
                                normEpsilon: Checkpoint.normEpsilon, ropeTheta: Checkpoint.ropeTheta)
        case "42m": ModelConfig(dim: 512, hiddenDim: 1376, layerCount: 8, headCount: 8, kvHeadCount: 8,
                                vocabSize: 32000, contextLength: 1024, sharedClassifier: true,
                                normEpsilon: Checkpoint.normEpsilon, ropeTheta: Checkpoint.ropeTheta)
        case "110m": ModelConfig(dim: 768, hiddenDim: 2048, layerCount: 12, headCount: 12, kvHeadCount: 12,
                                 vocabSize: 32000, contextLength: 1024, sharedClassifier: true,
                                normEpsilon: Checkpoint.normEpsilon, ropeTheta: Checkpoint.ropeTheta)
        default: nil
        }
    }

    /// Writes random weights (uniform, standard deviation 0.02; norms 1) for `config`.
    /// `shouldStop` is checked before each tensor (CancellationError when it says stop).
    public static func writeRandomCheckpoint(
        config: ModelConfig, format: CheckpointFormat, to handle: FileHandle, seed: UInt64 = 1,
        shouldStop: () -> Bool = { false }
    ) throws {
        var generator = SeededGenerator(seed: seed)
        let limit = Float(0.02 * 3.0.squareRoot())
        try CheckpointWriter.write(config: config, format: format, to: handle) { name, _ in
            if shouldStop() { throw CancellationError() }
            let c = config
            switch name {
            case .attentionNorm, .ffnNorm, .finalNorm: return [Float](repeating: 1, count: c.dim)
            case .ropeTables: return []
            default:
                let (rows, cols) = c.shape(of: name)
                let count = rows * cols
                return (0..<count).map { _ in Float(Int32(truncatingIfNeeded: generator.next() >> 32)) / Float(Int32.max) * limit }
            }
        }
    }

    /// Bytes of weights and KV cache one generated token reads at position `position`.
    public static func bytesReadPerToken(_ checkpoint: ModelWeights, position: Int) -> Int {
        let c = checkpoint.config
        func bytes(_ w: WeightMatrix) -> Int {
            switch w.storage {
            case .float32: return w.rows * w.cols * 4
            case .q8(_, _, let groupSize): return w.rows * w.cols + w.rows * w.cols / groupSize * 4
            case .ggml(let type, _): return w.rows * type.rowBytes(count: w.cols)
            }
        }
        var total = bytes(checkpoint.classifier) + c.dim * 4
        for layer in checkpoint.layers {
            total += [layer.wq, layer.wk, layer.wv, layer.wo, layer.w1, layer.w2, layer.w3].map(bytes).reduce(0, +)
            total += 2 * c.dim * 4
        }
        total += c.layerCount * 2 * (position + 1) * c.kvDim * 4  // keys and values read by attention
        return total
    }

    private static func randomTokens(_ count: Int, vocab: Int, seed: UInt64) -> [Int] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in Int(generator.next() % UInt64(vocab)) }
    }

    /// Prompt processing: tokens per second to prefill `tokens` tokens, per repetition. Each
    /// measurement function checks `shouldStop` between blocks or tokens and returns the
    /// repetitions completed so far (possibly none) when it says stop.
    public static func promptSpeed(
        _ transformer: Transformer, tokens: Int, repetitions: Int, shouldStop: () -> Bool = { false }
    ) throws -> [Double] {
        let cache = try transformer.makeCache()
        let input = randomTokens(tokens, vocab: transformer.config.vocabSize, seed: 3)
        let warmUp = Array(input.prefix(min(tokens, transformer.maxRows)))
        guard transformer.prefill(warmUp, startPosition: 0, cache: cache, stopWhen: shouldStop) != nil else { return [] }
        var speeds: [Double] = []
        for _ in 0..<repetitions {
            let start = DispatchTime.now()
            guard transformer.prefill(input, startPosition: 0, cache: cache, stopWhen: shouldStop) != nil else { break }
            speeds.append(Double(tokens) / seconds(since: start))
        }
        return speeds
    }

    /// Generation: tokens per second feeding one token at a time (greedy argmax between steps),
    /// after a one-token prompt, per repetition.
    public static func generationSpeed(
        _ transformer: Transformer, tokens: Int, repetitions: Int, shouldStop: () -> Bool = { false }
    ) throws -> [Double] {
        let cache = try transformer.makeCache()
        let vocab = transformer.config.vocabSize
        transformer.forward(token: 1, position: 0, cache: cache)  // warm-up
        var speeds: [Double] = []
        for _ in 0..<repetitions {
            var token = 1
            let start = DispatchTime.now()
            for position in 0..<tokens {
                if shouldStop() { return speeds }
                let logits = transformer.forward(token: token, position: position, cache: cache)
                token = Kernels.argmax(logits, count: vocab)
            }
            speeds.append(Double(tokens) / seconds(since: start))
        }
        return speeds
    }

    /// Several sequences decoded together: aggregate tokens per second, per repetition.
    public static func parallelSpeed(
        _ transformer: Transformer, sequences: Int, tokens: Int, repetitions: Int, shouldStop: () -> Bool = { false }
    ) throws -> [Double] {
        var caches: [KVCache] = []
        for _ in 0..<sequences { caches.append(try transformer.makeCache()) }
        let vocab = transformer.config.vocabSize
        var current = (0..<sequences).map { $0 + 1 }
        var positions = [Int](repeating: 0, count: sequences)
        var speeds: [Double] = []
        for _ in 0..<repetitions {
            let start = DispatchTime.now()
            for step in 0..<tokens {
                if shouldStop() { return speeds }
                for i in 0..<sequences { positions[i] = step }
                let logits = transformer.decode(batchTokens: current, batchPositions: positions, caches: caches)
                for i in 0..<sequences { current[i] = Kernels.argmax(logits, offset: i * vocab, count: vocab) }
            }
            speeds.append(Double(tokens * sequences) / seconds(since: start))
        }
        return speeds
    }

    /// Time to first token: prefill a short prompt and sample once, in seconds (best of 3).
    public static func timeToFirstToken(_ checkpoint: ModelWeights, threads: Int) throws -> Double {
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now()
            let transformer = try Transformer(weights: checkpoint, maxRows: 8, threads: threads,
                                              cacheCapacity: min(8, checkpoint.config.contextLength))
            let logits = transformer.prefill([1, 2, 3, 4].map { $0 % checkpoint.config.vocabSize }, startPosition: 0,
                                             cache: try transformer.makeCache())
            _ = Kernels.argmax(logits, count: checkpoint.config.vocabSize)
            best = min(best, seconds(since: start))
        }
        return best
    }

    /// Read bandwidth of this machine in bytes per second (see MemoryBandwidth).
    public static func memoryBandwidth(threads: Int) -> Double { MemoryBandwidth.measure(threads: threads) }

    /// The OpenBLAS kernel family in use ("SkylakeX", ...), "" for another BLAS.
    public static var blasCore: String { BLAS.core }

    /// Peak resident memory of this process so far, in bytes.
    public static func peakResidentBytes() -> Int { MemoryBandwidth.peakResidentBytes() }

}

extension Array where Element == Double {
    /// The median of the values (the mean of the middle two for an even count).
    public var median: Double {
        let sorted = self.sorted()
        guard !sorted.isEmpty else { return .nan }
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }
}
