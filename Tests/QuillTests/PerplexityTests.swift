import Foundation
import Quill
import XCTest

final class PerplexityTests: XCTestCase {
    /// log p(token | prefix) at every position, one token at a time through the KV cache.
    private func stepwiseLogProbabilities(_ transformer: Transformer, _ tokens: [Int]) throws -> [Double] {
        let cache = try transformer.makeCache()
        let vocab = transformer.config.vocabSize
        return (0..<tokens.count - 1).map { p in
            let logits = transformer.forward(token: tokens[p], position: p, cache: cache).array(length: vocab).map(Double.init)
            let top = logits.max()!
            return logits[tokens[p + 1]] - top - log(logits.map { exp($0 - top) }.reduce(0, +))
        }
    }

    func testPerplexityEqualsMeanOfStepwiseLogProbabilities() throws {
        let checkpoint = try Checkpoint(path: try TestPaths.shared("stories260K.bin"))
        let tokenizer = try Tokenizer(path: try TestPaths.shared("tok512.model"))
        let text = "Once upon a time, there was a little dog named Max. Max liked to run in the park with his ball."
        let tokens = try tokenizer.encode(text)
        let transformer = try Transformer(checkpoint: checkpoint, maxRows: 16)
        let result = try Perplexity.evaluate(tokens, transformer: transformer, keepPerToken: true)
        let expected = try stepwiseLogProbabilities(try Transformer(checkpoint: checkpoint), tokens)
        XCTAssertEqual(result.scored, tokens.count - 1)
        XCTAssertEqual(result.meanNLL, -expected.reduce(0, +) / Double(expected.count), accuracy: 1e-5)
        for (entry, logProbability) in zip(result.perToken, expected) {
            XCTAssertEqual(entry.logProbability, logProbability, accuracy: 1e-4)
        }
        XCTAssertEqual(result.perplexity, exp(result.meanNLL), accuracy: 1e-9)
        let bytes = text.utf8.count
        XCTAssertEqual(result.bitsPerByte(bytes: bytes), result.totalNLL / log(2) / Double(bytes), accuracy: 1e-12)
    }

    func testLongTextIsScoredInWindowsEachTokenOnce() throws {
        // Context 40, 100 tokens, stride 15: windows start at 0, 15, 30, ...
        let checkpoint = try Checkpoint(path: try RandomWeights(config: .tinyGQA, seed: 2).write(to: try temporaryFolder(self)))
        let tokens = (0..<100).map { ($0 * 37 + 11) % 67 }
        let result = try Perplexity.evaluate(tokens, transformer: try Transformer(checkpoint: checkpoint, maxRows: 8),
                                             stride: 15, keepPerToken: true)
        XCTAssertEqual(result.perToken.map(\.position), Array(1..<100), "every token after the first, once, in order")
        // Token t is predicted inside the window that starts at the largest multiple of 15 whose
        // earlier windows did not reach t; recompute each from that start, one token at a time.
        var windowStart = 0, coveredUpTo = 0
        var expected: [Double] = []
        while coveredUpTo < 99 {
            let end = min(windowStart + 40, 100)
            let window = Array(tokens[windowStart..<end])
            let stepwise = try stepwiseLogProbabilities(try Transformer(checkpoint: checkpoint), window)
            for t in (coveredUpTo + 1)..<end { expected.append(stepwise[t - windowStart - 1]) }
            coveredUpTo = end - 1
            windowStart += 15
        }
        for (entry, logProbability) in zip(result.perToken, expected) {
            XCTAssertEqual(entry.logProbability, logProbability, accuracy: 1e-4, "position \(entry.position)")
        }
    }

    /// Ctrl-C: scoring stops before the next prefill block and returns what was scored, marked
    /// incomplete, and those scores are the same as in a full run.
    func testStoppingReturnsThePartialScoresOfWholeBlocks() throws {
        let checkpoint = try Checkpoint(path: try RandomWeights(config: .tinyGQA, seed: 2).write(to: try temporaryFolder(self)))
        let tokens = (0..<100).map { ($0 * 37 + 11) % 67 }
        let full = try Perplexity.evaluate(tokens, transformer: try Transformer(checkpoint: checkpoint, maxRows: 8),
                                           stride: 15, keepPerToken: true)
        XCTAssertTrue(full.complete)
        var checks = 0
        let partial = try Perplexity.evaluate(tokens, transformer: try Transformer(checkpoint: checkpoint, maxRows: 8),
                                              stride: 15, keepPerToken: true, shouldStop: {
                                                  checks += 1
                                                  return checks > 3  // three blocks of 8 rows, then stop
                                              })
        XCTAssertFalse(partial.complete)
        XCTAssertEqual(partial.scored, 24, "positions 0..<24 of the first window predict tokens 1...24")
        XCTAssertEqual(partial.perToken.map(\.logProbability), Array(full.perToken.prefix(24).map(\.logProbability)))
    }

    func testRejectsTooShortAndOutOfVocabulary() throws {
        let checkpoint = try Checkpoint(path: try RandomWeights(config: .tinyGQA, seed: 2).write(to: try temporaryFolder(self)))
        let transformer = try Transformer(checkpoint: checkpoint)
        XCTAssertThrowsError(try Perplexity.evaluate([1], transformer: transformer)) {
            XCTAssertEqual("\($0)", "need at least 2 tokens to score, got 1")
        }
        XCTAssertThrowsError(try Perplexity.evaluate([1, 99], transformer: transformer)) {
            XCTAssertEqual("\($0)", "token id 99 is outside the vocabulary (67 tokens)")
        }
    }
}

final class StopStringTests: XCTestCase {
    func testStopStringSpanningPushesIsHeldThenCut() {
        var filter = StopStringFilter(stopStrings: ["The End"])
        XCTAssertEqual(filter.push(Array("happily. Th".utf8)).ready, Array("happily. ".utf8))
        XCTAssertEqual(filter.push(Array("e E".utf8)).ready, [])
        let last = filter.push(Array("nd!".utf8))
        XCTAssertEqual(last.ready, [])
        XCTAssertTrue(last.stopped)
    }

    func testFalseStartIsReleased() {
        var filter = StopStringFilter(stopStrings: ["\n\n"])
        XCTAssertEqual(filter.push(Array("a\n".utf8)).ready, Array("a".utf8))
        XCTAssertEqual(filter.push(Array("b".utf8)).ready, Array("\nb".utf8))
        XCTAssertEqual(filter.push(Array("c\n".utf8), final: true).ready, Array("c\n".utf8))
    }

    func testEarliestOfSeveralStopsWins() {
        var filter = StopStringFilter(stopStrings: ["dog", "cat"])
        let result = filter.push(Array("a cat and a dog".utf8))
        XCTAssertEqual(result.ready, Array("a ".utf8))
        XCTAssertTrue(result.stopped)
    }
}
