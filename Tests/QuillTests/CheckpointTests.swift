import Foundation
import Quill
import XCTest

final class CheckpointTests: XCTestCase {
    /// With no tokenizer beside a checkpoint, the error says where it looked and says that a
    /// tokenizer file would fix it; how to give one (a flag) is the command line's wording.
    func testMissingTokenizerErrorNamesNoFlag() throws {
        let model = try TestPaths.shared("stories260K.bin")
        XCTAssertThrowsError(try ModelLoader.load(modelPath: model, tokenizerPath: nil, tokenizer: .required)) { error in
            guard let error = error as? ModelLoadError else { return XCTFail("\(error)") }
            XCTAssertTrue(error.wantsTokenizerFile)
            XCTAssertTrue(error.description.contains("stories260K.model or tokenizer.model beside it"), error.description)
            XCTAssertFalse(error.description.contains("-z"), error.description)
        }
    }

    private func loadError(_ path: String) -> String {
        do {
            _ = try Checkpoint(path: path)
            return "loaded"
        } catch {
            return error.description
        }
    }

    func testEachVersionLoadsWithItsConfigAndWeights() throws {
        let folder = try temporaryFolder(self)
        for shared in [true, false] {
            var config = ModelConfig.tinyGQA
            config.sharedClassifier = shared
            let weights = RandomWeights(config: config, seed: 11)
            for format in [CheckpointFormat.version0, .version1, .version2(groupSize: 16)] {
                let path = try weights.write(to: folder, name: "m\(format.version)\(shared).bin", format: format)
                let checkpoint = try Checkpoint(path: path)
                XCTAssertEqual(checkpoint.format, format)
                XCTAssertEqual(checkpoint.config, config)
                let tolerance: Float = format.version == 2 ? 0.1 / 127 : 0  // half a quantization step
                let wk = weights.values(.wk, 1)
                for (a, b) in zip(checkpoint.layers[1].wk.rowValues(3), wk[3 * config.dim..<4 * config.dim]) {
                    XCTAssertEqual(a, b, accuracy: tolerance, "wk row 3 of layer 1, \(format)")
                }
                XCTAssertEqual(checkpoint.finalNorm.array, weights.values(.finalNorm, 0))
                let classifier = shared ? weights.values(.tokenEmbedding, 0) : weights.values(.classifier, 0)
                for (a, b) in zip(checkpoint.classifier.rowValues(5), classifier[5 * config.dim..<6 * config.dim]) {
                    XCTAssertEqual(a, b, accuracy: tolerance, "classifier row 5, \(format)")
                }
            }
        }
    }

    /// llama2.c's export.py writes each tensor's int8 values followed by its scales; Quill writes
    /// (and formats.md describes) all values first. Both files have the same size, and both load.
    func testQ8InterleavedLayoutOfLlama2cLoadsTheSameWeights() throws {
        let folder = try temporaryFolder(self)
        let config = ModelConfig.tinyGQA
        let weights = RandomWeights(config: config, seed: 3)
        let groupSize = 16
        let valuesFirst = try Checkpoint(path: try weights.write(to: folder, name: "a.bin", format: .version2(groupSize: groupSize)))
        var data = try Data(contentsOf: URL(fileURLWithPath: folder.appendingPathComponent("a.bin").path)).prefix(256)
        func floats(_ v: [Float]) -> Data { v.withUnsafeBufferPointer { Data(buffer: $0) } }
        for name in [TensorName.attentionNorm, .ffnNorm] {
            for l in 0..<config.layerCount { data += floats(weights.values(name, l)) }
        }
        data += floats(weights.values(.finalNorm, 0))
        var tensors: [(TensorName, Int)] = [(.tokenEmbedding, 0)]
        for name in [TensorName.wq, .wk, .wv, .wo, .w1, .w2, .w3] { for l in 0..<config.layerCount { tensors.append((name, l)) } }
        tensors.append((.classifier, 0))
        for (name, layer) in tensors {
            let (q, scales) = CheckpointWriter.quantizeQ8(weights.values(name, layer), groupSize: groupSize)
            data += q.withUnsafeBufferPointer { Data(buffer: $0) }
            data += floats(scales)
        }
        let path = folder.appendingPathComponent("interleaved.bin").path
        try data.write(to: URL(fileURLWithPath: path))
        let interleaved = try Checkpoint(path: path)
        XCTAssertEqual(interleaved.byteCount, valuesFirst.byteCount)
        for l in 0..<config.layerCount {
            for row in [0, 7] {
                XCTAssertEqual(interleaved.layers[l].w2.rowValues(row), valuesFirst.layers[l].w2.rowValues(row))
                XCTAssertEqual(interleaved.layers[l].wk.rowValues(row), valuesFirst.layers[l].wk.rowValues(row))
            }
        }
        XCTAssertEqual(interleaved.classifier.rowValues(66), valuesFirst.classifier.rowValues(66))
        XCTAssertEqual(interleaved.tokenEmbedding.rowValues(1), valuesFirst.tokenEmbedding.rowValues(1))
    }

