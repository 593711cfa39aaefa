import Foundation
import Quill
import XCTest

/// The tokenizer built from a GGUF file's vocabulary against the `sentencepiece` package with
/// the original `.model`: Fixtures/gguf/tinystories-vocab.gguf holds models/tinystories.model's
/// vocabulary as llama.cpp's converter writes it, and tinystories-vocab.json the ids and text
/// `sentencepiece` gives for 31 strings (both from scripts/make_gguf_tokenizer_fixture.py).
/// Then each refusal, on copies of that vocabulary with one key changed.
final class GGUFTokenizerTests: XCTestCase {
    private static let fixture = "gguf/tinystories-vocab"

    // MARK: - Against sentencepiece

    func testTinyStoriesVocabularyEncodesAndDecodesAsSentencePiece() throws {
        let gguf = try GGUFFile(path: TestPaths.fixture(GGUFTokenizerTests.fixture + ".gguf"))
        let expected = try expectedJSON(TestPaths.fixture(GGUFTokenizerTests.fixture + ".json"))
        let vocabulary = try GGUFVocabulary(gguf: gguf)
        XCTAssertEqual(vocabulary.pieces.count, 2048)
        XCTAssertEqual(vocabulary.unknownID, 0)
        XCTAssertEqual(vocabulary.bosID, 1)
        XCTAssertEqual(vocabulary.eosID, 2)
        XCTAssertNil(vocabulary.padID)
        XCTAssertTrue(vocabulary.addBOS)
        XCTAssertTrue(vocabulary.addSpacePrefix)
        XCTAssertEqual(vocabulary.types.filter { $0 == .byte }.count, 256)
        try assertMatches(try Tokenizer(gguf: gguf), expected, label: "tinystories")

        // The same strings through the original .model, loaded by the same shim.
        let original = try Tokenizer(path: TestPaths.repositoryRoot.appendingPathComponent("models/tinystories.model").path)
        let fromGGUF = try Tokenizer(gguf: gguf)
        for text in try XCTUnwrap(expected["cases"]?.items).compactMap({ $0["text"]?.string }) {
            XCTAssertEqual(try fromGGUF.encode(text), try original.encode(text), text)
        }
        XCTAssertEqual((0..<2048).map { fromGGUF.piece($0).map { Array($0.utf8) } },
                       (0..<2048).map { original.piece($0).map { Array($0.utf8) } })
    }

    /// More fixtures written by the script elsewhere (Llama 2's vocabulary makes a 720 KB GGUF,
    /// too large to commit): `QUILL_GGUF_VOCAB_FIXTURES=DIR` runs every `DIR/*-vocab.json`.
    func testVocabulariesInFolderFromEnvironment() throws {
        guard let folder = ProcessInfo.processInfo.environment["QUILL_GGUF_VOCAB_FIXTURES"] else {
            throw XCTSkip("QUILL_GGUF_VOCAB_FIXTURES not set: no extra vocabularies to compare")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix("-vocab.json") }
        XCTAssertFalse(names.isEmpty, "no *-vocab.json in \(folder)")
        for name in names.sorted() {
            let expected = try expectedJSON(folder + "/" + name)
            let gguf = try GGUFFile(path: folder + "/" + (try XCTUnwrap(expected["gguf"]?.string)))
            try assertMatches(try Tokenizer(gguf: gguf), expected, label: name)
        }
    }

    func testModelBytesAreTheVocabularysAndRepeatable() throws {
        let gguf = try GGUFFile(path: TestPaths.fixture(GGUFTokenizerTests.fixture + ".gguf"))
        let bytes = try sentencePieceModel(from: gguf)
        XCTAssertEqual(bytes, try GGUFVocabulary(gguf: gguf).sentencePieceModel())
        XCTAssertEqual(bytes, try sentencePieceModel(from: gguf))
        let tokenizer = try Tokenizer(serializedModel: bytes, name: "from-bytes")
        XCTAssertEqual(try tokenizer.encode("Once upon a time"), [1, 413, 434, 261, 387])
    }

    // MARK: - Keys that change the tokenizer

