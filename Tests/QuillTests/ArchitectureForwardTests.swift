import Foundation
import Quill
import QuillKernels
import XCTest

/// Every choice of `Architecture` against an independent forward pass in plain loops and double
/// precision that recomputes the whole sequence (no cache, no ring, no blocks): the Hugging Face
/// fixtures cover the combinations public models make; these cover the rest (ReLU, LayerNorm
/// with a window, biases everywhere, no positions) and every block size, so the ring of a
/// windowed layer wraps in decode and in prefill.
final class ArchitectureForwardTests: XCTestCase {
    /// Random weights for `config`, with every extra its architecture asks for.
    func randomWeights(_ c: ModelConfig, seed: UInt64) throws -> ModelWeights {
        // xorshift64: deterministic values in [-1, 1).
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func next() -> Float {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Float(state >> 40) / Float(1 << 23) - 1
        }
        func view(_ n: Int, scale: Float = 1, offset: Float = 0) -> FloatView {
            FloatView(FloatBuffer((0..<n).map { _ in next() * scale + offset }))
        }
        func matrix(_ name: TensorName) -> WeightMatrix {
            let (rows, cols) = c.shape(of: name)
            return WeightMatrix(rows: rows, cols: cols, storage: .float32(view(rows * cols, scale: 1 / Float(cols).squareRoot())))
        }
        let a = c.architecture
        let layers = (0..<c.layerCount).map { _ -> LayerWeights in
            var e = LayerExtras()
            if a.norm == .layer {
                e.attentionNormBias = view(c.dim, scale: 0.2)
                e.ffnNormBias = view(c.dim, scale: 0.2)
            }
            if a.postNorms {
                e.postAttentionNorm = view(c.dim, scale: 0.3, offset: 1)
                e.postFFNNorm = view(c.dim, scale: 0.3, offset: 1)
            }
            for bias in a.biases { e[bias] = view(c.biasWidth(bias), scale: 0.2) }
            return LayerWeights(attentionNorm: view(c.dim, scale: 0.3, offset: 1), wq: matrix(.wq), wk: matrix(.wk),
                                wv: matrix(.wv), wo: matrix(.wo), ffnNorm: view(c.dim, scale: 0.3, offset: 1),
                                w1: matrix(.w1), w2: matrix(.w2), w3: matrix(.w3), extras: e)
        }
        let embedding = matrix(.tokenEmbedding)
        return try ModelWeights(
            config: c, tokenEmbedding: embedding, layers: layers, finalNorm: view(c.dim, scale: 0.3, offset: 1),
            classifier: c.sharedClassifier ? embedding : matrix(.classifier),
            finalNormBias: a.norm == .layer ? view(c.dim, scale: 0.2) : nil,
            positionEmbedding: a.positions == .learned
                ? WeightMatrix(rows: c.contextLength, cols: c.dim, storage: .float32(view(c.contextLength * c.dim, scale: 0.5))) : nil,
            source: "random")
    }

