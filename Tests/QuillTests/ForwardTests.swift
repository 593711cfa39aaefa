import Foundation
import Quill
import QuillKernels
import XCTest

/// An independent Llama forward pass in plain loops and double precision, with no KV cache:
/// every call recomputes the whole sequence, so it checks the cache and the causal mask.
struct ReferenceModel {
    let c: ModelConfig
    let matrices: [String: [Double]]

    init(checkpoint: Checkpoint) { self.init(weights: checkpoint.weights) }

    init(weights checkpoint: ModelWeights) {
        c = checkpoint.config
        var m: [String: [Double]] = [:]
        func all(_ w: WeightMatrix) -> [Double] { (0..<w.rows).flatMap { w.rowValues($0) }.map(Double.init) }
        m["emb"] = all(checkpoint.tokenEmbedding)
        m["cls"] = all(checkpoint.classifier)
        m["final"] = checkpoint.finalNorm.array.map(Double.init)
        for (l, layer) in checkpoint.layers.enumerated() {
            m["att\(l)"] = layer.attentionNorm.array.map(Double.init)
            m["ffn\(l)"] = layer.ffnNorm.array.map(Double.init)
            m["wq\(l)"] = all(layer.wq); m["wk\(l)"] = all(layer.wk); m["wv\(l)"] = all(layer.wv)
            m["wo\(l)"] = all(layer.wo); m["w1\(l)"] = all(layer.w1); m["w2\(l)"] = all(layer.w2)
            m["w3\(l)"] = all(layer.w3)
        }
        matrices = m
    }

    private func matvec(_ w: [Double], _ x: [Double]) -> [Double] {
        let cols = x.count, rows = w.count / cols
        return (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + w[r * cols + $1] * x[$1] } }
    }

    private func rmsnorm(_ x: [Double], _ w: [Double]) -> [Double] {
        let scale = 1 / (x.map { $0 * $0 }.reduce(0, +) / Double(x.count) + Double(c.normEpsilon)).squareRoot()
        return zip(x, w).map { $0 * scale * $1 }
    }

    /// RoPE as llama.cpp's ggml_rope_ext defines it: pair i turns by position · freq_scale ·
    /// θ^(−2i / headSize) / freq_factors[i], freq_scale = 1 / the linear factor; the pair is
    /// (2i, 2i+1) in normal mode and (i, i + headSize/2) in NEOX mode.
    private func rope(_ v: [Double], position: Int) -> [Double] {
        var out = v
        let hs = c.headSize
        var freqScale = 1.0
        if case .linear(let factor) = c.ropeScaling { freqScale = 1 / factor }
        for head in stride(from: 0, to: v.count, by: hs) {
            for pair in 0..<hs / 2 {
                let a = c.ropePairing == .adjacent ? head + 2 * pair : head + pair
                let b = c.ropePairing == .adjacent ? a + 1 : a + hs / 2
                let freqFactor = Double(c.ropeFrequencyFactors?[pair] ?? 1)
                let angle = Double(position) * freqScale * pow(c.ropeTheta, -Double(2 * pair) / Double(hs)) / freqFactor
                out[a] = v[a] * cos(angle) - v[b] * sin(angle)
                out[b] = v[a] * sin(angle) + v[b] * cos(angle)
            }
        }
        return out
    }

    /// Logits at the last position of `tokens`.
    func logits(_ tokens: [Int]) -> [Double] {
        let d = c.dim, hs = c.headSize, group = c.headCount / c.kvHeadCount
        var x = tokens.map { Array(matrices["emb"]![$0 * d..<($0 + 1) * d]) }
        for l in 0..<c.layerCount {
            let h = x.map { rmsnorm($0, matrices["att\(l)"]!) }
            let q = h.enumerated().map { rope(matvec(matrices["wq\(l)"]!, $1), position: $0) }
            let k = h.enumerated().map { rope(matvec(matrices["wk\(l)"]!, $1), position: $0) }
            let v = h.map { matvec(matrices["wv\(l)"]!, $0) }
            for t in 0..<tokens.count {
                var attended = [Double](repeating: 0, count: d)
                for head in 0..<c.headCount {
                    let kv = (head / group) * hs
                    var scores = (0...t).map { s in
                        (0..<hs).reduce(0.0) { $0 + q[t][head * hs + $1] * k[s][kv + $1] } / Double(hs).squareRoot()
                    }
                    let top = scores.max()!
                    scores = scores.map { exp($0 - top) }
                    let total = scores.reduce(0, +)
                    for i in 0..<hs {
                        attended[head * hs + i] = (0...t).reduce(0.0) { $0 + scores[$1] / total * v[$1][kv + i] }
                    }
                }
                let projected = matvec(matrices["wo\(l)"]!, attended)
                for i in 0..<d { x[t][i] += projected[i] }
                let f = rmsnorm(x[t], matrices["ffn\(l)"]!)
                let gate = matvec(matrices["w1\(l)"]!, f), up = matvec(matrices["w3\(l)"]!, f)
                let hidden = zip(gate, up).map { g, u in g / (1 + exp(-g)) * u }
                let down = matvec(matrices["w2\(l)"]!, hidden)
                for i in 0..<d { x[t][i] += down[i] }
            }
        }
        return matvec(matrices["cls"]!, rmsnorm(x[tokens.count - 1], matrices["final"]!))
    }
}