    func testHandWrittenCopyOfTheFixtureGivesTheSameModel() throws {
        let entries = try fixtureEntries()
        XCTAssertEqual(try model(entries), try sentencePieceModel(from: GGUFFile(path: TestPaths.fixture(GGUFTokenizerTests.fixture + ".gguf"))))
    }

    func testAddBOSAndSpacePrefixComeFromTheFile() throws {
        var entries = try fixtureEntries()
        set(&entries, "tokenizer.ggml.add_bos_token", .bool(false))
        set(&entries, "tokenizer.ggml.add_space_prefix", .bool(false))
        let gguf = try GGUFFile(bytes: ggufBytes(entries), path: "v.gguf")
        XCTAssertFalse(try GGUFVocabulary(gguf: gguf).addBOS)
        let tokenizer = try Tokenizer(gguf: gguf)
        let ids = try tokenizer.encode("Once upon a time", addBOS: false)
        XCTAssertFalse(try XCTUnwrap(tokenizer.piece(ids[0])).hasPrefix("\u{2581}"), "no space put before the text")
        XCTAssertEqual(tokenizer.decode(ids), Array("Once upon a time".utf8))

        remove(&entries, "tokenizer.ggml.add_bos_token")
        remove(&entries, "tokenizer.ggml.add_space_prefix")
        let defaults = try GGUFVocabulary(gguf: GGUFFile(bytes: ggufBytes(entries), path: "v.gguf"))
        XCTAssertTrue(defaults.addBOS)
        XCTAssertTrue(defaults.addSpacePrefix)
    }

    func testSpecialIDsDefaultAsInLlamaCpp() throws {
        var entries = try fixtureEntries()
        for key in ["bos_token_id", "eos_token_id", "unknown_token_id"] { remove(&entries, "tokenizer.ggml." + key) }
        let tokenizer = try Tokenizer(gguf: GGUFFile(bytes: ggufBytes(entries), path: "v.gguf"))
        XCTAssertEqual(tokenizer.bosID, 1)
        XCTAssertEqual(tokenizer.eosID, 2)

        // Without the keys and with no control piece at 1 and 2, there is no BOS or EOS, even
        // though a control piece is named "<s>" (SentencePiece's default BOS text).
        var types = try XCTUnwrap(integers(entries, "tokenizer.ggml.token_type"))
        var tokens = try XCTUnwrap(strings(entries, "tokenizer.ggml.tokens"))
        (types[1], types[2], types[1000]) = (1, 1, 3)
        (tokens[1], tokens[1000]) = (tokens[1000], "<s>")
        set(&entries, "tokenizer.ggml.token_type", .array(.int32(types.map(Int32.init))))
        set(&entries, "tokenizer.ggml.tokens", .array(.string(tokens)))
        let gguf = try GGUFFile(bytes: ggufBytes(entries), path: "v.gguf")
        XCTAssertNil(try GGUFVocabulary(gguf: gguf).bosID)
        let without = try Tokenizer(gguf: gguf)
        XCTAssertEqual(without.bosID, -1)
        XCTAssertEqual(without.eosID, -1)
    }

    /// llama.cpp's converter writes user-defined pieces with spaces for `▁`; they must still
    /// match as one piece.
    func testUserDefinedPieceWithASpaceMatchesAsOnePiece() throws {
        var entries = try fixtureEntries()
        set(&entries, "tokenizer.ggml.tokens", .array(.string(try XCTUnwrap(strings(entries, "tokenizer.ggml.tokens")) + ["big dog"])))
        set(&entries, "tokenizer.ggml.scores", .array(.float32(try XCTUnwrap(floats(entries, "tokenizer.ggml.scores")) + [-1000])))
        set(&entries, "tokenizer.ggml.token_type", .array(.int32(try XCTUnwrap(integers(entries, "tokenizer.ggml.token_type")).map(Int32.init) + [4])))
        let tokenizer = try Tokenizer(gguf: GGUFFile(bytes: ggufBytes(entries), path: "v.gguf"))
        XCTAssertEqual(tokenizer.piece(2048), "big\u{2581}dog")
        let ids = try tokenizer.encode("a big dog ran", addBOS: false)
        XCTAssertTrue(ids.contains(2048), "\(ids)")
        XCTAssertEqual(tokenizer.decode(ids), Array("a big dog ran".utf8))
    }

