import Foundation
import Quill
import QuillKernels
import XCTest

/// RoPE scaling and pairing come from `ModelConfig` and reach the forward pass: the frequencies
/// against llama.cpp's definition in a plain loop, and a tiny model with each setting against
/// the independent double-precision `ReferenceModel`.
final class RoPEConfigTests: XCTestCase {
    // One divisor a pair of `tiny` (head size 8); the first pairs turn fastest, so they change most.
    private let factors: [Float] = [2.5, 0.5, 4, 8]

    /// A small model whose head size (8) leaves few pairs, so each factor matters.
    private let tiny = ModelConfig(dim: 32, hiddenDim: 48, layerCount: 2, headCount: 4, kvHeadCount: 2,
                                   vocabSize: 67, contextLength: 40, sharedClassifier: false, normEpsilon: 1e-5,
                                   ropeTheta: 10000)

    func testFrequenciesFollowLlamaCppsDefinition() {
        let variants: [(RoPEScaling, [Float]?)] = [(.none, nil), (.linear(factor: 4), nil), (.none, factors),
                                                   (.linear(factor: 2.5), factors)]
        for (scaling, freqFactors) in variants {
            var c = tiny
            c.ropeTheta = 500_000
            c.ropeScaling = scaling
            c.ropeFrequencyFactors = freqFactors
            let got = c.ropeFrequencies
            XCTAssertEqual(got.count, 4)
            var freqScale = 1.0
            if case .linear(let factor) = scaling { freqScale = 1 / factor }
            // ggml_rope_cache_init: theta = p · base^(−2i/n_dims), then theta / ff · freq_scale.
            for i in 0..<4 {
                let expected = freqScale * pow(500_000.0, -Double(2 * i) / 8) / Double(freqFactors?[i] ?? 1)
                XCTAssertEqual(got[i], expected, accuracy: 1e-15 * expected, "\(scaling) \(String(describing: freqFactors)) pair \(i)")
            }
        }
    }

    private func weights(_ config: ModelConfig) throws -> ModelWeights {
        let plain = try Checkpoint(path: try RandomWeights(config: tiny, seed: 8).write(to: try temporaryFolder(self))).weights
        return try ModelWeights(config: config, tokenEmbedding: plain.tokenEmbedding, layers: plain.layers,
                                finalNorm: plain.finalNorm, classifier: plain.classifier, source: "variant")
    }

    /// Token-by-token and blocked-prefill logits at every position equal the reference's.
    private func checkAgainstReference(_ w: ModelWeights, tokens: [Int]) throws -> [[Float]] {
        let reference = ReferenceModel(weights: w)
        let transformer = try Transformer(weights: w, maxRows: 4)
        let cache = try transformer.makeCache()
        var incremental: [[Float]] = []
        for (position, token) in tokens.enumerated() {
            incremental.append(transformer.forward(token: token, position: position, cache: cache).array(length: w.config.vocabSize))
        }
        var blocked = [[Float]](repeating: [], count: tokens.count)
        transformer.prefill(tokens, startPosition: 0, cache: try transformer.makeCache()) { index, buffer, offset in
            blocked[index] = buffer.array(offset: offset, length: w.config.vocabSize)
        }
        for length in 1...tokens.count {
            let expected = reference.logits(Array(tokens[..<length])).map { Float($0) }
            // As ForwardTests: float32 kernels against double loops on logits of order 1.
            assertClose(incremental[length - 1], expected, tolerance: 1e-4, "token by token, length \(length)")
            assertClose(blocked[length - 1], expected, tolerance: 1e-4, "prefill, length \(length)")
        }
        return incremental
    }

    func testEveryRoPESettingReachesTheForwardPass() throws {
        let tokens = [1, 9, 4, 33, 2, 60, 17, 5, 38, 12]
        let plain = try checkAgainstReference(try weights(tiny), tokens: tokens)
        var variants: [(String, ModelConfig)] = []
        var c = tiny
        c.ropePairing = .halves
        variants.append(("halves", c))
        c.ropeScaling = .linear(factor: 4)
        variants.append(("halves, linear 4", c))
        c = tiny
        c.ropeScaling = .linear(factor: 4)
        variants.append(("linear 4", c))
        c.ropeFrequencyFactors = factors
        variants.append(("linear 4, factors", c))
        c.ropeScaling = .none
        variants.append(("factors", c))
        c.ropePairing = .halves
        variants.append(("halves, factors", c))
        for (label, config) in variants {
            let logits = try checkAgainstReference(try weights(config), tokens: tokens)
            // Each setting changes the model, so the reference could not pass by ignoring it.
            let change = zip(plain.last!, logits.last!).map { abs($0 - $1) }.max()!
            XCTAssertGreaterThan(change, 1e-2, "\(label) changes the logits")
        }
    }
}
