/// Matrix products on Q8_0 weights: int8 values with one float32 scale per group.
enum QuantizedKernels {
    /// Y (batch, rows) = X (batch, cols) · Wᵀ with W dequantized on the fly.
    static func matmul(
        values: UnsafePointer<Int8>, scales: UnsafePointer<Float>, groupSize: Int,
        rows: Int, cols: Int, input: UnsafePointer<Float>, batch: Int, output: UnsafeMutablePointer<Float>
    ) {
        let groupsPerRow = cols / groupSize
        for b in 0..<batch {
            let x = input + b * cols
            for row in 0..<rows {
                var sum: Float = 0
                for g in 0..<groupsPerRow {
                    let base = row * cols + g * groupSize
                    var groupSum: Float = 0
                    for i in 0..<groupSize { groupSum += Float(values[base + i]) * x[g * groupSize + i] }
                    sum += groupSum * scales[row * groupsPerRow + g]
                }
                output[b * rows + row] = sum
            }
        }
    }
}
