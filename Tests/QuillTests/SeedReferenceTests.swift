import Foundation
import Quill
import QuillKernels
import XCTest

/// The seeds' choices that no public architecture combines (post-norm, ReLU, sinusoidal or no
/// positions, LayerNorm), against the numpy forward pass of scripts/make_seed_reference.py, which
/// is written from the definitions, not from Transformer.swift. The fixture holds each model's
/// choices, its float32 weights and the float64 logits of every position.
final class SeedReferenceTests: XCTestCase {
    struct Fixture: Decodable {
        struct Shape: Decodable {
            let dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len: Int
            let norm_eps: Float
        }
        struct Tensor: Decodable {
            let shape: [Int]
            let float32_base64: String
        }
        struct Model: Decodable {
            let norm, placement, feed_forward, positions: String
            let biases: [String]
            let windows: [Int?]
            let shared_classifier: Bool
            let weights: [String: Tensor]
            let logits: [[Double]]
        }
        let numpy: String
        let shape: Shape
        let tokens: [Int]
        let models: [String: Model]
    }

    static func loadFixture() throws -> Fixture {
        let data = try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("seed-reference.json")))
        return try JSONDecoder().decode(Fixture.self, from: data)
    }

    /// The model's configuration, choices mapped by Quill's names for them.
    static func config(_ m: Fixture.Model, _ s: Fixture.Shape) throws -> ModelConfig {
        var a = Architecture()
        a.norm = m.norm == "rms" ? .rms : .layer
        a.normPlacement = try XCTUnwrap(["pre": .pre, "post": .post][m.placement] as Architecture.NormPlacement?)
        a.feedForward = try XCTUnwrap(["relu": .relu, "swiglu": .swiglu][m.feed_forward] as Architecture.FeedForward?)
        a.positions = try XCTUnwrap(["sinusoidal": .sinusoidal, "none": .none][m.positions] as Architecture.Positions?)
        a.biases = Set(try m.biases.map { try XCTUnwrap(Architecture.Bias(rawValue: $0)) })
        a.windows = m.windows
        return ModelConfig(dim: s.dim, hiddenDim: s.hidden_dim, layerCount: s.n_layers, headCount: s.n_heads,
                           kvHeadCount: s.n_kv_heads, vocabSize: s.vocab_size, contextLength: s.seq_len,
                           sharedClassifier: m.shared_classifier, normEpsilon: s.norm_eps, ropeTheta: 10000, architecture: a)
    }

    /// The fixture's weights as Quill's, each tensor's shape checked against `ModelConfig.shape(of:)`.
    static func weights(_ m: Fixture.Model, config c: ModelConfig) throws -> ModelWeights {
        func values(_ name: String, _ shape: [Int]) throws -> [Float] {
            let tensor = try XCTUnwrap(m.weights[name], "tensor \(name)")
            XCTAssertEqual(tensor.shape, shape, name)
            let bytes = try XCTUnwrap(Data(base64Encoded: tensor.float32_base64))
            XCTAssertEqual(bytes.count, shape.reduce(1, *) * 4, name)
            let b = [UInt8](bytes)
            return stride(from: 0, to: b.count, by: 4).map { i -> Float in
                var bits: UInt32 = 0
                for k in 0..<4 { bits |= UInt32(b[i + k]) << (8 * k) }  // little-endian
                return Float(bitPattern: bits)
            }
        }
        func vector(_ name: String, _ count: Int) throws -> FloatView { FloatView(FloatBuffer(try values(name, [count]))) }
        func optionalVector(_ name: String, _ count: Int) throws -> FloatView? {
            m.weights[name] == nil ? nil : try vector(name, count)
        }
        func matrix(_ name: String, _ tensor: TensorName) throws -> WeightMatrix {
            let (rows, cols) = c.shape(of: tensor)
            if rows == 0 { return WeightMatrix(rows: 0, cols: cols, storage: .float32(FloatView(FloatBuffer(count: 0)))) }
            return WeightMatrix(rows: rows, cols: cols, storage: .float32(FloatView(FloatBuffer(try values(name, [rows, cols])))))
        }
        let layers = try (0..<c.layerCount).map { l -> LayerWeights in
            let p = "layers.\(l)."
            var e = LayerExtras()
            e.attentionNormBias = try optionalVector(p + "attention_norm_bias", c.dim)
            e.ffnNormBias = try optionalVector(p + "ffn_norm_bias", c.dim)
            for bias in Architecture.Bias.allCases { e[bias] = try optionalVector(p + bias.rawValue + "_bias", c.biasWidth(bias)) }
            return LayerWeights(attentionNorm: try vector(p + "attention_norm", c.dim), wq: try matrix(p + "wq", .wq),
                                wk: try matrix(p + "wk", .wk), wv: try matrix(p + "wv", .wv), wo: try matrix(p + "wo", .wo),
                                ffnNorm: try vector(p + "ffn_norm", c.dim), w1: try matrix(p + "w1", .w1),
                                w2: try matrix(p + "w2", .w2), w3: try matrix(p + "w3", .w3), extras: e)
        }
        let embedding = try matrix("token_embedding", .tokenEmbedding)
        return try ModelWeights(config: c, tokenEmbedding: embedding, layers: layers, finalNorm: try vector("final_norm", c.dim),
                                classifier: c.sharedClassifier ? embedding : try matrix("classifier", .classifier),
                                finalNormBias: try optionalVector("final_norm_bias", c.dim), source: "seed-reference.json")
    }

    func testSeedChoicesMatchTheNumpyReference() throws {
        let fixture = try Self.loadFixture()
        XCTAssertEqual(fixture.models.count, 4)
        XCTAssertEqual(fixture.tokens.count, fixture.shape.seq_len)
        for (name, model) in fixture.models.sorted(by: { $0.key < $1.key }) {
            let config = try Self.config(model, fixture.shape)
            // The sequence runs past every window, so the band is exercised.
            XCTAssertTrue(model.windows.allSatisfy { ($0 ?? 0) < fixture.tokens.count }, name)
            let weights = try Self.weights(model, config: config)
            // 1: token by token (the decode path); 3: blocks that start inside a window; 64: one prefill.
            for blockSize in [1, 3, 64] {
                let transformer = try Transformer(weights: weights, maxRows: blockSize, threads: 1, maxLogitRows: blockSize)
                var rows: [[Float]] = []
                transformer.prefill(fixture.tokens, startPosition: 0, cache: try transformer.makeCache()) { _, logits, offset in
                    rows.append(logits.array(offset: offset, length: config.vocabSize))
                }
                XCTAssertEqual(rows.count, fixture.tokens.count, name)
                for (position, row) in rows.enumerated() {
                    // Logits below 12 in magnitude from sums of at most 40 float32 products per step:
                    // float32 rounding moves them by about 3e-6 (measured), far inside 1e-4 on any CPU;
                    // one choice made wrongly (GELU for ReLU, pre-norm for post-norm) moves them by far more.
                    assertClose(row, model.logits[position].map { Float($0) }, tolerance: 1e-4,
                                "\(name), blocks of \(blockSize), position \(position) (numpy \(fixture.numpy))")
                }
            }
        }
    }
}
