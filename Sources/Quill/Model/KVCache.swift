import QuillKernels

/// Keys and values of every layer for one sequence, allocated once for the whole context
/// window. Position p of layer l lives at (l · contextLength + p) · kvDim.
public final class KVCache {
    let keys: FloatBuffer    // (layer, contextLength, kvDim)
    let values: FloatBuffer  // (layer, contextLength, kvDim)
    /// Number of positions the cache can hold.
    public let contextLength: Int

    public init(config: ModelConfig) {
        contextLength = config.contextLength
        keys = FloatBuffer(count: config.layerCount * config.contextLength * config.kvDim)
        values = FloatBuffer(count: config.layerCount * config.contextLength * config.kvDim)
    }

    /// Bytes held by the cache.
    public var byteCount: Int { (keys.count + values.count) * 4 }
}
