import Foundation
import Quill
import QuillKernels
import XCTest

/// The GGUF writer carries every architecture the GGUF reader reads: a model written and read
/// back is the same model (configuration, every tensor's values, logits); what no llama.cpp
/// architecture describes is refused in one line. That the keys and tensor names are llama.cpp's
/// is checked with the PyPI `gguf` package in Tests/python/test_gguf_writer_architectures.py.
final class GGUFWriterArchitectureTests: XCTestCase {
    /// A small model of each architecture, with every optional piece the reader knows.
    static func configs() -> [(String, ModelConfig)] {
        func config(_ a: Architecture, pairing: RoPEPairing = .halves, headSize: Int? = nil, shared: Bool = false,
                    factors: [Float]? = nil, scaling: RoPEScaling = .none, theta: Double = 5000) -> ModelConfig {
            ModelConfig(dim: 32, hiddenDim: 64, layerCount: 3, headCount: 4, kvHeadCount: 2, vocabSize: 40, contextLength: 24,
                        sharedClassifier: shared, normEpsilon: 1e-5, ropeTheta: theta, ropeScaling: scaling,
                        ropeFrequencyFactors: factors, ropePairing: pairing, headSize: headSize, architecture: a)
        }
        var mistral = Architecture()
        mistral.windows = [6, 6, 6]
        var qwen2 = Architecture()
        qwen2.biases = [.query, .key, .value]
        var phi3 = Architecture()
        (phi3.fusedQKV, phi3.fusedGateUp) = (true, true)
        var gemma = Architecture()
        gemma.feedForward = .geglu
        gemma.embeddingScale = Float(32).squareRoot()
        var gemma2 = gemma
        gemma2.normPlacement = .preAndPost
        (gemma2.attentionSoftcap, gemma2.finalSoftcap) = (20, 15)
        gemma2.windows = [5, nil, 5]
        gemma2.attentionScale = 1 / Float(16).squareRoot()
        var gpt2 = Architecture()
        (gpt2.norm, gpt2.feedForward, gpt2.positions, gpt2.fusedQKV) = (.layer, .gelu, .learned, true)
        gpt2.biases = Set(Architecture.Bias.allCases)
        return [
            ("llama", config(.llama, pairing: .adjacent)),
            ("llama", config(.llama, pairing: .adjacent, factors: (0..<4).map { 1 + Float($0) }, scaling: .linear(factor: 2))),
            ("llama", config(mistral, pairing: .adjacent, headSize: 12)),
            ("qwen2", config(qwen2, shared: true)),
            ("phi3", config(phi3)),
            ("gemma", config(gemma, headSize: 16, shared: true)),
            ("gemma2", config(gemma2, headSize: 16, shared: true)),
            // GPT-2 files have no RoPE keys: the reader's default base is what a GPT-2 model carries.
            ("gpt2", config(gpt2, shared: true, theta: 10000)),
        ]
    }