final class ForwardTests: XCTestCase {
    private func tinyCheckpoint(_ config: ModelConfig = .tinyGQA) throws -> Checkpoint {
        try Checkpoint(path: try RandomWeights(config: config, seed: 5).write(to: try temporaryFolder(self)))
    }

    private func tokenByToken(_ transformer: Transformer, _ tokens: [Int]) throws -> [[Float]] {
        let cache = try transformer.makeCache()
        return tokens.enumerated().map { position, token in
            transformer.forward(token: token, position: position, cache: cache)
                .array(length: transformer.config.vocabSize)
        }
    }

    /// The KV-cached, one-token-at-a-time logits equal an independent from-scratch
    /// recomputation at every length.
    func checkAgainstReference(_ checkpoint: Checkpoint, tokens: [Int], tolerance: Float) throws {
        try checkAgainstReference(checkpoint.weights, tokens: tokens, tolerance: tolerance)
    }

    func checkAgainstReference(_ checkpoint: ModelWeights, tokens: [Int], tolerance: Float) throws {
        let reference = ReferenceModel(weights: checkpoint)
        let incremental = try tokenByToken(try Transformer(weights: checkpoint), tokens)
        for length in 1...tokens.count {
            let expected = reference.logits(Array(tokens[..<length])).map { Float($0) }
            assertClose(incremental[length - 1], expected, tolerance: tolerance, "length \(length)")
        }
    }

    /// The norm epsilon and the RoPE base come from the model's configuration, not from the
    /// kernels: values far from llama2.c's change the logits, and the reference follows them.
    func testNormEpsilonAndRoPEBaseComeFromTheConfiguration() throws {
        let original = try tinyCheckpoint().weights
        var config = original.config
        config.normEpsilon = 0.5
        config.ropeTheta = 37
        let changed = try ModelWeights(config: config, tokenEmbedding: original.tokenEmbedding, layers: original.layers,
                                       finalNorm: original.finalNorm, classifier: original.classifier, source: "changed")
        let tokens = [1, 9, 4, 33, 2, 60]
        try checkAgainstReference(changed, tokens: tokens, tolerance: 2e-4)
        let before = try tokenByToken(try Transformer(weights: original), tokens).last!
        let after = try tokenByToken(try Transformer(weights: changed), tokens).last!
        XCTAssertGreaterThan(zip(before, after).map { abs($0 - $1) }.max()!, 1e-2, "the values are used")
    }

    func testCachedLogitsEqualRecomputationTinyGQA() throws {
        try checkAgainstReference(try tinyCheckpoint(), tokens: [1, 5, 66, 0, 12, 12, 40, 3, 7], tolerance: 1e-4)
    }

    func testCachedLogitsEqualRecomputationStories260K() throws {
        let checkpoint = try Checkpoint(path: try TestPaths.shared("stories260K.bin"))
        try checkAgainstReference(checkpoint, tokens: [1, 403, 407, 261, 378, 266, 350, 261, 500, 13], tolerance: 1e-4)
    }

    func testBlockedPrefillEqualsTokenByToken() throws {
        let checkpoint = try tinyCheckpoint()
        let tokens = [1, 9, 8, 7, 30, 31, 2, 60, 61, 62, 5]
        let expected = try tokenByToken(try Transformer(checkpoint: checkpoint), tokens)
        for (blockSize, threads, logitRows) in [(4, 1, 4), (64, 2, 16), (3, 3, 2), (64, 2, 4)] {
            let transformer = try Transformer(checkpoint: checkpoint, maxRows: blockSize, threads: threads, maxLogitRows: logitRows)
            var seen: [[Float]] = []
            let last = transformer.prefill(tokens, startPosition: 0, cache: try transformer.makeCache()) { _, logits, offset in
                seen.append(logits.array(offset: offset, length: checkpoint.config.vocabSize))
            }.array(length: checkpoint.config.vocabSize)
            XCTAssertEqual(seen.count, tokens.count)
            for (position, row) in seen.enumerated() {
                assertClose(row, expected[position], tolerance: 1e-4, "block \(blockSize), position \(position)")
            }
            assertClose(last, expected.last!, tolerance: 1e-4, "block \(blockSize), returned logits")
            // Without the per-position callback only the last row is computed; it must agree too.
            let quick = transformer.prefill(tokens, startPosition: 0, cache: try transformer.makeCache())
            assertClose(quick.array(length: checkpoint.config.vocabSize), expected.last!, tolerance: 1e-4)
        }
    }

