import QuillKernels

extension ModelWeights {
    /// A description of the first weight that is NaN or infinite ("tensor rms_att of layer 2
    /// has a non-finite value (nan) at index 17"), or nil when all are finite. Norms and int8
    /// scales are always checked (they are small); the float32 matrices only when
    /// `includingLargeFloatTensors`, since that reads the whole file.
    public func firstNonFiniteWeight(includingLargeFloatTensors: Bool = true) -> String? {
        func check(_ view: FloatView, _ name: String, _ layer: Int?) -> String? {
            guard let index = Kernels.firstNonFinite(view) else { return nil }
            let value = view[index]
            return "tensor \(name)\(layer.map { " of layer \($0)" } ?? "") has a non-finite value (\(value)) at index \(index)"
        }
        func check(_ matrix: WeightMatrix, _ name: String, _ layer: Int?) -> String? {
            switch matrix.storage {
            case .float32(let values):
                return includingLargeFloatTensors ? check(values, name, layer) : nil
            case .q8(_, let scales, _):
                return check(scales, name + " (int8 scales)", layer)
            case .ggml:
                // GGUF blocks keep their scales inside the blocks: check the dequantized values,
                // like a float32 matrix.
                guard includingLargeFloatTensors else { return nil }
                for r in 0..<matrix.rows {
                    let row = matrix.rowValues(r)
                    if let i = row.firstIndex(where: { !$0.isFinite }) {
                        let where_ = layer.map { " of layer \($0)" } ?? ""
                        return "tensor \(name)\(where_) has a non-finite value (\(row[i])) at index \(r * matrix.cols + i)"
                    }
                }
                return nil
            }
        }
        for (l, layer) in layers.enumerated() {
            if let bad = check(layer.attentionNorm, "rms_att", l) ?? check(layer.ffnNorm, "rms_ffn", l) { return bad }
            // The vectors other architectures add are small too.
            let e = layer.extras
            let extras: [(FloatView?, String)] = [
                (e.attentionNormBias, "attention norm bias"), (e.ffnNormBias, "ffn norm bias"),
                (e.postAttentionNorm, "post-attention norm"), (e.postFFNNorm, "post-ffn norm"),
            ] + Architecture.Bias.allCases.map { (e[$0], "\($0.rawValue) bias") }
            for case let (view?, name) in extras {
                if let bad = check(view, name, l) { return bad }
            }
        }
        if let bad = check(finalNorm, "rms_final", nil) { return bad }
        if let bias = finalNormBias, let bad = check(bias, "final norm bias", nil) { return bad }
        if let positions = positionEmbedding, let bad = check(positions, "position embedding", nil) { return bad }
        if let bad = check(tokenEmbedding, "token_embedding", nil) { return bad }
        for (l, layer) in layers.enumerated() {
            let matrices = [(layer.wq, "wq"), (layer.wk, "wk"), (layer.wv, "wv"), (layer.wo, "wo"),
                            (layer.w1, "w1"), (layer.w2, "w2"), (layer.w3, "w3")]
            for (matrix, name) in matrices {
                if let bad = check(matrix, name, l) { return bad }
            }
        }
        if !config.sharedClassifier, let bad = check(classifier, "wcls", nil) { return bad }
        return nil
    }
}
