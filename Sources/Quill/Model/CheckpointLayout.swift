import QuillKernels

/// Byte offsets of every tensor for a given header, computed with overflow checks so an absurd
/// header is an error, not a crash.
struct CheckpointLayout {
    struct Entry {
        var offset: Int        // bytes from the start of the file (int8 values for Q8_0)
        var scaleOffset: Int   // Q8_0 only: where this tensor's scales start
        var perLayer: Int      // elements per layer (or the whole tensor when not layered)
        var rows: Int
        var cols: Int
        var layerStride = 0    // Q8_0 only: bytes from one layer's int8 values (and scales) to the next
    }

    let config: ModelConfig
    let format: CheckpointFormat
    let order: QuantizedOrder
    private(set) var entries: [TensorName: Entry] = [:]
    private(set) var byteCount = 0

    /// How a version 2 file orders int8 values and scales.
    enum QuantizedOrder {
        /// All tensors' int8 values, then all scales (../shared/docs/formats.md; what Quill writes).
        case valuesThenScales
        /// Each tensor (each layer of it) as its values followed by its scales (llama2.c's export.py).
        case interleaved
    }

    init(config c: ModelConfig, format: CheckpointFormat, path: String,
         order: QuantizedOrder = .valuesThenScales) throws(CheckpointError) {
        self.config = c
        self.format = format
        self.order = order
        let impossible = CheckpointError(
            path: path, problem: "header (dim \(c.dim), \(c.layerCount) layers, vocab \(c.vocabSize)) implies an impossible size")
        func product(_ values: Int...) throws(CheckpointError) -> Int {
            var result = 1
            for v in values {
                let (p, overflow) = result.multipliedReportingOverflow(by: v)
                guard !overflow, p < 1 << 52 else { throw impossible }
                result = p
            }
            return result
        }
        // (name, layers, rows, cols) per format, in file order; shapes from the one tensor table.
        typealias Spec = (TensorName, Int, Int, Int)
        func spec(_ name: TensorName) -> Spec {
            let (rows, cols) = c.shape(of: name)
            return (name, name.isPerLayer ? c.layerCount : name == .ropeTables ? 2 : 1, name == .ropeTables ? rows / 2 : rows, cols)
        }
        let norms = [TensorName.attentionNorm, .ffnNorm, .finalNorm].map(spec)
        let matrices = [TensorName.tokenEmbedding, .wq, .wk, .wv, .wo, .w1, .w2, .w3].map(spec)
        let classifier = c.sharedClassifier ? [] : [spec(.classifier)]

        var cursor: Int
        switch format {
        case .version0:
            cursor = Checkpoint.legacyHeaderSize
            let order = [TensorName.tokenEmbedding, .attentionNorm, .wq, .wk, .wv, .wo, .ffnNorm, .w1, .w2, .w3,
                         .finalNorm, .ropeTables].map(spec) + classifier
            for (name, layers, rows, cols) in order {
                let perLayer = try product(rows, cols)
                entries[name] = Entry(offset: cursor, scaleOffset: 0, perLayer: perLayer, rows: rows, cols: cols)
                cursor += try product(layers, perLayer, 4)
            }
        case .version1:
            cursor = Checkpoint.versionedHeaderSize
            for (name, layers, rows, cols) in norms + matrices + classifier {
                let perLayer = try product(rows, cols)
                entries[name] = Entry(offset: cursor, scaleOffset: 0, perLayer: perLayer, rows: rows, cols: cols)
                cursor += try product(layers, perLayer, 4)
            }
        case .version2(let groupSize):
            cursor = Checkpoint.versionedHeaderSize
            for (name, layers, rows, cols) in norms {
                let perLayer = try product(rows, cols)
                entries[name] = Entry(offset: cursor, scaleOffset: 0, perLayer: perLayer, rows: rows, cols: cols)
                cursor += try product(layers, perLayer, 4)
            }
            let quantized = matrices + classifier
            switch order {
            case .valuesThenScales:
                // All int8 values first, then all scales, each in tensor order.
                for (name, layers, rows, cols) in quantized {
                    let perLayer = try product(rows, cols)
                    entries[name] = Entry(offset: cursor, scaleOffset: 0, perLayer: perLayer, rows: rows, cols: cols,
                                          layerStride: perLayer)
                    cursor += try product(layers, perLayer)
                }
                for (name, layers, _, _) in quantized {
                    entries[name]!.scaleOffset = cursor
                    cursor += try product(layers, entries[name]!.perLayer / groupSize, 4)
                }
            case .interleaved:
                for (name, layers, rows, cols) in quantized {
                    let perLayer = try product(rows, cols)
                    let stride = perLayer + perLayer / groupSize * 4
                    entries[name] = Entry(offset: cursor, scaleOffset: cursor + perLayer, perLayer: perLayer, rows: rows,
                                          cols: cols, layerStride: stride)
                    cursor += try product(layers, stride)
                }
            }
        }
        guard cursor < 1 << 52 else { throw impossible }
        byteCount = cursor
    }

    /// Views of the tensors in a file that has been checked to match this layout.
    func tensors(in file: MappedFile) -> TensorViews { TensorViews(layout: self, file: file) }

    struct TensorViews {
        let layout: CheckpointLayout
        let file: MappedFile

        func vector(_ name: TensorName, layer: Int) -> FloatView {
            let e = layout.entries[name]!
            return file.floats(at: e.offset + layer * e.perLayer * 4, count: e.perLayer)
        }

        func matrix(_ name: TensorName, layer: Int) -> WeightMatrix {
            let e = layout.entries[name]!
            switch layout.format {
            case .version0, .version1:
                return WeightMatrix(rows: e.rows, cols: e.cols,
                                    storage: .float32(file.floats(at: e.offset + layer * e.perLayer * 4, count: e.perLayer)))
            case .version2(let groupSize):
                let groups = e.perLayer / groupSize
                return WeightMatrix(rows: e.rows, cols: e.cols, storage: .q8(
                    values: file.int8s(at: e.offset + layer * e.layerStride, count: e.perLayer),
                    scales: file.floats(at: e.scaleOffset + layer * (layout.order == .interleaved ? e.layerStride : groups * 4),
                                        count: groups),
                    groupSize: groupSize))
            }
        }
    }
}