    /// Pieces are told apart by their bytes, as SentencePiece does, not by Swift's String
    /// equality (canonical equivalence): Llama 2 has "ί" both as U+1F77 and as U+03AF.
    func testCanonicallyEquivalentPiecesAreDistinct() throws {
        var entries = try fixtureEntries()
        let added = ["\u{1F77}", "\u{3AF}"]
        set(&entries, "tokenizer.ggml.tokens", .array(.string(try XCTUnwrap(strings(entries, "tokenizer.ggml.tokens")) + added)))
        set(&entries, "tokenizer.ggml.scores", .array(.float32(try XCTUnwrap(floats(entries, "tokenizer.ggml.scores")) + [-1, -2])))
        set(&entries, "tokenizer.ggml.token_type", .array(.int32(try XCTUnwrap(integers(entries, "tokenizer.ggml.token_type")).map(Int32.init) + [1, 1])))
        let tokenizer = try Tokenizer(gguf: GGUFFile(bytes: ggufBytes(entries), path: "v.gguf"))
        XCTAssertEqual(try tokenizer.encode("x" + added[0], addBOS: false).last, 2048)
        XCTAssertEqual(try tokenizer.encode("x" + added[1], addBOS: false).last, 2049)
    }

    // MARK: - Refusals

    func testOtherTokenizerKindsAreRefusedWithTheWayOut() throws {
        var entries = try fixtureEntries()
        set(&entries, "tokenizer.ggml.model", .string("gpt2"))
        try assertRefused(entries, "v.gguf: tokenizer.ggml.model is 'gpt2' (byte-level BPE), which Quill does not read; "
            + "give a SentencePiece tokenizer.model if the model has one", exact: true)
        set(&entries, "tokenizer.ggml.model", .string("bert"))
        try assertRefused(entries, "tokenizer.ggml.model is 'bert' (WordPiece), which Quill does not read; give a SentencePiece")
        set(&entries, "tokenizer.ggml.model", .string("sentencepiece-ish"))
        try assertRefused(entries, "tokenizer.ggml.model is 'sentencepiece-ish', which Quill does not read")
        set(&entries, "tokenizer.ggml.model", .uint32(1))
        try assertRefused(entries, "metadata 'tokenizer.ggml.model' is uint32, expected string")
        remove(&entries, "tokenizer.ggml.model")
        try assertRefused(entries, "tokenizer.ggml.model is missing, so the file has no tokenizer Quill reads; give a SentencePiece")
    }

    func testMissingAndMismatchedArraysAreRefused() throws {
        let entries = try fixtureEntries()
        let tokens = try XCTUnwrap(strings(entries, "tokenizer.ggml.tokens"))
        let scores = try XCTUnwrap(floats(entries, "tokenizer.ggml.scores"))
        let types = try XCTUnwrap(integers(entries, "tokenizer.ggml.token_type"))
        for key in ["tokens", "scores", "token_type"] {
            var copy = entries
            remove(&copy, "tokenizer.ggml." + key)
            try assertRefused(copy, "metadata 'tokenizer.ggml.\(key)' is missing")
        }
        try assertRefused(changed(entries, "tokenizer.ggml.scores", .array(.float32(scores.dropLast()))),
                          "tokenizer.ggml.scores has 2,047 values for 2,048 tokens")
        try assertRefused(changed(entries, "tokenizer.ggml.token_type", .array(.int32(types.map(Int32.init) + [1]))),
                          "tokenizer.ggml.token_type has 2,049 values for 2,048 tokens")
        try assertRefused(changed(entries, "tokenizer.ggml.scores", .array(.string(tokens))),
                          "metadata 'tokenizer.ggml.scores' is array of string, expected array of float32")
        try assertRefused(changed(entries, "tokenizer.ggml.tokens", .array(.string([]))), "tokenizer.ggml.tokens is empty")
        // Token types as uint8 are read too (any integer type).
        XCTAssertNoThrow(try GGUFVocabulary(gguf: GGUFFile(bytes: ggufBytes(changed(
            entries, "tokenizer.ggml.token_type", .array(.uint8(types.map(UInt8.init))))), path: "v.gguf")))
    }