    /// Logits of every position of `tokens`, each from the whole prefix, in doubles.
    func referenceLogits(_ w: ModelWeights, _ tokens: [Int]) -> [[Double]] {
        let c = w.config, a = c.architecture
        let d = c.dim, hs = c.headSize, group = c.headCount / c.kvHeadCount
        func values(_ m: WeightMatrix) -> [Double] { (0..<m.rows).flatMap { m.rowValues($0) }.map(Double.init) }
        func vec(_ v: FloatView?) -> [Double]? { v.map { $0.array.map(Double.init) } }
        func matvec(_ m: WeightMatrix, _ x: [Double], _ bias: FloatView?) -> [Double] {
            let wv = values(m), b = vec(bias)
            return (0..<m.rows).map { r -> Double in
                var sum = b?[r] ?? 0
                for i in 0..<m.cols { sum += wv[r * m.cols + i] * x[i] }
                return sum
            }
        }
        func norm(_ x: [Double], _ weight: FloatView, _ bias: FloatView?) -> [Double] {
            let g = vec(weight)!, eps = Double(c.normEpsilon), n = Double(x.count)
            switch a.norm {
            case .rms:
                let s = 1 / (x.map { $0 * $0 }.reduce(0, +) / n + eps).squareRoot()
                return zip(x, g).map { $0 * s * $1 }
            case .layer:
                let mean = x.reduce(0, +) / n
                let s = 1 / (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / n + eps).squareRoot()
                let b = vec(bias)!
                return x.indices.map { (x[$0] - mean) * s * g[$0] + b[$0] }
            }
        }
        func rope(_ v: [Double], _ position: Int) -> [Double] {
            guard a.positions == .rope else { return v }
            var out = v
            for head in stride(from: 0, to: v.count, by: hs) {
                for pair in 0..<hs / 2 {
                    let i = c.ropePairing == .adjacent ? head + 2 * pair : head + pair
                    let j = c.ropePairing == .adjacent ? i + 1 : i + hs / 2
                    let angle = Double(position) * pow(c.ropeTheta, -Double(2 * pair) / Double(hs))
                    out[i] = v[i] * cos(angle) - v[j] * sin(angle)
                    out[j] = v[i] * sin(angle) + v[j] * cos(angle)
                }
            }
            return out
        }
        func gelu(_ v: Double) -> Double { 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))) }
        let positionTable = w.positionEmbedding.map(values)
        var x = tokens.enumerated().map { t, token -> [Double] in
            let row = w.tokenEmbedding.rowValues(token).map { Double($0) * Double(a.embeddingScale ?? 1) }
            if a.positions == .sinusoidal {
                return row.indices.map { i in
                    let angle = Double(t) * pow(10000, -Double(i - i % 2) / Double(d))
                    return row[i] + (i % 2 == 0 ? sin(angle) : cos(angle))
                }
            }
            guard let positionTable else { return row }
            return row.indices.map { row[$0] + positionTable[t * d + $0] }
        }
        let post = a.normPlacement == .post
        for (l, layer) in w.layers.enumerated() {
            let e = layer.extras
            let h = post ? x : x.map { norm($0, layer.attentionNorm, e.attentionNormBias) }
            let q = h.enumerated().map { rope(matvec(layer.wq, $1, e.queryBias), $0) }
            let k = h.enumerated().map { rope(matvec(layer.wk, $1, e.keyBias), $0) }
            let v = h.map { matvec(layer.wv, $0, e.valueBias) }
            for t in tokens.indices {
                let first = a.window(layer: l).map { max(0, t + 1 - $0) } ?? 0
                var attended = [Double](repeating: 0, count: c.qDim)
                for head in 0..<c.headCount {
                    let kv = (head / group) * hs
                    var scores = (first...t).map { s -> Double in
                        let raw = (0..<hs).reduce(0.0) { $0 + q[t][head * hs + $1] * k[s][kv + $1] } * Double(c.attentionScale)
                        return a.attentionSoftcap.map { Double($0) * tanh(raw / Double($0)) } ?? raw
                    }
                    let top = scores.max()!
                    scores = scores.map { exp($0 - top) }
                    let total = scores.reduce(0, +)
                    for i in 0..<hs {
                        attended[head * hs + i] = (first...t).enumerated().reduce(0.0) { $0 + scores[$1.0] / total * v[$1.1][kv + i] }
                    }
                }
                var out = matvec(layer.wo, attended, e.outputBias)
                if let post = e.postAttentionNorm { out = norm(out, post, nil) }
                for i in 0..<d { x[t][i] += out[i] }
                if post { x[t] = norm(x[t], layer.attentionNorm, e.attentionNormBias) }
                let f = post ? x[t] : norm(x[t], layer.ffnNorm, e.ffnNormBias)
                let up = matvec(layer.w3, f, e.upBias)
                let hidden: [Double]
                switch a.feedForward {
                case .swiglu: hidden = zip(matvec(layer.w1, f, nil), up).map { g, u in g / (1 + exp(-g)) * u }
                case .geglu: hidden = zip(matvec(layer.w1, f, nil), up).map { g, u in gelu(g) * u }
                case .gelu: hidden = up.map(gelu)
                case .relu: hidden = up.map { max(0, $0) }
                }
                var down = matvec(layer.w2, hidden, e.downBias)
                if let post = e.postFFNNorm { down = norm(down, post, nil) }
                for i in 0..<d { x[t][i] += down[i] }
                if post { x[t] = norm(x[t], layer.ffnNorm, e.ffnNormBias) }
            }
        }
        return x.map { row in
            let logits = matvec(w.classifier, norm(row, w.finalNorm, w.finalNormBias), nil)
            return a.finalSoftcap.map { cap in logits.map { Double(cap) * tanh($0 / Double(cap)) } } ?? logits
        }
    }

    /// Quill's logits of every position, fed in blocks of `blockSize` (1: the decode path).
    func quillLogits(_ w: ModelWeights, _ tokens: [Int], blockSize: Int) throws -> [[Float]] {
        let transformer = try Transformer(weights: w, maxRows: blockSize, threads: 2, maxLogitRows: blockSize)
        var rows: [[Float]] = []
        transformer.prefill(tokens, startPosition: 0, cache: try transformer.makeCache()) { _, logits, offset in
            rows.append(logits.array(offset: offset, length: w.config.vocabSize))
        }
        return rows
    }

    func check(_ architecture: Architecture, headSize: Int? = nil, pairing: RoPEPairing = .adjacent,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let config = ModelConfig(dim: 24, hiddenDim: 40, layerCount: 3, headCount: 4, kvHeadCount: 2, vocabSize: 50,
                                 contextLength: 32, sharedClassifier: false, normEpsilon: 1e-5, ropeTheta: 10000,
                                 ropePairing: pairing, headSize: headSize, architecture: architecture)
        let weights = try randomWeights(config, seed: 31)
        let tokens = (0..<19).map { ($0 * 17 + 3) % 50 }
        let expected = referenceLogits(weights, tokens)
        for blockSize in [1, 3, 64] {
            let actual = try quillLogits(weights, tokens, blockSize: blockSize)
            XCTAssertEqual(actual.count, tokens.count, file: file, line: line)
            for (t, row) in actual.enumerated() {
                // Logits of a few units from sums of at most 40 products: float32 stays well inside 1e-4.
                assertClose(row, expected[t].map { Float($0) }, tolerance: 1e-4, "block \(blockSize), position \(t)",
                            file: file, line: line)
            }
        }
    }

    func testGemma2LikeChoicesMatchTheReference() throws {
        var a = Architecture()
        a.feedForward = .geglu
        a.normPlacement = .preAndPost
        a.attentionScale = 0.2
        a.attentionSoftcap = 3
        a.finalSoftcap = 5
        a.embeddingScale = 2
        a.windows = [5, nil, 5]
        try check(a, headSize: 10, pairing: .halves)
    }

    /// The seeds' combination no public model has: LayerNorm, ReLU, learned positions, a bias after
    /// every projection and a window on every layer.
    func testLayerNormReLUWindowedEverywhereMatchesTheReference() throws {
        var a = Architecture()
        a.norm = .layer
        a.feedForward = .relu
        a.positions = .learned
        a.biases = Set(Architecture.Bias.allCases)
        a.windows = [4, 4, 4]
        try check(a)
    }

    /// The original Transformer's choices: norms after each residual sum, sinusoidal positions,
    /// ReLU (with RMSNorm and LayerNorm).
    func testPostNormSinusoidalReLUMatchesTheReference() throws {
        for norm in [Architecture.Norm.rms, .layer] {
            var a = Architecture()
            a.norm = norm
            a.normPlacement = .post
            a.positions = .sinusoidal
            a.feedForward = .relu
            a.windows = [nil, 6, nil]
            try check(a)
        }
    }

    /// GELU without a gate and no positions at all (the causal mask alone orders the tokens).
    func testGELUWithoutPositionsMatchesTheReference() throws {
        var a = Architecture()
        a.feedForward = .gelu
        a.positions = .none
        a.biases = [.up, .down]
        try check(a)
    }

    /// A NaN in a vector only other architectures have is found like one in a norm.
    func testNonFiniteExtrasAreFound() throws {
        var a = Architecture()
        a.norm = .layer
        a.biases = [.key]
        let config = ModelConfig(dim: 24, hiddenDim: 40, layerCount: 2, headCount: 4, kvHeadCount: 2, vocabSize: 50,
                                 contextLength: 32, sharedClassifier: false, normEpsilon: 1e-5, ropeTheta: 10000,
                                 architecture: a)
        let w = try randomWeights(config, seed: 3)
        XCTAssertNil(w.firstNonFiniteWeight())
        var layers = w.layers
        var e = layers[1].extras
        let bias = FloatBuffer(e.keyBias!.array)
        bias[5] = .nan
        e.keyBias = FloatView(bias)
        let old = layers[1]
        layers[1] = LayerWeights(attentionNorm: old.attentionNorm, wq: old.wq, wk: old.wk, wv: old.wv, wo: old.wo,
                                 ffnNorm: old.ffnNorm, w1: old.w1, w2: old.w2, w3: old.w3, extras: e)
        let broken = try ModelWeights(config: config, tokenEmbedding: w.tokenEmbedding, layers: layers, finalNorm: w.finalNorm,
                                      classifier: w.classifier, finalNormBias: w.finalNormBias, source: "random")
        XCTAssertEqual(broken.firstNonFiniteWeight(includingLargeFloatTensors: false),
                       "tensor k bias of layer 1 has a non-finite value (nan) at index 5")
    }

    /// A windowed layer keeps window + block − 1 positions, a full layer the whole capacity.
    func testWindowedLayersKeepARingOfTheWindow() throws {
        var a = Architecture()
        a.windows = [8, nil, 8]
        let config = ModelConfig(dim: 24, hiddenDim: 40, layerCount: 3, headCount: 4, kvHeadCount: 2, vocabSize: 50,
                                 contextLength: 64, sharedClassifier: false, normEpsilon: 1e-5, ropeTheta: 10000,
                                 architecture: a)
        let cache = try KVCache(config: config, capacity: 64, blockRows: 4)
        XCTAssertEqual(cache.layerSlots, [11, 64, 11])
        XCTAssertEqual(cache.byteCount, 2 * (11 + 64 + 11) * config.kvDim * 4)
        // A window longer than the run needs no ring.
        XCTAssertEqual(try KVCache(config: config, capacity: 9, blockRows: 4).layerSlots, [9, 9, 9])
    }
}