    /// Random weights of `c`, every vector its architecture has included (norm gains near 1).
    static func randomWeights(_ c: ModelConfig, seed: UInt64) throws -> ModelWeights {
        var generator = SeededGenerator(seed: seed)
        func view(_ n: Int, scale: Float, offset: Float = 0) -> FloatView {
            FloatView(FloatBuffer((0..<n).map { _ in (Float(generator.nextUnit()) - 0.5) * 2 * scale + offset }))
        }
        func matrix(_ rows: Int, _ cols: Int) -> WeightMatrix {
            WeightMatrix(rows: rows, cols: cols, storage: .float32(view(rows * cols, scale: 1 / Float(cols).squareRoot())))
        }
        func matrix(_ name: TensorName) -> WeightMatrix { matrix(c.shape(of: name).rows, c.shape(of: name).cols) }
        let a = c.architecture
        let layers = try (0..<c.layerCount).map { _ -> LayerWeights in
            var e = LayerExtras()
            if a.norm == .layer { (e.attentionNormBias, e.ffnNormBias) = (view(c.dim, scale: 0.2), view(c.dim, scale: 0.2)) }
            if a.postNorms { (e.postAttentionNorm, e.postFFNNorm) = (view(c.dim, scale: 0.3, offset: 1), view(c.dim, scale: 0.3, offset: 1)) }
            for bias in a.biases { e[bias] = view(c.biasWidth(bias), scale: 0.2) }
            return try XCTUnwrap(LayerWeights(attentionNorm: view(c.dim, scale: 0.3, offset: 1), wq: matrix(.wq), wk: matrix(.wk),
                                              wv: matrix(.wv), wo: matrix(.wo), ffnNorm: view(c.dim, scale: 0.3, offset: 1),
                                              w1: matrix(.w1), w2: matrix(.w2), w3: matrix(.w3), extras: e))
        }
        let embedding = matrix(.tokenEmbedding)
        return try ModelWeights(config: c, tokenEmbedding: embedding, layers: layers, finalNorm: view(c.dim, scale: 0.3, offset: 1),
                                classifier: c.sharedClassifier ? embedding : matrix(.classifier),
                                finalNormBias: a.norm == .layer ? view(c.dim, scale: 0.2) : nil,
                                positionEmbedding: a.positions == .learned ? matrix(c.contextLength, c.dim) : nil, source: "random")
    }

    /// Every position's logits, the prompt fed in blocks of `blockSize`.
    func logits(_ w: ModelWeights, _ tokens: [Int], blockSize: Int) throws -> [[Float]] {
        let transformer = try Transformer(weights: w, maxRows: blockSize, threads: 1, maxLogitRows: blockSize)
        var rows: [[Float]] = []
        transformer.prefill(tokens, startPosition: 0, cache: try transformer.makeCache()) { _, logits, offset in
            rows.append(logits.array(offset: offset, length: w.config.vocabSize))
        }
        return rows
    }

    /// Writes `weights` as GGUF of `type` and reads the file back.
    func roundTrip(_ weights: ModelWeights, _ type: GGUFFileType, in folder: URL) throws -> (ModelWeights, GGUFFile) {
        let path = folder.appendingPathComponent("\(UUID().uuidString).gguf").path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        try Quantizer.writeGGUF(weights, job: Quantizer.ggufJob(weights, fileType: type), tokenizer: [], name: "round trip", to: path)
        let file = try GGUFFile(path: path)
        return (try GGUFModel.weights(from: file), file)
    }

    func testEveryArchitectureReadsBackAsWritten() throws {
        let folder = try temporaryFolder(self)
        let tokens = (0..<20).map { ($0 * 7 + 2) % 40 }  // past every window
        for (index, (name, config)) in Self.configs().enumerated() {
            XCTAssertEqual(try GGUFModelWriter.requireWritable(config, source: "model"), name)
            let weights = try Self.randomWeights(config, seed: UInt64(index + 1))
            let (read, file) = try roundTrip(weights, .f32, in: folder)
            XCTAssertEqual(try file.string("general.architecture"), name)
            XCTAssertEqual(read.config, config, name)
            for tensor in GGUFModelTensor.tensors(of: config) {
                for part in tensor.parts {
                    XCTAssertEqual(read.values(of: part, layer: tensor.layer), weights.values(of: part, layer: tensor.layer),
                                   "\(name): \(tensor.name) \(part.description)")
                }
            }
            // The same float32 weights through the same code: the same bits, in prefill and decode.
            for blockSize in [1, 8] {
                XCTAssertEqual(try logits(read, tokens, blockSize: blockSize), try logits(weights, tokens, blockSize: blockSize),
                               "\(name), blocks of \(blockSize)")
            }
        }
    }