    func testBadValuesAreRefused() throws {
        let entries = try fixtureEntries()
        let tokens = try XCTUnwrap(strings(entries, "tokenizer.ggml.tokens"))
        let scores = try XCTUnwrap(floats(entries, "tokenizer.ggml.scores"))
        let types = try XCTUnwrap(integers(entries, "tokenizer.ggml.token_type"))
        func withScore(_ id: Int, _ value: Float) -> [(String, GGUFValue)] {
            var s = scores
            s[id] = value
            return changed(entries, "tokenizer.ggml.scores", .array(.float32(s)))
        }
        func withType(_ id: Int, _ value: Int32) -> [(String, GGUFValue)] {
            var t = types.map(Int32.init)
            t[id] = value
            return changed(entries, "tokenizer.ggml.token_type", .array(.int32(t)))
        }
        func withToken(_ id: Int, _ text: String) -> [(String, GGUFValue)] {
            var t = tokens
            t[id] = text
            return changed(entries, "tokenizer.ggml.tokens", .array(.string(t)))
        }
        try assertRefused(withScore(700, .nan), "tokenizer.ggml.scores has a non-finite value (nan) for token 700")
        try assertRefused(withScore(3, -.infinity), "tokenizer.ggml.scores has a non-finite value (-inf) for token 3")
        try assertRefused(withType(9, 7), "tokenizer.ggml.token_type has 7 for token 9; token types are 1 to 6")
        try assertRefused(withType(9, 0), "tokenizer.ggml.token_type has 0 for token 9")
        try assertRefused(withType(0, 1), "tokenizer.ggml.token_type has 0 tokens of type unknown (2); SentencePiece needs exactly one")
        try assertRefused(withType(1000, 2), "tokenizer.ggml.token_type has 2 tokens of type unknown (2)")
        let byteA = try XCTUnwrap(tokens.firstIndex(of: "<0x41>"))
        try assertRefused(withType(byteA, 1), "tokenizer.ggml.token_type marks 255 byte pieces; byte fallback needs all 256 or none")
        try assertRefused(withType(1000, 6), "tokenizer.ggml.tokens has '\(tokens[1000])' at id 1000, of type byte (6), which is not a byte piece")
        try assertRefused(withToken(byteA, "<0x4a>"), "'<0x4a>' at id \(byteA), of type byte (6)")
        try assertRefused(withToken(1000, tokens[999]), "tokenizer.ggml.tokens has '\(tokens[999])' twice (ids 999 and 1000)")
        try assertRefused(withToken(1000, ""), "tokenizer.ggml.tokens has an empty token at id 1000")
        // A control piece may share its text with a normal one, as in SentencePiece.
        XCTAssertNoThrow(try Tokenizer(gguf: GGUFFile(bytes: ggufBytes(withToken(1000, "<s>")), path: "v.gguf")))
    }

    func testSpecialIDsOutOfRangeOrOfTheWrongTypeAreRefused() throws {
        let entries = try fixtureEntries()
        for key in ["bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"] {
            try assertRefused(changed(entries, "tokenizer.ggml." + key, .uint32(2048)),
                              "tokenizer.ggml.\(key) is 2048, outside the 2,048 tokens")
        }
        try assertRefused(changed(entries, "tokenizer.ggml.bos_token_id", .int32(-1)), "tokenizer.ggml.bos_token_id is -1, outside")
        try assertRefused(changed(entries, "tokenizer.ggml.bos_token_id", .string("1")),
                          "metadata 'tokenizer.ggml.bos_token_id' is string, expected an integer")
        try assertRefused(changed(entries, "tokenizer.ggml.eos_token_id", .uint32(500)),
                          "tokenizer.ggml.eos_token_id is 500 ('\(try XCTUnwrap(strings(entries, "tokenizer.ggml.tokens"))[500])'), "
                              + "a token of type normal (1); it must be of type control (3)")
        try assertRefused(changed(entries, "tokenizer.ggml.bos_token_id", .uint32(0)),
                          "tokenizer.ggml.bos_token_id is 0 ('<unk>'), a token of type unknown (2)")
        try assertRefused(changed(entries, "tokenizer.ggml.unknown_token_id", .uint32(1)),
                          "tokenizer.ggml.unknown_token_id is 1, but the token of type unknown (2) is 0")
        // Padding may be any token (SentencePiece reports it only when it is a control piece).
        let padded = try GGUFFile(bytes: ggufBytes(changed(entries, "tokenizer.ggml.padding_token_id", .uint32(0))), path: "v.gguf")
        XCTAssertEqual(try GGUFVocabulary(gguf: padded).padID, 0)
        XCTAssertNoThrow(try Tokenizer(gguf: padded))
    }

