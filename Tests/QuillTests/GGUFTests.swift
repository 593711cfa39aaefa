import Foundation
import Quill
import QuillKernels
import XCTest

/// The GGUF container reader against files written by llama.cpp's own Python writer (gguf-py's
/// GGUFWriter) and what gguf-py's GGUFReader reads from them (Fixtures/gguf/expected.json, both
/// made by scripts/make_gguf_fixtures.py), then each validation error on altered copies.
final class GGUFTests: XCTestCase {
    static let fixtureNames = ["every-value-type.gguf", "aligned-64.gguf", "metadata-only.gguf", "version-2.gguf"]

    private func expected() throws -> JSONValue {
        let data = try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("gguf/expected.json")))
        return try JSONParser.parse(Array(data))
    }

    private func fixtureBytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("gguf/" + name))))
    }

    // MARK: - Against gguf-py

    func testFixturesReadAsGGUFPyReadsThem() throws {
        let expected = try expected()
        for name in GGUFTests.fixtureNames {
            let truth = try XCTUnwrap(expected[name], name)
            let gguf = try GGUFFile(path: TestPaths.fixture("gguf/" + name))
            XCTAssertEqual(gguf.version, truth["version"]?.int, name)
            XCTAssertEqual(gguf.alignment, truth["alignment"]?.int, name)
            XCTAssertEqual(gguf.dataOffset, truth["data_offset"]?.int, name)
            XCTAssertEqual(gguf.byteCount, truth["byte_count"]?.int, name)

            let entries = try XCTUnwrap(truth["metadata"]?.items, name)
            XCTAssertEqual(gguf.metadata.map(\.key), entries.compactMap { $0["key"]?.string }, name)
            for (entry, want) in zip(gguf.metadata, entries) {
                XCTAssertEqual(entry.value.typeName, want["type"]?.string, "\(name) \(entry.key)")
                let wantValue = try XCTUnwrap(want["value"])
                XCTAssertTrue(matches(entry.value, wantValue), "\(name) \(entry.key): \(entry.value) vs \(wantValue.encoded)")
                XCTAssertEqual(gguf.value(entry.key), entry.value)
            }

            let tensors = try XCTUnwrap(truth["tensors"]?.items, name)
            XCTAssertEqual(gguf.tensors.map(\.name), tensors.compactMap { $0["name"]?.string }, name)
            for (tensor, want) in zip(gguf.tensors, tensors) {
                let label = "\(name) \(tensor.name)"
                XCTAssertEqual(tensor.dimensions, want["dimensions"]?.items?.compactMap(\.int), label)
                XCTAssertEqual(tensor.type.name, want["type"]?.string, label)
                XCTAssertEqual(Int(tensor.type.id), want["type_id"]?.int, label)
                XCTAssertEqual(tensor.offset, want["offset"]?.int, label)
                XCTAssertEqual(tensor.dataOffset, want["data_offset"]?.int, label)
                XCTAssertEqual(tensor.byteCount, want["byte_count"]?.int, label)
                XCTAssertEqual(tensor.elementCount, want["element_count"]?.int, label)
                XCTAssertEqual(gguf.tensorIfPresent(tensor.name), tensor, label)
                let bytes = gguf.file.bytes(at: tensor.dataOffset, count: tensor.byteCount)
                XCTAssertEqual(String(fnv1a64(bytes)), want["fnv1a64"]?.string, label)
                if let values = want["values"]?.items {
                    let read: [Float]
                    switch tensor.type {
                    case .f32: read = gguf.file.floats(at: tensor.dataOffset, count: tensor.elementCount).array
                    case .f16:
                        read = (0..<tensor.elementCount).map { i in
                            Float(Float16(bitPattern: UInt16(bytes[2 * i]) | UInt16(bytes[2 * i + 1]) << 8))
                        }
                    default: XCTFail("values given for \(label) of type \(tensor.type)"); continue
                    }
                    XCTAssertEqual(read, values.compactMap(\.double).map(Float.init), label)
                }
            }
        }
    }

    func testTypeTableMatchesGGUFPy() throws {
        let types = try XCTUnwrap(try expected()["ggml_types"]?.members)
        XCTAssertGreaterThan(types.count, 30)
        for (name, layout) in types {
            let numbers = try XCTUnwrap(layout.items?.compactMap(\.int))
            let type = GGUFTensorType(id: UInt32(numbers[0]))
            XCTAssertEqual(type.name, name)
            XCTAssertEqual(type.blockSize, numbers[1], name)
            XCTAssertEqual(type.bytesPerBlock, numbers[2], name)
        }
        XCTAssertEqual(GGUFTensorType(id: 4).name, "type 4")
        XCTAssertFalse(GGUFTensorType(id: 999).isKnown)
        // The container's table and the kernels agree on which types are read and how they are laid out.
        XCTAssertEqual(Set(GGUFTensorType.readByQuill.compactMap(\.decoded)), Set(GGMLType.allCases))
        for type in GGMLType.allCases {
            let entry = GGUFTensorType(id: UInt32(type.rawValue))
            XCTAssertEqual([entry.name, "\(entry.blockSize!)", "\(entry.bytesPerBlock!)"],
                           [type.name, "\(type.blockSize)", "\(type.bytesPerBlock)"])
        }
        XCTAssertEqual(GGUFTensorType.readByQuill.map(\.name), ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q5_K", "Q6_K"])
    }

    // MARK: - Typed accessors

    func testTypedAccessors() throws {
        let gguf = try GGUFFile(path: TestPaths.fixture("gguf/every-value-type.gguf"))
        XCTAssertEqual(try gguf.uint32("test.uint32"), 4_000_000_000)
        XCTAssertEqual(try gguf.int32("test.int32"), -2_000_000_000)
        XCTAssertEqual(try gguf.uint64("test.uint64"), .max)
        XCTAssertEqual(try gguf.float32("llama.rope.freq_base"), 10000)
        XCTAssertEqual(try gguf.float64("test.float64"), 0.1)
        XCTAssertEqual(try gguf.bool("test.bool_true"), true)
        XCTAssertEqual(try gguf.string("tokenizer.ggml.model"), "llama")
        XCTAssertEqual(try gguf.string("test.string_empty"), "")
        XCTAssertEqual(try gguf.integer("test.uint16"), 60000)
        XCTAssertEqual(try gguf.integer("test.int64"), Int.min)
        XCTAssertEqual(try gguf.stringArray("tokenizer.ggml.tokens"), ["<unk>", "<s>", "</s>", "▁a"])
        XCTAssertEqual(try gguf.float32Array("tokenizer.ggml.scores"), [0, 0, 0, -1.5])
        XCTAssertEqual(try gguf.int32Array("tokenizer.ggml.token_type"), [2, 3, 3, 1])
        XCTAssertEqual(try gguf.integerArray("test.array.uint16"), [0, 65535])
        XCTAssertNil(try gguf.uint32IfPresent("llama.block_count"))
        XCTAssertNil(try gguf.stringArrayIfPresent("tokenizer.ggml.merges"))
        XCTAssertTrue(gguf.contains("test.int8"))

        let path = TestPaths.fixture("gguf/every-value-type.gguf")
        assertMessage(try gguf.uint32("test.int32"), "\(path): metadata 'test.int32' is int32, expected uint32")
        assertMessage(try gguf.uint32IfPresent("test.string"), "metadata 'test.string' is string, expected uint32")
        assertMessage(try gguf.stringArray("tokenizer.ggml.scores"),
                      "metadata 'tokenizer.ggml.scores' is array of float32, expected array of string")
        assertMessage(try gguf.float32Array("test.array.nested_int32"),
                      "metadata 'test.array.nested_int32' is array of array of int32, expected array of float32")
        assertMessage(try gguf.integer("test.uint64"), "metadata 'test.uint64' is uint64, expected an integer that fits")
        assertMessage(try gguf.uint32("llama.block_count"), "\(path): metadata 'llama.block_count' is missing")
        assertMessage(try gguf.tensor("output.weight"), "tensor 'output.weight' is missing")
        XCTAssertEqual(try gguf.tensor("token_embd.weight").dimensions, [8, 5])
        XCTAssertNoThrow(try gguf.requireReadable(gguf.tensor("blk.0.attn_q.weight")))
    }

    func testNestedArraysKeepTheirShape() throws {
        let gguf = try GGUFFile(path: TestPaths.fixture("gguf/every-value-type.gguf"))
        XCTAssertEqual(gguf.value("test.array.nested_int32"), .array(.array([.int32([1, 2, 3]), .int32([4]), .int32([5, 6])])))
        XCTAssertEqual(gguf.value("test.array.nested_string"), .array(.array([.string(["x", "y"]), .string(["z"])])))
    }

    func testMissingFileIsAnError() {
        assertMessage(try GGUFFile(path: "/nonexistent/model.gguf"), "/nonexistent/model.gguf: No such file")
    }

    // MARK: - Validation, on altered fixtures

    func testHeaderErrors() throws {
        let file = try fixtureBytes("version-2.gguf")
        assertRefused(Array(file.prefix(20)), "file is 20 bytes, too short for a GGUF header (24 bytes)")
        assertRefused(patched(file, at: 0, [0x7F, 0x45, 0x4C, 0x46]),
                      "not a GGUF file (it starts with 0x7f 0x45 0x4c 0x46, not \"GGUF\")")
        assertRefused(patched(file, at: 4, le32(1)), "GGUF version 1 is not supported (Quill reads versions 2 and 3)")
        assertRefused(patched(file, at: 4, le32(4)), "unknown GGUF version 4")
        assertRefused(patched(file, at: 4, [0, 0, 0, 3]), "a big-endian GGUF file, which Quill does not read")
        assertRefused(patched(file, at: 8, le64(UInt64.max)), "the tensor count in the header, 18446744073709551615, is more than the 168 bytes after it can hold")
        assertRefused(patched(file, at: 16, le64(1 << 40)), "the metadata count in the header, 1099511627776, is more than")
        // One entry more than the file has: the reader runs into the tensor infos and fails there.
        XCTAssertThrowsError(try GGUFFile(bytes: patched(file, at: 16, le64(3)), path: "x.gguf"))
    }

    func testMetadataErrors() throws {
        let file = try fixtureBytes("every-value-type.gguf")
        let uint8Key = try keyPosition("test.uint8", in: file)
        assertRefused(patched(file, at: uint8Key - 8, le64(1 << 62)), "the length of the key of metadata entry 1 is 4611686018427387904, more than the")
        assertRefused(patched(file, at: uint8Key - 8, le64(0)), "metadata entry 1 has an empty key")
        assertRefused(patched(file, at: uint8Key, [0xFF]), "the key of metadata entry 1 is not valid UTF-8")
        assertRefused(patched(file, at: uint8Key + 10, le32(13)), "metadata 'test.uint8' has unknown value type 13")
        assertRefused(patched(file, at: try keyPosition("test.int16", in: file), Array("test.uint8".utf8)),
                      "metadata key 'test.uint8' appears twice")
        let boolKey = try keyPosition("test.bool_true", in: file)
        assertRefused(patched(file, at: boolKey + 14 + 4, [2]), "metadata 'test.bool_true' has bool value 2 (must be 0 or 1)")
        let stringKey = try keyPosition("test.string", in: file)
        assertRefused(patched(file, at: stringKey + 11 + 4, le64(1 << 50)), "the length of the value of 'test.string' is 1125899906842624, more than the")
        assertRefused(patched(file, at: stringKey + 11 + 12 + 8, [0xC3, 0x28]), "the value of 'test.string' is not valid UTF-8")

        let arrayKey = try keyPosition("test.array.uint8", in: file) + 16  // at the value type (array)
        assertRefused(patched(file, at: arrayKey + 4, le32(13)), "metadata 'test.array.uint8' is an array of unknown value type 13")
        assertRefused(patched(file, at: arrayKey + 8, le64(1 << 40)), "the length of 'test.array.uint8' is 1099511627776, more than the")
        let boolArray = try keyPosition("test.array.bool", in: file) + 15
        assertRefused(patched(file, at: boolArray + 16 + 1, [7]), "metadata 'test.array.bool' has bool value 7")
        let strings = try keyPosition("test.array.string", in: file) + 17
        assertRefused(patched(file, at: strings + 16, le64(1 << 44)), "the length of element 0 of 'test.array.string' is 17592186044416")
    }

    func testAlignmentErrors() throws {
        let file = try fixtureBytes("aligned-64.gguf")
        let value = try keyPosition("general.alignment", in: file) + 17  // at the value type
        XCTAssertEqual(Array(file[value..<value + 8]), le32(4) + le32(64))
        assertRefused(patched(file, at: value + 4, le32(48)), "general.alignment is 48; it must be a power of two")
        assertRefused(patched(file, at: value + 4, le32(0)), "general.alignment is 0; it must be a power of two")
        assertRefused(patched(file, at: value, le32(5)), "general.alignment is int32, expected uint32")
        // Alignment 32: the offsets 64 and 128 stay multiples, but the data section moves.
        XCTAssertThrowsError(try GGUFFile(bytes: patched(file, at: value + 4, le32(128)), path: "x.gguf"))
    }

    func testTensorInfoErrors() throws {
        let file = try fixtureBytes("version-2.gguf")
        // Tensor "w": name (length 1, "w"), dimension count, dimensions [4, 2], type, offset.
        let info = try position(of: [1, 0, 0, 0, 0, 0, 0, 0] + Array("w".utf8), in: file) + 9
        let (dims, type, offset) = (info + 4, info + 20, info + 24)
        XCTAssertEqual(Array(file[info..<info + 32]), le32(2) + le64(4) + le64(2) + le32(0) + le64(0))
        assertRefused(patched(file, at: info, le32(0)), "tensor 'w' has 0 dimensions (GGUF allows 1 to 4)")
        assertRefused(patched(file, at: info, le32(5)), "tensor 'w' has 5 dimensions")
        assertRefused(patched(file, at: dims + 8, le64(0)), "dimension 1 of tensor 'w' is 0")
        assertRefused(patched(file, at: dims, le64(1 << 63)), "dimension 0 of tensor 'w' is 9223372036854775808, too large")
        assertRefused(patched(file, at: dims, le64(1 << 62)), "tensor 'w' has too many elements")
        assertRefused(patched(file, at: type, le32(99)), "tensor 'w' has unknown ggml type 99")
        assertRefused(patched(file, at: type, le32(8)), "tensor 'w' has rows of 4 values, not a multiple of Q8_0's block of 32")
        assertRefused(patched(file, at: offset, le64(8)), "tensor 'w' has offset 8, not a multiple of the alignment 32")
        assertRefused(patched(file, at: offset, le64(32)), "tensor 'w' (32 bytes at offset 32 of the data section, which starts at byte 160) runs past the end of the file (192 bytes)")
        assertRefused(patched(file, at: offset, le64(UInt64.max - 31)), "runs past the end of the file")
        assertRefused(patched(file, at: dims + 8, le64(3)), "tensor 'w' (48 bytes at offset 0")
        assertRefused(patched(file, at: info - 9, le64(65)), "the name of tensor 0 is 65 bytes long (at most 64)")
        assertRefused(patched(file, at: info - 9, le64(0)), "tensor 0 has an empty name")
        assertRefused(Array(file.prefix(file.count - 1)), "runs past the end of the file (191 bytes)")

        let many = try fixtureBytes("every-value-type.gguf")
        assertRefused(patched(many, at: try keyPosition("test.4d", in: many), Array("test.3d".utf8)),
                      "tensor name 'test.3d' appears twice")
    }

    func testOverlappingTensorsAreRefused() throws {
        let file = try fixtureBytes("aligned-64.gguf")
        // Tensor "b" (offset 64) moved onto "a" (12 bytes at 0).
        let b = try position(of: [1, 0, 0, 0, 0, 0, 0, 0] + Array("b".utf8), in: file) + 9
        let offset = b + 4 + 8 + 4
        XCTAssertEqual(Array(file[offset..<offset + 8]), le64(64))
        assertRefused(patched(file, at: offset, le64(0)), "tensors 'a' and 'b' overlap (bytes 0..<12 and 0..<10 of the data section)")
        assertRefused(patched(file, at: offset, le64(128)), "tensors 'b' and 'c' overlap (bytes 128..<138 and 128..<162")
    }

    // MARK: - Hand-built files (what the writer cannot write)

    func testHandBuiltFiles() throws {
        func nested(_ depth: Int) -> [UInt8] {  // `depth` arrays around one uint8
            depth == 0 ? [7] : le32(depth == 1 ? 0 : 9) + le64(1) + nested(depth - 1)
        }
        func file(_ entries: [(String, [UInt8])], tensors: [[UInt8]] = [], data: Int = 0) -> [UInt8] {
            var bytes = Array("GGUF".utf8) + le32(3) + le64(UInt64(tensors.count)) + le64(UInt64(entries.count))
            for (key, typedValue) in entries { bytes += gstring(key) + typedValue }
            for info in tensors { bytes += info }
            bytes += [UInt8](repeating: 0, count: (32 - bytes.count % 32) % 32 + data)
            return bytes
        }
        let deepest = try GGUFFile(bytes: file([("a", le32(9) + nested(8))]), path: "x.gguf")
        XCTAssertEqual(deepest.value("a")?.typeName, "array of array of array of array of array of array of array of array of uint8")
        assertRefused(file([("a", le32(9) + nested(9))]), "metadata 'a' nests arrays more than 8 deep")

        let empty = try GGUFFile(bytes: file([("e", le32(9) + le32(8) + le64(0)), ("n", le32(9) + le32(9) + le64(0))]), path: "x.gguf")
        XCTAssertEqual(try empty.stringArray("e"), [])
        XCTAssertEqual(empty.value("n")?.typeName, "array of array")
        XCTAssertEqual(try GGUFFile(bytes: file([]), path: "x.gguf").metadata, [])

        // An IQ2_XS tensor opens (its size is known) and is refused by name when used.
        let iq = gstring("q") + le32(1) + le64(256) + le32(17) + le64(0)
        let gguf = try GGUFFile(bytes: file([], tensors: [iq], data: 74), path: "x.gguf")
        XCTAssertEqual(gguf.tensors.first?.byteCount, 74)
        assertMessage(try gguf.requireReadable(gguf.tensor("q")),
                      "x.gguf: tensor 'q' is IQ2_XS; Quill does not read this type (it reads F32, F16, BF16, Q8_0")
        assertRefused(file([], tensors: [iq], data: 73), "tensor 'q' (74 bytes")
        assertRefused(file([(String(repeating: "k", count: 70_000), le32(0) + [1])]),
                      "the key of metadata entry 0 is 70,000 bytes long (at most 65,535)")
        let long = String(repeating: "k", count: 200)
        assertRefused(file([(long, le32(0) + [1]), (long, le32(0) + [1])]),
                      "metadata key '\(String(repeating: "k", count: 80))…' appears twice")
    }

    // MARK: - No input traps

    /// Every prefix of every fixture, and each fixture with any one byte flipped, either opens
    /// or throws; a prefix shorter than the end of the last tensor always throws.
    func testTruncatedAndCorruptedFixturesNeverTrap() throws {
        for name in GGUFTests.fixtureNames {
            let bytes = try fixtureBytes(name)
            let gguf = try GGUFFile(bytes: bytes, path: name)
            let dataEnd = gguf.tensors.map { $0.dataOffset + $0.byteCount }.max() ?? 0
            for length in 0..<bytes.count {
                do {
                    let prefix = try GGUFFile(bytes: Array(bytes.prefix(length)), path: name)
                    XCTAssertGreaterThanOrEqual(length, dataEnd, "\(name) cut to \(length) bytes opened")
                    XCTAssertEqual(prefix.tensors, gguf.tensors)
                } catch {}
            }
            for index in bytes.indices {
                var corrupt = bytes
                corrupt[index] ^= 0xFF
                _ = try? GGUFFile(bytes: corrupt, path: name)
            }
        }
    }

    // MARK: - Helpers

    private func assertRefused(_ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        assertMessage(try GGUFFile(bytes: bytes, path: "bad.gguf"), "bad.gguf: ", file: file, line: line)
        assertMessage(try GGUFFile(bytes: bytes, path: "bad.gguf"), fragment, file: file, line: line)
    }
}

