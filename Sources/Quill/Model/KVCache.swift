import QuillKernels

/// Keys and values of every layer for one sequence, for the positions a run can reach
/// (`capacity`, at most the model's context). Position p of layer l lives at
/// (l · capacity + p) · kvDim. The memory is zeroed lazily by the system, so positions that
/// are never written cost nothing.
public final class KVCache {
    let keys: FloatBuffer    // (layer, capacity, kvDim)
    let values: FloatBuffer  // (layer, capacity, kvDim)
    /// Number of positions the cache can hold.
    public let capacity: Int

    public init(config: ModelConfig, capacity: Int) throws(AllocationError) {
        precondition(capacity >= 1 && capacity <= config.contextLength, "KV cache capacity outside the context")
        self.capacity = capacity
        let (count, overflow) = config.layerCount.multipliedReportingOverflow(by: capacity * config.kvDim)
        let purpose = "the KV cache (\(capacity) positions × \(config.layerCount) layers × \(config.kvDim))"
        guard !overflow else { throw AllocationError(purpose: purpose, bytes: .max) }
        keys = try FloatBuffer(allocating: count, for: purpose)
        values = try FloatBuffer(allocating: count, for: purpose)
    }

    /// Bytes held by the cache.
    public var byteCount: Int { (keys.count + values.count) * 4 }
}