    /// Any file that opens gives a model or an error naming it, never a trap: every key of the
    /// vocabulary replaced by values of other types and sizes, and bytes of the fixture flipped.
    func testNothingTraps() throws {
        let entries = try fixtureEntries()
        let odd: [GGUFValue] = [
            .uint8(0), .int64(-1), .uint64(.max), .int64(.max), .float32(.nan), .bool(true), .string(""),
            .array(.string([])), .array(.string(["<unk>"])), .array(.float32([.infinity])), .array(.int32([-1, 2, 3])),
            .array(.uint64([.max])), .array(.array([.int32([1])])), .array(.bool([true])),
        ]
        for (key, _) in entries where key.hasPrefix("tokenizer.") {
            for value in odd {
                let gguf = try GGUFFile(bytes: ggufBytes(changed(entries, key, value)), path: "v.gguf")
                assertModelOrRefusal(gguf)
            }
        }
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture(GGUFTokenizerTests.fixture + ".gguf"))))
        var random = SplitMix64(seed: 7)
        for _ in 0..<300 {
            var copy = bytes
            for _ in 0..<1 + Int(random.next() % 4) {
                copy[Int(random.next() % UInt64(copy.count))] = UInt8(truncatingIfNeeded: random.next())
            }
            guard let gguf = try? GGUFFile(bytes: copy, path: "v.gguf") else { continue }
            assertModelOrRefusal(gguf)
        }
    }

    // MARK: - Helpers

    private func expectedJSON(_ path: String) throws -> JSONValue {
        try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    /// The tokenizer gives sentencepiece's ids and decoded text for every case, and its pieces.
    private func assertMatches(_ tokenizer: Tokenizer, _ expected: JSONValue, label: String,
                               file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(tokenizer.vocabSize, expected["vocab_size"]?.int, label, file: file, line: line)
        XCTAssertEqual(tokenizer.bosID, expected["bos_id"]?.int, label, file: file, line: line)
        XCTAssertEqual(tokenizer.eosID, expected["eos_id"]?.int, label, file: file, line: line)
        let pieces = try XCTUnwrap(expected["pieces"]?.items?.compactMap(\.string))
        XCTAssertEqual(pieces.count, tokenizer.vocabSize, label, file: file, line: line)
        // Compared as bytes: String equality would take "ί" U+1F77 for "ί" U+03AF.
        let mismatched = pieces.indices.filter { tokenizer.piece($0).map { Array($0.utf8) } != Array(pieces[$0].utf8) }
        XCTAssertEqual(mismatched, [], "\(label): pieces differ", file: file, line: line)
        let cases = try XCTUnwrap(expected["cases"]?.items)
        XCTAssertGreaterThanOrEqual(cases.count, 30)
        for item in cases {
            let text = try XCTUnwrap(item["text"]?.string)
            let ids = try XCTUnwrap(item["ids"]?.items?.compactMap(\.int))
            let got = try tokenizer.encode(text, addBOS: false)
            XCTAssertEqual(got, ids, "\(label): \(text.debugDescription)", file: file, line: line)
            XCTAssertEqual(try tokenizer.encode(text), [tokenizer.bosID] + ids, file: file, line: line)
            let decoded = Array(try XCTUnwrap(item["decoded"]?.string).utf8)
            XCTAssertEqual(tokenizer.decode(ids), decoded, "\(label): decode of \(text.debugDescription)", file: file, line: line)
        }
    }

    private func fixtureEntries() throws -> [(String, GGUFValue)] {
        try GGUFFile(path: TestPaths.fixture(GGUFTokenizerTests.fixture + ".gguf")).metadata.map { ($0.key, $0.value) }
    }

    private func model(_ entries: [(String, GGUFValue)]) throws -> [UInt8] {
        try sentencePieceModel(from: GGUFFile(bytes: ggufBytes(entries), path: "v.gguf"))
    }

    /// Both entry points refuse the file with one line that contains `fragment` (or is
    /// exactly it), naming the file.
    private func assertRefused(_ entries: [(String, GGUFValue)], _ fragment: String, exact: Bool = false,
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let gguf = try GGUFFile(bytes: ggufBytes(entries), path: "v.gguf")
        for attempt in [{ _ = try sentencePieceModel(from: gguf) }, { _ = try Tokenizer(gguf: gguf) }] {
            do {
                try attempt()
                XCTFail("no error; expected \(fragment)", file: file, line: line)
            } catch {
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("v.gguf: "), message, file: file, line: line)
                XCTAssertTrue(exact ? message == fragment : message.contains(fragment),
                              "\"\(message)\" does not contain \"\(fragment)\"", file: file, line: line)
                XCTAssertFalse(message.contains("\n"), "not one line: \(message)", file: file, line: line)
            }
        }
    }

    private func assertModelOrRefusal(_ gguf: GGUFFile, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let tokenizer = try Tokenizer(gguf: gguf)
            _ = try? tokenizer.encode("Once upon a time 🙂", addBOS: false)
        } catch {
            // Token texts in messages are as stored; the CLI escapes control characters.
            XCTAssertTrue("\(error)".hasPrefix("v.gguf: "), "\(error)", file: file, line: line)
        }
    }
}

