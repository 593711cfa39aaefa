import Foundation
import Quill
import XCTest

/// The shipped model reproduces the logits its training framework computed (fixture written by
/// scripts/train when the model was exported).
final class DefaultModelTests: XCTestCase {
    func testShippedModelMatchesTrainingFrameworkLogits() throws {
        let fixture = try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("default-model-logits.json")))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: fixture) as? [String: Any])
        let modelPath = TestPaths.repositoryRoot.appendingPathComponent(try XCTUnwrap(object["model"] as? String)).path
        let tokens = try XCTUnwrap(object["tokens"] as? [Int])
        let expected = try XCTUnwrap(object["logits"] as? [[Double]])
        XCTAssertEqual(expected.count, tokens.count)

        let checkpoint = try Checkpoint(path: modelPath)
        for (maxRows, name) in [(1, "token by token"), (64, "blocked prefill")] {
            let transformer = try Transformer(checkpoint: checkpoint, maxRows: maxRows)
            var rows: [[Float]] = []
            transformer.prefill(tokens, startPosition: 0, cache: try transformer.makeCache()) { _, logits, offset in
                rows.append(logits.array(offset: offset, length: checkpoint.config.vocabSize))
            }
            for (position, row) in rows.enumerated() {
                assertClose(row, expected[position].map { Float($0) }, tolerance: 1e-4, "\(name), position \(position)")
            }
        }
    }

    func testShippedTokenizerMatchesModel() throws {
        let model = TestPaths.repositoryRoot.appendingPathComponent("models/tinystories.bin").path
        let tokenizer = try Tokenizer(path: try XCTUnwrap(Tokenizer.defaultPath(forCheckpoint: model)))
        XCTAssertEqual(tokenizer.vocabSize, try Checkpoint(path: model).config.vocabSize)
        XCTAssertEqual(tokenizer.bosID, 1)
        XCTAssertEqual(tokenizer.eosID, 2)
        let text = "Once upon a time, there was a little dog."
        XCTAssertEqual(tokenizer.decode(try tokenizer.encode(text)), Array(text.utf8))
    }
}
