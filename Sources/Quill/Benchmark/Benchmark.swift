import Dispatch
import Foundation
import QuillKernels

/// Speed measurements for `quill bench`. Each returns one figure per repetition so the caller
/// can report the median and the spread.
public enum Benchmark {
    /// The random-weight shapes of `quill bench --shape`, in the order usage lists them.
    public static let shapeNames = ["15m", "42m", "110m", "tinyllama", "gpt2", "qwen2-0.5b", "gemma-2b", "gemma2-2b", "phi3-mini"]

    /// The shape `name`: llama2.c's TinyStories models (Llama 2 vocabulary), and real models of
    /// each architecture Quill reads, with the hyperparameters of their published config.json
    /// on Hugging Face (the repository is named beside each) and the choices llama.cpp's
    /// architecture of that name makes. The others are `--type` only (GGUF).
    public static func shape(named name: String) -> ModelConfig? {
        switch name {
        case "15m": return ModelConfig(dim: 288, hiddenDim: 768, layerCount: 6, headCount: 6, kvHeadCount: 6,
                                       vocabSize: 32000, contextLength: 256, sharedClassifier: true,
                                       normEpsilon: Checkpoint.normEpsilon, ropeTheta: Checkpoint.ropeTheta)
        case "42m": return ModelConfig(dim: 512, hiddenDim: 1376, layerCount: 8, headCount: 8, kvHeadCount: 8,
                                       vocabSize: 32000, contextLength: 1024, sharedClassifier: true,
                                       normEpsilon: Checkpoint.normEpsilon, ropeTheta: Checkpoint.ropeTheta)
        case "110m": return ModelConfig(dim: 768, hiddenDim: 2048, layerCount: 12, headCount: 12, kvHeadCount: 12,
                                        vocabSize: 32000, contextLength: 1024, sharedClassifier: true,
                                        normEpsilon: Checkpoint.normEpsilon, ropeTheta: Checkpoint.ropeTheta)
        // TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T: grouped-query attention (8 query
        // heads per KV head), its own classifier.
        case "tinyllama": return ModelConfig(dim: 2048, hiddenDim: 5632, layerCount: 22, headCount: 32, kvHeadCount: 4,
                                             vocabSize: 32000, contextLength: 2048, sharedClassifier: false,
                                             normEpsilon: 1e-5, ropeTheta: 10000)
        // openai-community/gpt2 (124M): n_embd 768, n_layer 12, n_head 12, n_inner 4 · 768,
        // n_positions 1024, vocab 50257, layer_norm_epsilon 1e-5; tied classifier.
        case "gpt2":
            var a = Architecture()
            (a.norm, a.feedForward, a.positions) = (.layer, .gelu, .learned)
            a.biases = Set(Architecture.Bias.allCases)
            a.fusedQKV = true
            return ModelConfig(dim: 768, hiddenDim: 3072, layerCount: 12, headCount: 12, kvHeadCount: 12, vocabSize: 50257,
                               contextLength: 1024, sharedClassifier: true, normEpsilon: 1e-5, ropeTheta: 10000,
                               ropePairing: .halves, architecture: a)
        // Qwen/Qwen2-0.5B: hidden 896, intermediate 4864, 24 layers, 14 heads, 2 KV heads,
        // vocab 151936, max_position_embeddings 131072, rope_theta 1e6, rms_norm_eps 1e-6, Q/K/V
        // biases, tied classifier (use_sliding_window false).
        case "qwen2-0.5b":
            var a = Architecture()
            a.biases = [.query, .key, .value]
            return ModelConfig(dim: 896, hiddenDim: 4864, layerCount: 24, headCount: 14, kvHeadCount: 2, vocabSize: 151936,
                               contextLength: 131072, sharedClassifier: true, normEpsilon: 1e-6, ropeTheta: 1_000_000,
                               ropePairing: .halves, architecture: a)
        // google/gemma-2b: hidden 2048, intermediate 16384, 18 layers, 8 heads, 1 KV head, head_dim
        // 256, vocab 256000, max_position_embeddings 8192, rms_norm_eps 1e-6, rope_theta 10000.
        case "gemma-2b":
            return ModelConfig(dim: 2048, hiddenDim: 16384, layerCount: 18, headCount: 8, kvHeadCount: 1, vocabSize: 256000,
                               contextLength: 8192, sharedClassifier: true, normEpsilon: 1e-6, ropeTheta: 10000,
                               ropePairing: .halves, headSize: 256, architecture: gemma(dim: 2048))
        // google/gemma-2-2b: hidden 2304, intermediate 9216, 26 layers, 8 heads, 4 KV heads,
        // head_dim 256, vocab 256000, max_position_embeddings 8192, rms_norm_eps 1e-6, sliding
        // window 4096 on alternating layers, soft caps 50 (attention) and 30 (final),
        // query_pre_attn_scalar 256 (= head_dim, so the scale is llama.cpp's 1/√256).
        case "gemma2-2b":
            var a = gemma(dim: 2304)
            a.normPlacement = .preAndPost
            (a.attentionSoftcap, a.finalSoftcap) = (50, 30)
            a.attentionScale = 1 / Float(256).squareRoot()
            a.windows = (0..<26).map { $0 % 2 == 0 ? 4096 : nil }
            return ModelConfig(dim: 2304, hiddenDim: 9216, layerCount: 26, headCount: 8, kvHeadCount: 4, vocabSize: 256000,
                               contextLength: 8192, sharedClassifier: true, normEpsilon: 1e-6, ropeTheta: 10000,
                               ropePairing: .halves, headSize: 256, architecture: a)
        // microsoft/Phi-3-mini-4k-instruct: hidden 3072, intermediate 8192, 32 layers, 32 heads
        // (and KV heads), vocab 32064, max_position_embeddings 4096, rms_norm_eps 1e-5, rope_theta
        // 10000; fused QKV and gate/up as llama.cpp's converter stores them. Its sliding_window
        // 2047 is dropped, as llama.cpp's phi3 drops it.
        case "phi3-mini":
            var a = Architecture()
            (a.fusedQKV, a.fusedGateUp) = (true, true)
            return ModelConfig(dim: 3072, hiddenDim: 8192, layerCount: 32, headCount: 32, kvHeadCount: 32, vocabSize: 32064,
                               contextLength: 4096, sharedClassifier: false, normEpsilon: 1e-5, ropeTheta: 10000,
                               ropePairing: .halves, architecture: a)
        default: return nil
        }
    }

