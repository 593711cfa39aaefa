import Foundation
import Quill
import QuillKernels
import XCTest

/// Context shifts on windowed layers, whose rings wrap: the truth is the same model with caches
/// that hold every position (a transformer whose prefill block spans the cache needs no ring),
/// where a shift is a plain slide of the kept positions. The full-cache shift itself is checked
/// against an independent numpy rolling cache in Tests/python/test_streaming_reference.py.
final class ContextShiftTests: XCTestCase {
    /// Its `randomWeights` makes the models (an instance that runs no test).
    let weightsMaker = ArchitectureForwardTests(name: "randomWeights", testClosure: { _ in })

    /// Per-token logprobs of `tokens` streamed through a cache of `capacity` keeping `keep` sinks.
    func stream(_ w: ModelWeights, _ tokens: [Int], capacity: Int, keep: Int, maxRows: Int) throws -> [Double] {
        let transformer = try Transformer(weights: w, maxRows: maxRows, cacheCapacity: capacity)
        let result = try Perplexity.evaluateStreaming(tokens, transformer: transformer, shift: ContextShift(keep: keep),
                                                      keepPerToken: true)
        return result.perToken.map(\.logProbability)
    }

    func config(_ a: Architecture, pairing: RoPEPairing = .adjacent, scaling: RoPEScaling = .none) -> ModelConfig {
        ModelConfig(dim: 24, hiddenDim: 40, layerCount: 3, headCount: 4, kvHeadCount: 2, vocabSize: 50, contextLength: 32,
                    sharedClassifier: false, normEpsilon: 1e-5, ropeTheta: 10000, ropeScaling: scaling, ropePairing: pairing,
                    architecture: a)
    }

    /// Ring (one row a block: a window-slot ring that wraps) against no ring, for windows that
    /// reach back to the sinks after a shift (12 of 16) and windows that do not (5).
    func testShiftedRingsMatchCachesThatHoldEveryPosition() throws {
        let capacity = 16
        var tokenState: UInt64 = 12345
        let tokens = (0..<70).map { _ -> Int in
            tokenState = tokenState &* 6364136223846793005 &+ 1442695040888963407
            return Int(tokenState >> 33) % 50
        }
        for (windows, pairing, scaling, positions) in [
            ([12, nil, 12], RoPEPairing.adjacent, RoPEScaling.none, Architecture.Positions.rope),
            ([5, nil, 5], .halves, .linear(factor: 2), .rope),
            ([12, 5, nil], .adjacent, .none, Architecture.Positions.none),
        ] as [([Int?], RoPEPairing, RoPEScaling, Architecture.Positions)] {
            var a = Architecture()
            a.windows = windows
            a.positions = positions
            let w = try weightsMaker.randomWeights(config(a, pairing: pairing, scaling: scaling), seed: 11)
            for keep in [0, 1, 4] {
                let ring = try stream(w, tokens, capacity: capacity, keep: keep, maxRows: 1)
                let full = try stream(w, tokens, capacity: capacity, keep: keep, maxRows: capacity)
                let slots = try Transformer(weights: w, maxRows: 1, cacheCapacity: capacity).makeCache().layerSlots
                XCTAssertTrue(slots.contains { $0 < capacity }, "the rings must wrap for the test to mean anything")
                XCTAssertEqual(ring.count, tokens.count - 1)
                // Both are float32 sums of the same terms in another order (one row vs a block): a
                // few ulps of values of order 1 a layer, far below 1e-4.
                let worst = zip(ring, full).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(worst, 1e-4, "windows \(windows), keep \(keep)")
            }
        }
    }

    /// The sinks matter: dropping them changes the prediction (the test above could not tell a
    /// ring that lost them from one that kept them otherwise).
    func testKeepingSinksChangesTheStream() throws {
        var a = Architecture()
        a.windows = [12, nil, 12]
        let w = try weightsMaker.randomWeights(config(a), seed: 5)
        let tokens = (0..<40).map { ($0 * 7 + 3) % 50 }
        let sinks = try stream(w, tokens, capacity: 16, keep: 4, maxRows: 1)
        let none = try stream(w, tokens, capacity: 16, keep: 0, maxRows: 1)
        XCTAssertGreaterThan(zip(sinks, none).map { abs($0 - $1) }.max()!, 1e-3)
    }

    /// Each sequence of a batch shifts on its own: greedy batch text equals each prompt alone.
    func testBatchSequencesShiftOnTheirOwn() throws {
        let model = try ModelLoader.load(modelPath: try TestPaths.shared("stories260K.bin"),
                                         tokenizerPath: try TestPaths.shared("tok512.model"), tokenizer: .required)
        let tokenizer = try model.requireTokenizer()
        let transformer = try model.makeTransformer(threads: 1, maxRows: 8, maxLogitRows: 3, cacheCapacity: 24)
        var greedy = SamplingParameters()
        greedy.temperature = 0
        let prompts = ["Once upon a time", "Lily had a", "The dog ran to the park and"]
        let requests = try prompts.map {
            GenerationRequest(prompt: try tokenizer.encode($0), maxNewTokens: 60, sampling: greedy, ignoreEOS: true,
                              contextShift: ContextShift(keep: 4))
        }
        var alone: [[Int]] = []
        for request in requests {
            let generator = try Generator(transformer: transformer, tokenizer: tokenizer)
            let stats = try generator.generate(request) { _ in nil }
            XCTAssertEqual(stats.generatedTokens, 60)
            XCTAssertGreaterThanOrEqual(stats.shifts, 3)
            alone.append(stats.tokens)
        }
        let batch = try BatchGenerator(transformer: transformer, tokenizer: tokenizer, parallel: 3)
        var pending = Array(requests.enumerated())
        var results: [Int: [Int]] = [:]
        batch.run(next: { _ in
            guard !pending.isEmpty else { return .end }
            let (tag, request) = pending.removeFirst()
            return .request(request, tag: tag)
        }, finished: { results[$0.tag] = $0.stats.tokens })
        XCTAssertEqual((0..<3).map { results[$0]! }, alone)
    }

    /// A prompt longer than the cache keeps its first `keep` tokens and its end.
    func testLongPromptKeepsHeadAndTail() {
        let shift = ContextShift(keep: 2)
        let (kept, dropped) = shift.truncate(Array(0..<10), capacity: 6)
        XCTAssertEqual(kept, [0, 1, 6, 7, 8, 9])
        XCTAssertEqual(dropped, 4)
        XCTAssertEqual(shift.discard(filled: 6), 2)
        XCTAssertFalse(ContextShift(keep: 5).fits(capacity: 6))
    }
}
