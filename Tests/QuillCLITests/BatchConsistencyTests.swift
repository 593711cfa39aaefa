import Foundation
import XCTest

/// A request gives the same text whatever batch it is decoded in: each sequence's products are
/// computed as if it were alone, for int8 weights (whose 1-row, 2–16-row and larger paths used
/// to round differently) as for float32.
final class BatchConsistencyTests: XCTestCase {
    func testGreedyTextIsTheSameAtEveryParallelWidth() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("quill-batch-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let float32 = CLI.root.appendingPathComponent("models/tinystories.bin").path
        let tokenizer = CLI.root.appendingPathComponent("models/tinystories.model").path
        let int8 = folder.appendingPathComponent("q8.bin").path
        XCTAssertEqual(try CLI.run(["quantize", float32, int8]).status, 0)
        let openings = ["Once upon a time", "The dog", "Lily and Tom", "One day", "The sun was", "A little bird",
                        "Mom said", "The big red ball", "In the park", "Sam was sad"]
        let prompts = (0..<40).map { openings[$0 % openings.count] + String(repeating: " and", count: $0 / 10) }
        let batch = folder.appendingPathComponent("prompts.txt")
        try prompts.joined(separator: "\n").write(to: batch, atomically: true, encoding: .utf8)
        for model in [int8, float32] {
            var texts: [Int: [String]] = [:]
            for parallel in [1, 2, 17, 33] {
                let run = try CLI.run(["-m", model, "-z", tokenizer, "--batch", batch.path, "--temp", "0", "-n", "24",
                                       "--ignore-eos", "--parallel", "\(parallel)"])
                XCTAssertEqual(run.status, 0, run.stderr)
                texts[parallel] = run.text.split(separator: "\n").map { line in
                    let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                    return object?["text"] as? String ?? "(no text)"
                }
                XCTAssertEqual(texts[parallel]?.count, prompts.count)
            }
            for parallel in [2, 17, 33] {
                XCTAssertEqual(texts[parallel], texts[1], "\(URL(fileURLWithPath: model).lastPathComponent), --parallel \(parallel) against 1")
            }
        }
    }
}
