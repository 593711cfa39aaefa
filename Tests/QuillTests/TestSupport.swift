import Foundation
import Quill
import XCTest

/// Paths the tests use: the repository root and the shared fixtures beside it.
enum TestPaths {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let sharedModels = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/models")

    /// A file from ../shared/models, or a skip (with the reason shown) when ../shared is absent.
    static func shared(_ name: String) throws -> String {
        let path = sharedModels.appendingPathComponent(name).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("../shared/models/\(name) not found: skipping the test that needs it")
        }
        return path
    }

    static func fixture(_ name: String) -> String {
        repositoryRoot.appendingPathComponent("Tests/QuillTests/Fixtures/\(name)").path
    }
}

/// A temporary folder removed when the test ends.
func temporaryFolder(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("quill-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Deterministic pseudo-random weights for a config: every tensor gets its own stream, norms
/// stay near 1 so activations stay in a realistic range.
struct RandomWeights {
    let config: ModelConfig
    let seed: UInt64

    func values(_ name: TensorName, _ layer: Int) -> [Float] {
        let c = config
        let (rows, cols) = c.shape(of: name)
        let count = name == .ropeTables ? 0 : rows * cols
        var state = (seed &+ UInt64(layer) &* 7919 &+ UInt64(TensorName.allCases.firstIndex(of: name)!) &* 104_729)
            &* 0x9E37_79B9_7F4A_7C15 | 1
        let isNorm = [.attentionNorm, .ffnNorm, .finalNorm].contains(name)
        return (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            let u = Float(state >> 40) / Float(1 << 24)  // [0, 1)
            return isNorm ? 0.8 + 0.4 * u : (u - 0.5) * 0.2
        }
    }

    /// Writes the checkpoint and returns its path.
    func write(to folder: URL, name: String = "model.bin", format: CheckpointFormat = .version1) throws -> String {
        let path = folder.appendingPathComponent(name).path
        try CheckpointWriter.write(config: config, format: format, to: path) { values($0, $1) }
        return path
    }
}

extension ModelConfig {
    /// A small grouped-query model with a separate classifier.
    static let tinyGQA = ModelConfig(dim: 48, hiddenDim: 80, layerCount: 2, headCount: 6, kvHeadCount: 2,
                                     vocabSize: 67, contextLength: 40, sharedClassifier: false, normEpsilon: 1e-5, ropeTheta: 10000)
}

func assertClose(_ a: [Float], _ b: [Float], tolerance: Float, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "sizes differ \(message)", file: file, line: line)
    var worst: Float = 0
    for (x, y) in zip(a, b) { worst = max(worst, abs(x - y)) }
    XCTAssertLessThanOrEqual(worst, tolerance, "max difference \(worst) \(message)", file: file, line: line)
}
