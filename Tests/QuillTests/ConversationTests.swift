import Foundation
import Quill
import QuillKernels
import XCTest

/// Log-probabilities against a naive log-softmax written out here, and a conversation's
/// bookkeeping of what its KV cache holds across turns (the end-to-end checks against
/// `quill logits` are in Tests/python/test_chat_cli.py).
final class ConversationTests: XCTestCase {
    /// log(exp(x_i) / Σ exp(x_j)), term by term in Double.
    private func naiveLogSoftmax(_ x: [Double]) -> [Double] {
        let total = x.map { exp($0) }.reduce(0, +)
        return x.map { $0 - log(total) }
    }

    func testLogprobsAreTheLogSoftmaxAfterPenaltyAndTemperatureBeforeTruncation() {
        let logits: [Float] = [2.0, -1.0, 0.5, 3.0, 1.5, -0.25]
        var parameters = SamplingParameters()
        parameters.temperature = 0.5
        parameters.topK = 2  // truncation: it changes which ids may be drawn, not the reported values
        parameters.repeatPenalty = 2
        parameters.seed = 3
        var sampler = Sampler(parameters: parameters, vocabSize: logits.count)
        let history: ArraySlice<Int> = [3, 1, 3]
        let buffer = FloatBuffer(logits)
        let token = sampler.sample(buffer, history: history)
        XCTAssertTrue([0, 3].contains(token), "top-k 2 of the penalised logits: ids 0 (2.0) and 3 (1.5)")
        let result = sampler.logprobs(of: token, top: 3, raw: buffer)
        // Id 3 (3.0 > 0) is divided by 2, id 1 (-1.0 ≤ 0) multiplied by 2, each once.
        let penalised: [Double] = [2.0, -2.0, 0.5, 1.5, 1.5, -0.25]
        let used = naiveLogSoftmax(penalised.map { $0 / 0.5 })
        let raw = naiveLogSoftmax(logits.map(Double.init))
        XCTAssertEqual(result.logprob, used[token], accuracy: 1e-9)
        XCTAssertEqual(result.rawLogprob, raw[token], accuracy: 1e-6)
        // Ties (ids 3 and 4 at 1.5) list the lower id first.
        XCTAssertEqual(result.top.map(\.id), [0, 3, 4])
        for alternative in result.top { XCTAssertEqual(alternative.logprob, used[alternative.id], accuracy: 1e-9) }

        var greedy = SamplingParameters()
        greedy.temperature = 0
        var argmax = Sampler(parameters: greedy, vocabSize: logits.count)
        XCTAssertEqual(argmax.sample(buffer), 3)
        // Greedy reports the distribution at temperature 1.
        XCTAssertEqual(argmax.logprobs(of: 3, top: 0, raw: buffer).logprob, raw[3], accuracy: 1e-6)
        XCTAssertEqual(argmax.logprobs(of: 3, top: 0, raw: buffer).top, [])
    }

    private func stories() throws -> (LoadedModel, Tokenizer) {
        let model = try ModelLoader.load(modelPath: try TestPaths.shared("stories260K.bin"),
                                         tokenizerPath: try TestPaths.shared("tok512.model"), tokenizer: .required)
        return (model, try model.requireTokenizer())
    }

    /// Turns append to `cached`: the prompt and every token fed back; a full cache shifts (its
    /// sinks kept) when the request shifts, and is an error naming /clear when it does not.
    func testTurnsKeepTheSequenceInTheCacheAndShiftOrRefuseWhenFull() throws {
        let (model, tokenizer) = try stories()
        let transformer = try model.makeTransformer(threads: 1, maxRows: 8, cacheCapacity: 40)
        let generator = try Generator(transformer: transformer, tokenizer: tokenizer)
        var greedy = SamplingParameters()
        greedy.temperature = 0
        let first = try tokenizer.encode("Once upon a time")
        let stats = try generator.generate(GenerationRequest(prompt: first, maxNewTokens: 6, sampling: greedy, ignoreEOS: true),
                                           continuing: true) { _ in nil }
        XCTAssertEqual(generator.cached, first + stats.tokens, "stopped by -n: every generated token was fed")
        let second = try tokenizer.encode("The dog ran", addBOS: false)
        let before = generator.cached
        let more = try generator.generate(GenerationRequest(prompt: second, maxNewTokens: 3, sampling: greedy, ignoreEOS: true),
                                          continuing: true) { _ in nil }
        XCTAssertEqual(generator.cached, before + second + more.tokens)
        XCTAssertEqual(more.promptTokens, second.count, "only the turn's own ids are fed")

        // 40 positions: a long turn does not fit after what is cached.
        let long = try tokenizer.encode(String(repeating: "The cat sat on the mat. ", count: 3), addBOS: false)
        let held = generator.cached
        XCTAssertThrowsError(try generator.generate(GenerationRequest(prompt: long, maxNewTokens: 2, sampling: greedy),
                                                    continuing: true) { _ in nil }) { error in
            XCTAssertTrue("\(error)".contains("/clear"), "\(error)")
        }
        XCTAssertEqual(generator.cached, held, "a refused turn leaves the cache as it was")
        // One new token: the shift that makes room for the turn is the only one.
        XCTAssertGreaterThan(held.count + long.count + 1, 40)
        let shifted = try generator.generate(GenerationRequest(prompt: long, maxNewTokens: 1, sampling: greedy, ignoreEOS: true,
                                                               contextShift: ContextShift(keep: 4)),
                                             continuing: true) { _ in nil }
        XCTAssertEqual(Array(generator.cached.prefix(4)), Array(held.prefix(4)), "the sinks stay")
        XCTAssertEqual(shifted.shifts, 0, "the room was made before the turn")
        XCTAssertEqual(Array(generator.cached.suffix(long.count + 1)), long + shifted.tokens)
        XCTAssertEqual(generator.cached.count, held.count - (held.count + long.count + 1 - 40) + long.count + 1)
        XCTAssertLessThanOrEqual(generator.cached.count, 40)

        generator.clear()
        XCTAssertEqual(generator.cached, [])
    }
}