    func testRealLegacyCheckpointHeader() throws {
        let checkpoint = try Checkpoint(path: try TestPaths.shared("stories260K.bin"))
        XCTAssertEqual(checkpoint.format, .version0)
        XCTAssertEqual(checkpoint.config, ModelConfig(dim: 64, hiddenDim: 172, layerCount: 5, headCount: 8, kvHeadCount: 4,
                                                      vocabSize: 512, contextLength: 512, sharedClassifier: true, normEpsilon: 1e-5, ropeTheta: 10000))
    }

    func testTruncatedFileNamesBothSizes() throws {
        let folder = try temporaryFolder(self)
        let path = try RandomWeights(config: .tinyGQA, seed: 1).write(to: folder)
        let full = try Data(contentsOf: URL(fileURLWithPath: path))
        try full.prefix(full.count - 100).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(loadError(path), "\(path): file is \(groupedNumber(full.count - 100)) bytes but its header "
                       + "(dim 48, 2 layers, vocab 67) needs \(groupedNumber(full.count))")
        try full.prefix(10).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(loadError(path), "\(path): file is 10 bytes, too short for a checkpoint header")
    }

    func testWrongMagic() throws {
        let path = try temporaryFolder(self).appendingPathComponent("model.gguf").path
        try Data("GGUF".utf8 + [UInt8](repeating: 0, count: 300)).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(loadError(path), "\(path): unrecognised magic 0x46554747 ('GGUF'): not a llama2.c checkpoint "
                       + "(expected magic 'ak42' or a legacy header starting with dim)")
    }

    func testWrongVersion() throws {
        let folder = try temporaryFolder(self)
        let path = try RandomWeights(config: .tinyGQA, seed: 1).write(to: folder)
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data[4] = 7
        try data.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(loadError(path), "\(path): unsupported checkpoint version 7 (Quill reads versions 0, 1 and 2)")
    }

    func testImpossibleHeaders() throws {
        let folder = try temporaryFolder(self)
        let path = folder.appendingPathComponent("bad.bin").path
        func header(_ fields: [Int32]) throws -> String {
            var data = fields.withUnsafeBufferPointer { Data(buffer: $0) }
            data += Data(count: 64)
            try data.write(to: URL(fileURLWithPath: path))
            return loadError(path)
        }
        XCTAssertEqual(try header([64, 172, 0, 8, 4, 512, 512]), "\(path): header field n_layers must be positive, got 0")
        XCTAssertEqual(try header([64, 172, 5, 7, 7, 512, 512]), "\(path): dim 64 is not divisible by n_heads 7")
        XCTAssertEqual(try header([64, 172, 5, 8, 3, 512, 512]), "\(path): n_heads 8 is not divisible by n_kv_heads 3")
        XCTAssertEqual(try header([60, 172, 5, 4, 4, 512, 512]),
                       "\(path): head size 15 (dim 60 / n_heads 4) must be even for RoPE")
        XCTAssertEqual(try header([64, 172, 5, 8, 4, 512, -1]), "\(path): header field seq_len must be positive, got -1")
        // Sizes whose product overflows 64 bits are an error, not a crash.
        XCTAssertEqual(try header([1 << 20, Int32.max, Int32.max, 1 << 10, 1 << 10, 512, 512]),
                       "\(path): header (dim 1048576, 2147483647 layers, vocab 512) implies an impossible size")
    }

    func testMissingFileAndFolder() throws {
        let folder = try temporaryFolder(self)
        XCTAssertEqual(loadError(folder.path + "/nope.bin"), "\(folder.path)/nope.bin: No such file or directory")
        XCTAssertEqual(loadError(folder.path), "\(folder.path): not a regular file")
    }

    func testQuantizationRoundTripIsWithinHalfAStep() {
        let values: [Float] = [0.5, -1, 0.25, 0, 3, -3, 1.5, 0.1]
        let (q, scales) = CheckpointWriter.quantizeQ8(values, groupSize: 4)
        XCTAssertEqual(scales, [1 / 127, 3 / 127])
        XCTAssertEqual(q[1], -127)
        XCTAssertEqual(q[4], 127)
        for (i, value) in values.enumerated() {
            XCTAssertEqual(Float(q[i]) * scales[i / 4], value, accuracy: scales[i / 4] / 2)
        }
    }
}

/// 1048576 → "1,048,576" (independent of the library's formatter).
func groupedNumber(_ value: Int) -> String {
    let formatter = NumberFormatter()
    formatter.numberStyle = .decimal
    formatter.groupingSeparator = ","
    formatter.usesGroupingSeparator = true
    return formatter.string(from: NSNumber(value: value))!
}
