import Foundation
import Quill
import QuillKernels
import XCTest

/// The GGUF writer read back by Quill's own container reader (the PyPI `gguf` package reads its
/// files in Tests/python/test_gguf_writer.py), and the storage plans against llama.cpp's rules
/// written out by hand.
final class GGUFWriterTests: XCTestCase {
    func testEveryValueTypeAndTensorReadsBack() throws {
        let folder = try temporaryFolder(self)
        let path = folder.appendingPathComponent("every.gguf").path
        let metadata: [GGUFMetadataEntry] = [
            ("general.alignment", GGUFValue.uint32(64)),
            ("u8", .uint8(200)), ("i8", .int8(-5)), ("u16", .uint16(60_000)), ("i16", .int16(-30_000)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)), ("f32", .float32(-1.5)),
            ("yes", .bool(true)), ("no", .bool(false)), ("text", .string("héllo ▁ world")),
            ("u64", .uint64(.max)), ("i64", .int64(.min)), ("f64", .float64(.pi)),
            ("strings", .array(.string(["a", "", "ü"]))), ("floats", .array(.float32([1, -2.5]))),
            ("nested", .array(.array([.int32([1, 2]), .string(["x"]), .array([.bool([true])])]))),
            ("empty", .array(.uint8([]))),
        ].map { GGUFMetadataEntry($0.0, $0.1) }
        let values = (0..<96).map { Float($0) / 7 - 3 }  // 3 rows of 32
        let tensors = [
            GGUFTensorDeclaration(name: "vector", dimensions: [5], type: .f32),
            GGUFTensorDeclaration(name: "matrix", dimensions: [32, 3], type: .q8_0),
        ]
        let vectorBytes = GGMLQuants.quantize(.f32, [1, 2, 3, 4, 5], rowLength: 5)
        let matrixBytes = GGMLQuants.quantize(.q8_0, values, rowLength: 32)
        FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        let writer = try GGUFWriter(handle: handle, path: path, metadata: metadata, tensors: tensors)
        try writer.write(vectorBytes)
        XCTAssertEqual(writer.nextTensor?.name, "matrix")
        try writer.write(Array(matrixBytes[..<50]))  // in two pieces
        try writer.write(Array(matrixBytes[50...]))
        XCTAssertThrowsError(try writer.write([0]))
        try writer.finish()
        try handle.close()

        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.alignment, 64)
        XCTAssertEqual(file.metadata, metadata)
        XCTAssertEqual(file.tensors.map(\.name), ["vector", "matrix"])
        XCTAssertEqual(file.tensors.map(\.dimensions), [[5], [32, 3]])
        XCTAssertEqual(file.tensors.map(\.type), [.f32, .q8_0])
        XCTAssertEqual(file.tensors.map(\.offset), [0, 64])  // the 20 bytes of `vector` padded to 64
        XCTAssertEqual(file.dataOffset % 64, 0)
        XCTAssertEqual(file.file.byteView(at: file.tensors[0].dataOffset, count: 20).bytes(), vectorBytes)
        XCTAssertEqual(file.file.byteView(at: file.tensors[1].dataOffset, count: matrixBytes.count).bytes(), matrixBytes)
    }

    func testAnIncompleteTensorIsAnError() throws {
        let folder = try temporaryFolder(self)
        let path = folder.appendingPathComponent("short.gguf").path
        FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        defer { try? handle.close() }
        let writer = try GGUFWriter(handle: handle, path: path, metadata: [],
                                    tensors: [GGUFTensorDeclaration(name: "t", dimensions: [4], type: .f32)])
        try writer.write([0, 0, 0, 0])
        XCTAssertThrowsError(try writer.finish()) { error in
            XCTAssertTrue("\(error)".contains("has 4 of its 16 bytes"), "\(error)")
        }
        XCTAssertThrowsError(try GGUFWriter(handle: handle, path: path, metadata: [],
                                            tensors: [GGUFTensorDeclaration(name: "odd", dimensions: [33], type: .q8_0)]))
    }

    func testQ4KMFollowsLlamaCppForTinyLlama() throws {
        let config = try XCTUnwrap(Benchmark.shape(named: "tinyllama"))
        let plan = GGUFFileType.q4_K_M.plan(for: config)
        // llama.cpp's use_more_bits for 22 layers: i < 2, i >= 19, or (i - 2) % 3 == 2.
        let moreBits: Set<Int> = [0, 1, 4, 7, 10, 13, 16, 19, 20, 21]
        XCTAssertEqual(plan.type(of: .classifier, layer: 0), .q6_K)
        XCTAssertEqual(plan.type(of: .tokenEmbedding, layer: 0), .q4_K)
        XCTAssertEqual(plan.type(of: .finalNorm, layer: 0), .f32)
        for layer in 0..<22 {
            let more = moreBits.contains(layer)
            XCTAssertEqual(plan.type(of: .wv, layer: layer), more ? .q6_K : .q4_K, "layer \(layer)")
            XCTAssertEqual(plan.type(of: .w2, layer: layer), more ? .q6_K : .q4_K, "layer \(layer)")
            for name in [TensorName.wq, .wk, .wo, .w1, .w3] { XCTAssertEqual(plan.type(of: name, layer: layer), .q4_K) }
            XCTAssertEqual(plan.type(of: .attentionNorm, layer: layer), .f32)
        }
        XCTAssertTrue(plan.fallbacks.isEmpty)
        XCTAssertEqual(GGUFFileType.q4_K_M.llamaFileType, 15)
    }

    func testRowsThatAreNotWholeBlocksFallBackAsLlamaQuantizeDoes() throws {
        // 15m: dim 288 is not a multiple of 256; its tied embedding is the output matrix.
        let config = try XCTUnwrap(Benchmark.shape(named: "15m"))
        let plan = GGUFFileType.q4_K_M.plan(for: config)
        XCTAssertEqual(plan.type(of: .tokenEmbedding, layer: 0), .q8_0)  // output rule: Q8_0
        XCTAssertEqual(plan.type(of: .wq, layer: 0), .q5_0)              // Q4_K → Q5_0
        XCTAssertEqual(plan.type(of: .wv, layer: 2), .q8_0)              // Q6_K → Q8_0
        XCTAssertEqual(plan.type(of: .w2, layer: 2), .q6_K)              // rows of 768 = 3 blocks
        XCTAssertEqual(plan.type(of: .w2, layer: 1), .q4_K)
        XCTAssertEqual(GGUFFileType.storedType(.q4_0, rowLength: 172), .f16)
        XCTAssertEqual(GGUFFileType.storedType(.q6_K, rowLength: 100), .f16)
        XCTAssertEqual(GGUFFileType.storedType(.q8_0, rowLength: 64), .q8_0)
    }
}