    /// Gemma's choices: GeGLU, embeddings scaled by √dim (llama.cpp's `gemma`).
    private static func gemma(dim: Int) -> Architecture {
        var a = Architecture()
        a.feedForward = .geglu
        a.embeddingScale = Float(dim).squareRoot()
        return a
    }

    /// Writes random weights (uniform, standard deviation 0.02; norms 1) for `config`.
    /// `shouldStop` is checked before each tensor (CancellationError when it says stop).
    public static func writeRandomCheckpoint(
        config: ModelConfig, format: CheckpointFormat, to handle: FileHandle, seed: UInt64 = 1,
        shouldStop: () -> Bool = { false }
    ) throws {
        guard config.architecture == .llama && config.headSize * config.headCount == config.dim else {
            throw CheckpointError(path: "random weights", problem: "a llama2.c checkpoint holds only Llama models of head size "
                                  + "dim / heads; write this shape as GGUF (F16, Q8_0, ...)")
        }
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

    /// Writes random weights for `config` as GGUF (`fileType`, through `GGUFModelWriter`) to
    /// `handle` (at its start), named `name`, and returns the storage plan used. Types Quill
    /// encodes are quantized from uniform weights of standard deviation 0.02 (norms 1); K types
    /// get random blocks: random quant bytes and scales, with F16 super-block scales chosen so
    /// that weights stay within about ±0.1. Each tensor is made and written in pieces of about
    /// 4 Mi values, so memory holds a piece, never the model. `shouldStop` is checked before
    /// each tensor (CancellationError when it says stop).
    @discardableResult
    public static func writeRandomGGUF(
        config: ModelConfig, fileType: GGUFFileType, name: String, to handle: FileHandle, path: String,
        seed: UInt64 = 1, shouldStop: () -> Bool = { false }
    ) throws -> GGUFStoragePlan {
        let architecture = try GGUFModelWriter.requireWritable(config, source: name)
        if fileType == .q4_K_M && architecture != "llama" {
            throw CheckpointError(path: name, problem: "Q4_K_M is llama.cpp's mix for llama models; Quill does not follow its "
                                  + "rules for \(architecture): choose a single type (Q4_K, Q8_0, ...)")
        }
        var generator = SeededGenerator(seed: seed)
        let limit = Float(0.02 * 3.0.squareRoot())
        let plan = fileType.plan(for: config)
        let metadata = try GGUFModelWriter.metadata(config: config, name: name, fileType: fileType.llamaFileType)
        try GGUFModelWriter.write(config: config, metadata: metadata, types: plan.type, to: handle, path: path) {
            tensor, type, emit in
            if shouldStop() { throw CancellationError() }
            // Vectors: norm gains 1, biases 0 (they cost the same whatever their values).
            if tensor.isVector {
                let parts = tensor.parts.map { part -> [Float] in
                    let count = config.shape(of: part).cols
                    switch part {
                    case .weight, .postAttentionNorm, .postFFNNorm: return [Float](repeating: 1, count: count)
                    case .ropeFrequencyFactors: return config.ropeFrequencyFactors!
                    default: return [Float](repeating: 0, count: count)
                    }
                }
                let values = parts.flatMap { $0 }
                try emit(GGMLQuants.quantize(.f32, values, rowLength: values.count))
                return
            }
            let (rows, cols) = tensor.shape(config)
            let rowsPerPiece = max(1, (4 << 20) / cols)
            var row = 0
            while row < rows {
                let count = min(rowsPerPiece, rows - row)
                if type.isEncoded {
                    let values = (0..<count * cols).map { _ in
                        Float(Int32(truncatingIfNeeded: generator.next() >> 32)) / Float(Int32.max) * limit
                    }
                    try emit(GGMLQuants.quantize(type, values, rowLength: cols))
                } else {
                    try emit(randomBlocks(type, count: count * cols / type.blockSize, generator: &generator))
                }
                row += count
            }
        }
        return plan
    }

    /// `count` random blocks of a K type: random bytes, then each super-block's F16 scale (and
    /// min scale) set to a small positive value, so every weight is finite and below about 0.1:
    /// Q4_K x = d·sc·q − dmin·m (sc, m < 64, q < 16), Q5_K likewise with q < 32, Q6_K
    /// x = d·scale·(q − 32) (scale an int8, q < 64). Offsets from the layouts in `ggml_quants.h`.
    static func randomBlocks(_ type: GGMLType, count: Int, generator: inout SeededGenerator) -> [UInt8] {
        let size = type.bytesPerBlock
        var bytes = [UInt8](repeating: 0, count: count * size)
        var i = 0
        while i < bytes.count {
            var word = generator.next()
            for k in 0..<min(8, bytes.count - i) {
                bytes[i + k] = UInt8(truncatingIfNeeded: word)
                word >>= 8
            }
            i += 8
        }
        func putHalf(_ value: Float, at offset: Int) {
            let bits = GGMLQuants.halfBits(value)
            bytes[offset] = UInt8(truncatingIfNeeded: bits)
            bytes[offset + 1] = UInt8(truncatingIfNeeded: bits >> 8)
        }
        func scale(_ largest: Float) -> Float { largest * Float(0.5 + generator.nextUnit()) }
        for block in 0..<count {
            let base = block * size
            switch type {
            case .q4_K:
                putHalf(scale(1e-4), at: base)      // d: 63 · 15 · 1e-4 ≈ 0.09 at most
                putHalf(scale(1e-4), at: base + 2)  // dmin
            case .q5_K:
                putHalf(scale(5e-5), at: base)      // d: 63 · 31 · 5e-5 ≈ 0.1
                putHalf(scale(5e-5), at: base + 2)
            case .q6_K:
                putHalf(scale(2e-5), at: base + 208)  // d: 128 · 32 · 2e-5 ≈ 0.08
            default:
                preconditionFailure("random blocks are made for K types only, not \(type.name)")
            }
        }
        return bytes
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
