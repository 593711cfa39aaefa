import QuillKernels

/// Keys and values of every layer for one sequence, for the positions a run can reach
/// (`capacity`, at most the model's context). A layer attending to the whole prefix keeps every
/// position; a layer with a sliding window W keeps a ring of W + blockRows − 1 slots, so its memory
/// follows the window, not the context (the extra slots hold a prompt block's own keys while its
/// first row still needs the W − 1 before it). Position p of layer l lives in slot p mod
/// `layerSlots[l]`, at `layerOffsets[l] + slot · kvDim` (for a full layer the slot is p itself).
/// The memory is zeroed lazily by the system, so positions that are never written cost nothing.
/// A windowed layer whose ring is shorter than the cache also keeps a copy of the first
/// `sinkCount` positions (the attention sinks a context shift keeps): after a shift the window
/// can reach back to them, long after the ring overwrote them.
public final class KVCache {
    let keys: FloatBuffer    // (Σ layerSlots, kvDim), layer after layer
    let values: FloatBuffer  // (Σ layerSlots, kvDim)
    /// Number of positions the cache can hold.
    public let capacity: Int
    /// Slots of each layer: `capacity`, or the ring of a windowed layer.
    public let layerSlots: [Int]
    /// Element offset of each layer's first slot in `keys` and `values`.
    let layerOffsets: [Int]
    /// Positions 0 ..< sinkCount of every layer kept aside for the rings: (layerCount, sinkCount, kvDim),
    /// empty when no ring wraps or no sinks were asked for.
    let sinkKeys: FloatBuffer
    let sinkValues: FloatBuffer  // (layerCount, sinkCount, kvDim)
    /// First positions of the sequence kept aside for windowed layers whose ring wraps (0: none).
    public let sinkCount: Int
    let kvDim: Int

    /// The slots each layer of `config` needs when positions are fed in blocks of up to `blockRows`.
    public static func slots(config: ModelConfig, capacity: Int, blockRows: Int) -> [Int] {
        (0..<config.layerCount).map { l in
            config.architecture.window(layer: l).map { min(capacity, $0 + blockRows - 1) } ?? capacity
        }
    }

    /// A cache for `capacity` positions fed in blocks of at most `blockRows` (the transformer's
    /// `maxRows`, which sizes the rings of windowed layers); `sinks` first positions are kept
    /// aside for the rings that wrap, so that a context shift keeping them stays exact.
    public init(config: ModelConfig, capacity: Int, blockRows: Int, sinks: Int = 0) throws(AllocationError) {
        precondition(capacity >= 1 && capacity <= config.contextLength, "KV cache capacity outside the context")
        precondition(blockRows >= 1 && sinks >= 0, "KV cache block rows, sinks")
        self.capacity = capacity
        kvDim = config.kvDim
        layerSlots = Self.slots(config: config, capacity: capacity, blockRows: blockRows)
        var offsets: [Int] = []
        var total = 0
        var overflow = false
        for slots in layerSlots {
            offsets.append(total)
            let (bytes, o1) = slots.multipliedReportingOverflow(by: config.kvDim)
            let (sum, o2) = total.addingReportingOverflow(bytes)
            overflow = overflow || o1 || o2
            total = sum
        }
        layerOffsets = offsets
        let purpose = "the KV cache (\(capacity) positions × \(config.layerCount) layers × \(config.kvDim))"
        guard !overflow else { throw AllocationError(purpose: purpose, bytes: .max) }
        keys = try FloatBuffer(allocating: total, for: purpose)
        values = try FloatBuffer(allocating: total, for: purpose)
        let wraps = layerSlots.contains { $0 < capacity }
        sinkCount = wraps ? min(sinks, capacity) : 0
        let sinkElements = config.layerCount * sinkCount * config.kvDim
        sinkKeys = try FloatBuffer(allocating: sinkElements, for: "the attention sinks of the KV cache")
        sinkValues = try FloatBuffer(allocating: sinkElements, for: "the attention sinks of the KV cache")
    }

    /// Bytes of the keys and values of a cache `init` would make (the sinks kept aside, a few
    /// positions, not counted), without allocating it.
    public static func byteCount(config: ModelConfig, capacity: Int, blockRows: Int) -> Int {
        slots(config: config, capacity: capacity, blockRows: blockRows).reduce(0, +) * config.kvDim * 2 * 4
    }

    /// Bytes held by the cache.
    public var byteCount: Int { (keys.count + values.count + sinkKeys.count + sinkValues.count) * 4 }

    /// Element offset of (layer, sink position) in `sinkKeys` / `sinkValues`.
    func sinkOffset(layer: Int, position: Int) -> Int { (layer * sinkCount + position) * kvDim }
}