/// `expression` throws an error whose one-line description contains `fragment`.
private func assertMessage<T>(_ expression: @autoclosure () throws -> T, _ fragment: String,
                              file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try expression()
        XCTFail("no error; expected one containing \(fragment)", file: file, line: line)
    } catch {
        let message = "\(error)"
        XCTAssertTrue(message.contains(fragment), "\"\(message)\" does not contain \"\(fragment)\"", file: file, line: line)
        XCTAssertFalse(message.contains("\n"), "not one line: \(message)", file: file, line: line)
    }
}

private func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
private func le64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
private func gstring(_ text: String) -> [UInt8] { le64(UInt64(text.utf8.count)) + Array(text.utf8) }

private func patched(_ bytes: [UInt8], at offset: Int, _ replacement: [UInt8]) -> [UInt8] {
    var copy = bytes
    copy.replaceSubrange(offset..<offset + replacement.count, with: replacement)
    return copy
}

/// Where `needle` first occurs in `bytes` (which must contain it exactly once).
private func position(of needle: [UInt8], in bytes: [UInt8]) throws -> Int {
    let starts = bytes.indices.filter { bytes[$0...].starts(with: needle) }
    guard starts.count == 1 else { throw XCTSkip("pattern found \(starts.count) times, expected once") }
    return starts[0]
}