    /// A quantized copy keeps the description and stores each matrix as asked (or as llama.cpp's
    /// fallback when its rows are not whole blocks), vectors and learned positions as F32.
    func testQuantizedCopiesKeepTheArchitecture() throws {
        let folder = try temporaryFolder(self)
        for (index, (name, config)) in Self.configs().enumerated() {
            let weights = try Self.randomWeights(config, seed: UInt64(index + 1))
            let (read, file) = try roundTrip(weights, .q8_0, in: folder)
            XCTAssertEqual(read.config, config, name)
            for info in file.tensors {
                let vector = info.dimensions.count == 1 || info.name == "position_embd.weight"
                // Rows that are not whole blocks of 32 fall back to F16 (the window model's head size 12).
                let matrixType = GGUFFileType.storedType(.q8_0, rowLength: info.dimensions[0])
                XCTAssertEqual(info.type.decoded, vector ? .f32 : matrixType, "\(name): \(info.name)")
            }
        }
    }

    func testWhatNoLlamaCppArchitectureDescribesIsRefusedInOneLine() throws {
        let base = Self.configs()
        func variant(_ index: Int, _ change: (inout ModelConfig) -> Void) -> ModelConfig {
            var c = base[index].1
            change(&c)
            return c
        }
        let cases: [(ModelConfig, String)] = [
            (variant(0) { $0.architecture.normPlacement = .post }, "post-norm"),
            (variant(0) { $0.architecture.feedForward = .relu }, "ReLU feed-forward"),
            (variant(0) { $0.architecture.positions = .sinusoidal }, "sinusoidal positions"),
            (variant(7) { $0.architecture.positions = .none }, "none positions"),
            (variant(5) { $0.ropePairing = .adjacent }, "GeGLU (tanh GELU), RoPE positions and adjacent RoPE pairs"),
            (variant(5) { $0.sharedClassifier = false }, "Gemma with its own classifier"),
            (variant(6) { $0.architecture.finalSoftcap = nil }, "without both soft caps"),
            (variant(6) { $0.architecture.attentionScale = 0.3 }, "gemma2 model except for its attention scale"),
            (variant(6) { $0.architecture.windows = [5, 5, 5] }, "gemma2 model except for its attention windows"),
            (variant(3) { $0.architecture.windows = [6, 6, 6] }, "qwen2 model except for its attention windows"),
            (variant(0) { $0.architecture.windows = [6, nil, 6] }, "llama model except for its attention windows"),
            (variant(4) { $0.architecture.biases = [.query] }, "biases on only some of Q, K and V"),
            (variant(0) { $0.architecture.embeddingScale = 2 }, "llama model except for its embedding scale"),
        ]
        for (config, needle) in cases {
            XCTAssertThrowsError(try GGUFModelWriter.requireWritable(config, source: "m.bin")) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains(needle) && !message.contains("\n"), message)
            }
        }
        // The K-quant mix follows llama.cpp's rules for llama only.
        let folder = try temporaryFolder(self)
        let path = folder.appendingPathComponent("mix.gguf").path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        defer { try? handle.close() }
        XCTAssertThrowsError(try Benchmark.writeRandomGGUF(config: base[4].1, fileType: .q4_K_M, name: "phi3", to: handle, path: path)) {
            XCTAssertTrue("\($0)".contains("Q4_K_M is llama.cpp's mix for llama models"), "\($0)")
        }
    }

    /// Every bench shape is a model the writer describes, with the parameter count of the
    /// published model it copies (as the model cards give it, to their precision).
    func testBenchShapesAreWritableModelsOfTheirPublishedSize() throws {
        let published: [String: (Double, Double)] = [
            "gpt2": (124.4e6, 0.1e6), "qwen2-0.5b": (494e6, 1e6), "gemma-2b": (2.506e9, 0.001e9),
            "gemma2-2b": (2.614e9, 0.001e9), "phi3-mini": (3.821e9, 0.001e9), "tinyllama": (1.100e9, 0.001e9),
        ]
        for name in Benchmark.shapeNames {
            let config = try XCTUnwrap(Benchmark.shape(named: name))
            XCTAssertNoThrow(try GGUFModelWriter.requireWritable(config, source: name), name)
            if let (count, precision) = published[name] {
                XCTAssertEqual(Double(config.parameterCount), count, accuracy: precision, name)
            }
        }
    }
}
