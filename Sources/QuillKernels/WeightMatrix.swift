/// A weight matrix stored row-major as (rows = out, cols = in), so a projection is y = W x.
/// The values live in a mapped checkpoint or an owned buffer, as float32 or as int8 groups.
public struct WeightMatrix: Sendable {
    public enum Storage: Sendable {
        /// rows × cols float32 values.
        case float32(FloatView)
        /// Q8_0: rows × cols int8 values; value = int8 × scales[index / groupSize].
        case q8(values: Int8View, scales: FloatView, groupSize: Int)
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
        }
        self.rows = rows
        self.cols = cols
        self.storage = storage
    }

    /// Row `row` as float32 values (dequantized for Q8_0), for checks and tests.
    public func rowValues(_ row: Int) -> [Float] {
        let out = FloatBuffer(count: cols)
        Kernels.copyRow(of: self, row: row, into: out, at: 0)
        return out.array()
    }
}