// MARK: - Metadata edits and a GGUF writer for them (metadata only, version 3)

private func index(_ entries: [(String, GGUFValue)], _ key: String) -> Int? {
    entries.firstIndex { $0.0 == key }
}

private func set(_ entries: inout [(String, GGUFValue)], _ key: String, _ value: GGUFValue) {
    if let i = index(entries, key) { entries[i].1 = value } else { entries.append((key, value)) }
}

private func remove(_ entries: inout [(String, GGUFValue)], _ key: String) {
    entries.removeAll { $0.0 == key }
}

private func changed(_ entries: [(String, GGUFValue)], _ key: String, _ value: GGUFValue) -> [(String, GGUFValue)] {
    var copy = entries
    set(&copy, key, value)
    return copy
}

private func strings(_ entries: [(String, GGUFValue)], _ key: String) -> [String]? {
    guard let i = index(entries, key), case .array(.string(let values)) = entries[i].1 else { return nil }
    return values
}

private func floats(_ entries: [(String, GGUFValue)], _ key: String) -> [Float]? {
    guard let i = index(entries, key), case .array(.float32(let values)) = entries[i].1 else { return nil }
    return values
}

private func integers(_ entries: [(String, GGUFValue)], _ key: String) -> [Int]? {
    guard let i = index(entries, key), case .array(let array) = entries[i].1 else { return nil }
    return array.integers
}

private func ggufBytes(_ entries: [(String, GGUFValue)]) -> [UInt8] {
    var out = Array("GGUF".utf8) + le32(3) + le64(0) + le64(UInt64(entries.count))
    for (key, value) in entries {
        out += gstring(key) + le32(value.type.rawValue) + payload(value)
    }
    return out
}

/// A value as stored after its type: arrays as element type, count, then each element.
private func payload(_ value: GGUFValue) -> [UInt8] {
    switch value {
    case .uint8(let v): [v]
    case .int8(let v): [UInt8(bitPattern: v)]
    case .uint16(let v): [UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8)]
    case .int16(let v): payload(.uint16(UInt16(bitPattern: v)))
    case .uint32(let v): le32(v)
    case .int32(let v): le32(UInt32(bitPattern: v))
    case .float32(let v): le32(v.bitPattern)
    case .bool(let v): [v ? 1 : 0]
    case .string(let v): gstring(v)
    case .uint64(let v): le64(v)
    case .int64(let v): le64(UInt64(bitPattern: v))
    case .float64(let v): le64(v.bitPattern)
    case .array(let array):
        le32(array.elementType.rawValue) + le64(UInt64(array.count)) + array.elements.flatMap(payload)
    }
}

private func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
private func le64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
private func gstring(_ text: String) -> [UInt8] { le64(UInt64(text.utf8.count)) + Array(text.utf8) }
