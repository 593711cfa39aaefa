import Foundation
import Quill
import XCTest

final class TokenizerTests: XCTestCase {
    func testKnownIDsWithTok512() throws {
        let tokenizer = try Tokenizer(path: try TestPaths.shared("tok512.model"))
        XCTAssertEqual(tokenizer.vocabSize, 512)
        XCTAssertEqual(tokenizer.bosID, 1)
        XCTAssertEqual(tokenizer.eosID, 2)
        XCTAssertEqual(try tokenizer.encode("Once upon a time"), [1, 403, 407, 261, 378])
        XCTAssertEqual(try tokenizer.encode("Once upon a time", addBOS: false), [403, 407, 261, 378])
        XCTAssertEqual(try tokenizer.encode(""), [1])
    }

    func testLlama2TokenizerKnownIDs() throws {
        let tokenizer = try Tokenizer(path: try TestPaths.shared("llama2-tokenizer.model"))
        XCTAssertEqual(tokenizer.vocabSize, 32000)
        // "Hello world" is [15043, 3186] in the Llama 2 vocabulary; "\n" falls back to byte <0x0A> = 13.
        XCTAssertEqual(try tokenizer.encode("Hello world"), [1, 15043, 3186])
        XCTAssertEqual(try tokenizer.encode("\n", addBOS: false).last, 13)
    }

    /// Encode, then decode one id at a time through the streaming detokenizer: the bytes must
    /// come back exactly, and no chunk may end inside a UTF-8 character.
    func testRoundTripsThroughStreamingDecode() throws {
        let texts = [
            "Once upon a time, there was a little girl named Lily.",
            "Café crème brûlée, naïve façade — Ångström, Øresund.",
            "東京は日本の首都です。小さな猫が寝ている。",
            "Emoji: 🦙🐉👩‍👩‍👧 ok 🇫🇷!",
            "line one\nline two\ttabbed\n\nend",
        ]
        // tok512 was trained with remove_extra_whitespaces, so only Llama 2's keeps double spaces.
        for (name, extra) in [("tok512.model", ""), ("llama2-tokenizer.model", "two  spaces   three")] {
            let tokenizer = try Tokenizer(path: try TestPaths.shared(name))
            for text in texts + [extra] where !text.isEmpty {
                let ids = try tokenizer.encode(text)
                var detokenizer = StreamingDetokenizer(tokenizer: tokenizer, previous: nil)
                var output: [UInt8] = []
                for id in ids {
                    let chunk = detokenizer.append(id)
                    XCTAssertNotNil(String(validating: chunk, as: UTF8.self), "\(name): chunk splits a character")
                    output += chunk
                }
                output += detokenizer.finish()
                XCTAssertEqual(String(decoding: output, as: UTF8.self), text, name)
                XCTAssertEqual(tokenizer.decode(ids), Array(text.utf8), name)
            }
        }
    }

    func testByteFallbackNeverPrintsPieceNames() throws {
        let tokenizer = try Tokenizer(path: try TestPaths.shared("tok512.model"))
        XCTAssertEqual(tokenizer.piece(13), "<0x0A>")
        XCTAssertEqual(tokenizer.decode([1, 403, 13, 407]), Array("Once\n upon".utf8))
    }

    func testLeadingSpaceDroppedOnlyAfterBOS() throws {
        let tokenizer = try Tokenizer(path: try TestPaths.shared("tok512.model"))
        var afterBOS = StreamingDetokenizer(tokenizer: tokenizer, previous: 1)
        XCTAssertEqual(afterBOS.append(407), Array("upon".utf8))
        var afterWord = StreamingDetokenizer(tokenizer: tokenizer, previous: 403)
        XCTAssertEqual(afterWord.append(407), Array(" upon".utf8))
    }

    func testIncompleteCharacterIsHeldAndInvalidBytesAreKept() throws {
        let tokenizer = try Tokenizer(path: try TestPaths.shared("tok512.model"))
        // Byte pieces: id = 3 + byte. "é" is C3 A9; a lone 0xFF and a dangling lead byte are invalid.
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer, previous: 403)
        XCTAssertEqual(detokenizer.append(3 + 0xC3), [])
        XCTAssertEqual(detokenizer.append(3 + 0xA9), [0xC3, 0xA9])
        XCTAssertEqual(detokenizer.append(3 + 0xFF), [0xFF])
        XCTAssertEqual(detokenizer.append(3 + 0xE6), [])
        XCTAssertEqual(detokenizer.append(3 + 0x41), [0xE6, 0x41], "a broken character is passed through, not dropped")
        XCTAssertEqual(detokenizer.append(3 + 0xF0), [])
        XCTAssertEqual(detokenizer.finish(), [0xF0], "the end of the stream releases what was held")
    }

    func testMissingAndInvalidTokenizerFiles() throws {
        let folder = try temporaryFolder(self)
        let missing = folder.appendingPathComponent("none.model").path
        XCTAssertThrowsError(try Tokenizer(path: missing)) { XCTAssertEqual("\($0)", "\(missing): no such file") }
        let garbage = folder.appendingPathComponent("garbage.model").path
        try Data("not a protobuf at all".utf8).write(to: URL(fileURLWithPath: garbage))
        XCTAssertThrowsError(try Tokenizer(path: garbage)) {
            XCTAssertTrue("\($0)".hasPrefix("\(garbage): not a SentencePiece model ("), "\($0)")
        }
    }

    func testDefaultTokenizerPathBesideCheckpoint() throws {
        let folder = try temporaryFolder(self)
        let model = folder.appendingPathComponent("story.bin").path
        XCTAssertNil(Tokenizer.defaultPath(forCheckpoint: model))
        FileManager.default.createFile(atPath: folder.appendingPathComponent("tokenizer.model").path, contents: Data())
        XCTAssertEqual(Tokenizer.defaultPath(forCheckpoint: model), folder.appendingPathComponent("tokenizer.model").path)
        FileManager.default.createFile(atPath: folder.appendingPathComponent("story.model").path, contents: Data())
        XCTAssertEqual(Tokenizer.defaultPath(forCheckpoint: model), folder.appendingPathComponent("story.model").path)
    }
}
