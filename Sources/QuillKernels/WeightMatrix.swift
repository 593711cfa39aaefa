/// A weight matrix stored row-major as (rows = out, cols = in), so a projection is y = W x.
/// The values live in a mapped checkpoint or an owned buffer, as float32, as int8 groups, or as
/// GGUF blocks.
public struct WeightMatrix: Sendable {
    public enum Storage: Sendable {
        /// rows × cols float32 values.
        case float32(FloatView)
        /// Q8_0: rows × cols int8 values; value = int8 × scales[index / groupSize].
        case q8(values: Int8View, scales: FloatView, groupSize: Int)
        /// GGUF blocks of a ggml type (F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K; F32 too):
        /// `rows` rows of `type.rowBytes(count: cols)` bytes each, back to back, as in a GGUF
        /// tensor of shape [cols, rows].
        case ggml(GGMLType, ByteView)
    }

    /// Output size (number of rows).
    public let rows: Int
    /// Input size (number of columns).
    public let cols: Int
    public let storage: Storage

    public init(rows: Int, cols: Int, storage: Storage) {
        switch storage {
        case .float32(let values):
            precondition(values.count == rows * cols, "float32 matrix needs rows × cols values")
        case .q8(let values, let scales, let groupSize):
            precondition(values.count == rows * cols, "q8 matrix needs rows × cols values")
            precondition(groupSize > 0 && cols % groupSize == 0, "q8 groups must tile each row")
            precondition(scales.count == rows * cols / groupSize, "q8 matrix needs one scale per group")
        case .ggml(let type, let bytes):
            precondition(rows >= 0 && cols >= 0 && cols % type.blockSize == 0,
                         "\(type.name) rows hold a multiple of \(type.blockSize) values, got \(cols) columns")
            precondition(bytes.count == rows * type.rowBytes(count: cols),
                         "a \(type.name) matrix of \(rows) × \(cols) needs \(rows * type.rowBytes(count: cols)) bytes, got \(bytes.count)")
        }
        self.rows = rows
        self.cols = cols
        self.storage = storage
    }

    /// Row `row` as float32 values (dequantized for Q8_0 and GGUF blocks), for checks and tests.
    public func rowValues(_ row: Int) -> [Float] {
        let out = FloatBuffer(count: cols)
        Kernels.copyRow(of: self, row: row, into: out, at: 0)
        return out.array()
    }
}
