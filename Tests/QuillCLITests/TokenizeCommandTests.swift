import Foundation
import XCTest

/// `quill tokenize` / `detokenize` end to end: exact on the bytes given, SentencePiece's decode,
/// and clear errors for tokenizers Quill cannot use.
final class TokenizeCommandTests: XCTestCase {
    static let shippedModel = CLI.root.appendingPathComponent("models/tinystories.bin").path
    static let shippedTokenizer = CLI.root.appendingPathComponent("models/tinystories.model").path

    private func temporaryFile(_ bytes: [UInt8], name: String = "text.txt") throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("quill-tokenize-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    private func ids(_ run: QuillRun) -> [Int] {
        run.text.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int($0) }
    }

    func testTokenizeOfAFileCountsWhatPerplexityScores() throws {
        let text = "Once upon a time, there was a little dog named Max.\nHe liked to run.\n"
        let file = try temporaryFile(Array(text.utf8))
        let tokenized = try CLI.run(["tokenize", "-z", Self.shippedTokenizer, "-f", file])
        XCTAssertEqual(tokenized.status, 0, tokenized.stderr)
        let perplexity = try CLI.run(["perplexity", "-z", Self.shippedTokenizer, "-m", Self.shippedModel, "-f", file, "--json"])
        XCTAssertEqual(perplexity.status, 0, perplexity.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: perplexity.stdout) as? [String: Any])
        XCTAssertEqual(ids(tokenized).count, report["tokens"] as? Int, "tokenize -f and perplexity -f see the same text")
        // The final newline is a token of its own: stdin and -f keep it, like the text argument.
        let fromStdin = try CLI.run(["tokenize", "-z", Self.shippedTokenizer], stdin: Data(text.utf8))
        XCTAssertEqual(ids(fromStdin), ids(tokenized))
        XCTAssertEqual(ids(try CLI.run(["tokenize", "-z", Self.shippedTokenizer, text])), ids(tokenized))
        let withoutNewline = try CLI.run(["tokenize", "-z", Self.shippedTokenizer, String(text.dropLast())])
        XCTAssertEqual(ids(withoutNewline).count + 1, ids(tokenized).count)
    }

    func testDetokenizeOfTokenizeGivesTheBytesBack() throws {
        let text = "  Two spaces first.\r\nLily said, \"Hi!\"\n\n"
        let file = try temporaryFile(Array(text.utf8))
        for bos in [[], ["--no-bos"]] {
            let tokenized = try CLI.run(["tokenize", "-z", Self.shippedTokenizer, "-f", file] + bos)
            XCTAssertEqual(tokenized.status, 0, tokenized.stderr)
            let detokenized = try CLI.run(["detokenize", "-z", Self.shippedTokenizer], stdin: tokenized.stdout)
            XCTAssertEqual(detokenized.status, 0, detokenized.stderr)
            XCTAssertEqual(detokenized.text, text, "\(bos)")
        }
    }

    func testDetokenizeWithoutBOSDropsTheFirstLeadingSpaceLikeSentencePiece() throws {
        let tokenizer = try CLI.sharedFile("llama2-tokenizer.model")
        XCTAssertEqual(try CLI.run(["detokenize", "-z", tokenizer, "15043 3186"]).text, "Hello world")
        XCTAssertEqual(try CLI.run(["detokenize", "-z", tokenizer, "1 15043 3186"]).text, "Hello world")
        XCTAssertEqual(try CLI.run(["detokenize", "-z", tokenizer, "29871 15043"]).text, " Hello")
    }

    func testTokenizerWithoutBOSAsksForNoBOS() throws {
        // The shipped model with a TrainerSpec appended (protobuf merges it into the first) whose
        // BOS piece does not exist and whose bos_id is -1: a model trained without BOS.
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: Self.shippedTokenizer)))
        let trainerSpec: [UInt8] = [0xF2, 0x02, 7] + Array("<nobos>".utf8) + [0xC8, 0x02]
            + [UInt8](repeating: 0xFF, count: 9) + [0x01]
        let path = try temporaryFile(original + [0x12, UInt8(trainerSpec.count)] + trainerSpec, name: "nobos.model")
        let refused = try CLI.run(["tokenize", "-z", path, "Once upon a time"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.text, "", "no -1 on stdout")
        XCTAssertTrue(refused.stderr.contains("no beginning-of-sequence piece"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--no-bos"), refused.stderr)
        let plain = try CLI.run(["tokenize", "-z", path, "--no-bos", "Once upon a time"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(ids(plain).isEmpty)
        XCTAssertFalse(plain.text.contains("-1"))
    }

    func testFIFOAsTokenizerIsRefusedAtOnce() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("quill-fifo-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let fifo = folder.appendingPathComponent("tok.model").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        // `timeout` turns a hang into exit status 124 instead of a stuck test.
        let run = try CLI.shell("timeout 20 '\(CLI.executable.path)' tokenize -z '\(fifo)' hi")
        XCTAssertEqual(run.status, 1, run.err)
        XCTAssertEqual(run.err, "quill: error: \(fifo): not a regular file\n")
        guard run.status == 1 else { return }  // a binary that hangs on a FIFO would also read /dev/zero forever
        let device = try CLI.run(["tokenize", "-z", "/dev/zero", "hi"])
        XCTAssertEqual(device.status, 1)
        XCTAssertEqual(device.stderr, "quill: error: /dev/zero: not a regular file\n")
    }
}
