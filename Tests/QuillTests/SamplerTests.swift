import Foundation
import Quill
import XCTest

final class SamplerTests: XCTestCase {
    private func sampler(_ configure: (inout SamplingParameters) -> Void, vocab: Int = 6) -> Sampler {
        var p = SamplingParameters()
        p.seed = 42
        configure(&p)
        return Sampler(parameters: p, vocabSize: vocab)
    }

    private func frequencies(_ s: inout Sampler, _ logits: [Float], draws: Int = 20000) -> [Double] {
        var counts = [Double](repeating: 0, count: logits.count)
        for _ in 0..<draws { counts[s.sample(logits: logits)] += 1 }
        return counts.map { $0 / Double(draws) }
    }

    func testTemperatureZeroIsArgmaxWithFirstOnTies() {
        var s = sampler { $0.temperature = 0 }
        XCTAssertEqual(s.sample(logits: [0.1, 3, -1, 3, 2, 0]), 1)
    }

    func testTopKOneIsGreedy() {
        var s = sampler { $0.topK = 1; $0.temperature = 5 }
        for _ in 0..<100 { XCTAssertEqual(s.sample(logits: [0.1, 0.2, 0.5, 0.4, 0.3, 0]), 2) }
    }

    func testFullDistributionIsFollowed() {
        // With every filter off and temperature 1, frequencies follow softmax(logits).
        let logits: [Float] = [0, 1, 2, 0.5, -1, 1.5]
        var s = sampler { $0.topK = 0; $0.topP = 1; $0.minP = 0; $0.temperature = 1 }
        let expected = logits.map { exp(Double($0)) }, total = expected.reduce(0, +)
        for (f, e) in zip(frequencies(&s, logits), expected) { XCTAssertEqual(f, e / total, accuracy: 0.01) }
    }

    func testTemperatureSharpens() {
        let logits: [Float] = [0, 1, 2, 0.5, -1, 1.5]
        var s = sampler { $0.topK = 0; $0.topP = 1; $0.minP = 0; $0.temperature = 0.5 }
        let expected = logits.map { exp(Double($0) / 0.5) }, total = expected.reduce(0, +)
        for (f, e) in zip(frequencies(&s, logits), expected) { XCTAssertEqual(f, e / total, accuracy: 0.01) }
    }

    func testTopPKeepsSmallestNucleus() {
        // Probabilities ≈ [0.5, 0.3, 0.2·…]: top-p 0.7 keeps the first two, renormalised.
        let logits: [Float] = [log(0.5), log(0.3), log(0.1), log(0.05), log(0.03), log(0.02)]
        var s = sampler { $0.topK = 0; $0.topP = 0.7; $0.minP = 0; $0.temperature = 1 }
        let f = frequencies(&s, logits)
        XCTAssertEqual(f[0], 0.625, accuracy: 0.01)
        XCTAssertEqual(f[1], 0.375, accuracy: 0.01)
        XCTAssertEqual(f[2...].reduce(0, +), 0)
    }

    func testMinPDropsUnlikelyTokens() {
        let logits: [Float] = [log(0.5), log(0.3), log(0.1), log(0.05), log(0.03), log(0.02)]
        var s = sampler { $0.topK = 0; $0.topP = 1; $0.minP = 0.15; $0.temperature = 1 }  // keeps p ≥ 0.075
        let f = frequencies(&s, logits)
        XCTAssertEqual(f[0], 0.5 / 0.9, accuracy: 0.01)
        XCTAssertEqual(f[2], 0.1 / 0.9, accuracy: 0.01)
        XCTAssertEqual(f[3...].reduce(0, +), 0)
    }

    func testRepeatPenaltyFollowsLlamaCppSemantics() {
        // Positive logits are divided, negative multiplied; only ids in the last-n window count.
        var s = sampler { $0.temperature = 0; $0.repeatPenalty = 2; $0.repeatLastN = 2 }
        XCTAssertEqual(s.sample(logits: [3, 2, 0, 0, 0, 0], history: [0, 5]), 1)  // 3/2 < 2
        XCTAssertEqual(s.sample(logits: [3, 2, 0, 0, 0, 0], history: [0, 4, 5]), 0, "id 0 is outside the window")
        XCTAssertEqual(s.sample(logits: [-1, -1.5, -3, -3, -3, -3], history: [0]), 1)  // -2 < -1.5
    }

    func testSameSeedSameDrawsDifferentSeedDifferentDraws() {
        let logits: [Float] = [0, 1, 2, 0.5, -1, 1.5]
        var a = sampler { $0.seed = 7 }, b = sampler { $0.seed = 7 }, c = sampler { $0.seed = 8 }
        let drawsA = (0..<200).map { _ in a.sample(logits: logits) }
        XCTAssertEqual(drawsA, (0..<200).map { _ in b.sample(logits: logits) })
        XCTAssertNotEqual(drawsA, (0..<200).map { _ in c.sample(logits: logits) })
        XCTAssertEqual(a.seed, 7)
    }

    func testValidationNamesParameterAndValue() {
        var p = SamplingParameters()
        p.topP = 1.7
        XCTAssertThrowsError(try p.validate()) { XCTAssertEqual("\($0)", #""top_p" must be in (0, 1], got 1.7"#) }
        p = SamplingParameters()
        p.temperature = .nan
        XCTAssertThrowsError(try p.validate()) { XCTAssertEqual("\($0)", #""temp" must be a finite number ≥ 0, got nan"#) }
        p = SamplingParameters()
        p.topK = -1
        XCTAssertThrowsError(try p.validate()) { XCTAssertEqual("\($0)", #""top_k" must be ≥ 0, got -1"#) }
    }
}