/// Where the bytes of metadata key or tensor name `text` start (found with its length before it).
private func keyPosition(_ text: String, in bytes: [UInt8]) throws -> Int {
    try position(of: gstring(text), in: bytes) + 8
}

private func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
    bytes.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
}

/// Compares a GGUF value with its JSON description from gguf-py (64-bit integers as strings).
private func matches(_ value: GGUFValue, _ json: JSONValue) -> Bool {
    switch (value, json) {
    case (.uint64(let v), .string(let s)): return String(v) == s
    case (.int64(let v), .string(let s)): return String(v) == s
    case (.float32(let v), .number(let s)): return Double(s).map(Float.init) == v
    case (.float64(let v), .number(let s)): return Double(s) == v
    case (.bool(let v), .bool(let b)): return v == b
    case (.string(let v), .string(let s)): return v == s
    case (.array(let array), .array(let items)):
        let elements = array.elements
        return elements.count == items.count && zip(elements, items).allSatisfy(matches)
    case (_, .number(let s)): return value.integer != nil && Int(s) == value.integer
    default: return false
    }
}

extension GGUFArray {
    /// Each element as a value (inner arrays as array values).
    var elements: [GGUFValue] {
        switch self {
        case .uint8(let a): a.map(GGUFValue.uint8)
        case .int8(let a): a.map(GGUFValue.int8)
        case .uint16(let a): a.map(GGUFValue.uint16)
        case .int16(let a): a.map(GGUFValue.int16)
        case .uint32(let a): a.map(GGUFValue.uint32)
        case .int32(let a): a.map(GGUFValue.int32)
        case .float32(let a): a.map(GGUFValue.float32)
        case .bool(let a): a.map(GGUFValue.bool)
        case .string(let a): a.map(GGUFValue.string)
        case .uint64(let a): a.map(GGUFValue.uint64)
        case .int64(let a): a.map(GGUFValue.int64)
        case .float64(let a): a.map(GGUFValue.float64)
        case .array(let a): a.map(GGUFValue.array)
        }
    }
}

extension JSONValue {
    subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members.first { $0.key == key }?.value }
        return nil
    }
    var members: [(key: String, value: JSONValue)]? { if case .object(let m) = self { m } else { nil } }
    var items: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    var string: String? { if case .string(let s) = self { s } else { nil } }
    var int: Int? { if case .number(let s) = self { Int(s) } else { nil } }
    var double: Double? { if case .number(let s) = self { Double(s) } else { nil } }
}