    /// Prompt-sized blocks take the blocked products and causal attention slices: 150 tokens
    /// as one block and in blocks of 48 (later blocks start past 0), with a hidden size past one
    /// k block of the products (384), give the token-by-token logits at every position.
    func testLongPromptBlocksEqualTokenByToken() throws {
        let config = ModelConfig(dim: 64, hiddenDim: 400, layerCount: 2, headCount: 4, kvHeadCount: 2,
                                 vocabSize: 67, contextLength: 200, sharedClassifier: false, normEpsilon: 1e-5, ropeTheta: 10000)
        let checkpoint = try tinyCheckpoint(config)
        let tokens = (0..<150).map { ($0 * 37 + $0 / 7) % config.vocabSize }
        let expected = try tokenByToken(try Transformer(checkpoint: checkpoint), tokens)
        for blockSize in [150, 48] {
            let transformer = try Transformer(checkpoint: checkpoint, maxRows: blockSize, threads: 2)
            var position = 0
            transformer.prefill(tokens, startPosition: 0, cache: try transformer.makeCache()) { index, logits, offset in
                XCTAssertEqual(index, position)
                assertClose(logits.array(offset: offset, length: config.vocabSize), expected[index], tolerance: 1e-4,
                            "block \(blockSize), position \(index)")
                position += 1
            }
            XCTAssertEqual(position, tokens.count)
        }
    }

    /// A KV cache sized to what a run reaches (prompt + -n) instead of the whole context gives the
    /// same logits to the bit: only the cache's stride changes, not the arithmetic.
    func testCacheSizedToTheRunGivesTheSameLogits() throws {
        let checkpoint = try tinyCheckpoint()
        let tokens = [1, 5, 9, 2, 30, 31, 7, 8, 40, 3]
        let whole = try tokenByToken(try Transformer(checkpoint: checkpoint), tokens)
        let sized = try Transformer(checkpoint: checkpoint, cacheCapacity: tokens.count)
        XCTAssertEqual(sized.cacheCapacity, tokens.count)
        XCTAssertEqual(try tokenByToken(sized, tokens), whole)
        let block = try Transformer(checkpoint: checkpoint, maxRows: 4, cacheCapacity: tokens.count)
        var prefilled: [[Float]] = []
        block.prefill(tokens, startPosition: 0, cache: try block.makeCache()) { _, logits, offset in
            prefilled.append(logits.array(offset: offset, length: checkpoint.config.vocabSize))
        }
        let blockWhole = try Transformer(checkpoint: checkpoint, maxRows: 4)
        var expected: [[Float]] = []
        blockWhole.prefill(tokens, startPosition: 0, cache: try blockWhole.makeCache()) { _, logits, offset in
            expected.append(logits.array(offset: offset, length: checkpoint.config.vocabSize))
        }
        XCTAssertEqual(prefilled, expected)
    }

    func testSequencesDecodedTogetherEqualEachAlone() throws {
        let checkpoint = try tinyCheckpoint()
        let sequences = [[1, 4, 9, 16, 25], [1, 60, 61], [1, 2, 3, 4, 5, 6, 7]]
        let alone = try sequences.map { try tokenByToken(try Transformer(checkpoint: checkpoint), $0) }
        let transformer = try Transformer(checkpoint: checkpoint, maxRows: 8, threads: 2)
        let caches = try sequences.map { _ in try transformer.makeCache() }
        // Step all sequences together while they have tokens left.
        for step in 0..<sequences.map(\.count).max()! {
            let active = sequences.indices.filter { step < sequences[$0].count }
            let logits = transformer.decode(batchTokens: active.map { sequences[$0][step] },
                                            batchPositions: active.map { _ in step }, caches: active.map { caches[$0] })
            for (row, s) in active.enumerated() {
                let vocab = checkpoint.config.vocabSize
                assertClose(logits.array(offset: row * vocab, length: vocab), alone[s][step], tolerance: 1e-4,
                            "sequence \(s) step \(step)")
            }
        }
    }

    func testQ8CheckpointStaysCloseToFloat() throws {
        let folder = try temporaryFolder(self)
        let weights = RandomWeights(config: .tinyGQA, seed: 5)
        let f32 = try Checkpoint(path: try weights.write(to: folder, name: "f.bin"))
        let q8 = try Checkpoint(path: try weights.write(to: folder, name: "q.bin", format: .version2(groupSize: 16)))
        let tokens = [1, 9, 8, 7, 30]
        let a = try tokenByToken(try Transformer(checkpoint: f32), tokens), b = try tokenByToken(try Transformer(checkpoint: q8), tokens)
        assertClose(b.last!, a.last!, tolerance: 0.05, "int8 weights drift too far from float32")
        // And the int8 path agrees with the float reference on its own dequantized weights, up to
        // the error of quantizing activations to int8 per group (Q8_0 semantics, as in llama.cpp).
        try checkAgainstReference(q8, tokens: tokens, tolerance: 0.03)
    }
}
