/// What a sequence does when its KV cache is full (llama.cpp's context shift, with StreamingLLM's
/// attention sinks): keep the first `keep` tokens, drop half of the others — the oldest — and go
/// on with the kept ones renumbered from 0, so positions never leave the cache.
public struct ContextShift: Equatable, Sendable {
    /// Tokens at the start of the sequence that are never dropped (the attention sinks, BOS
    /// included); default 4, as in the StreamingLLM paper.
    public var keep: Int

    public init(keep: Int = 4) {
        precondition(keep >= 0, "keep ≥ 0")
        self.keep = keep
    }

    /// Positions to drop from a cache holding `filled`: half of those after the kept ones
    /// (llama.cpp's n_discard), so a shift happens once every that many tokens.
    public func discard(filled: Int) -> Int { (filled - keep) / 2 }

    /// Whether a cache of `capacity` positions leaves something to drop (keep ≤ capacity − 2).
    public func fits(capacity: Int) -> Bool { discard(filled: capacity) >= 1 }

    /// The ids of a prompt longer than `capacity` that a cache keeps: its first `keep` and its
    /// last `capacity − keep`; with the number dropped from between them.
    public func truncate(_ prompt: [Int], capacity: Int) -> (prompt: [Int], dropped: Int) {
        guard prompt.count > capacity else { return (prompt, 0) }
        precondition(keep < capacity, "keep below the capacity")
        return (Array(prompt[..<keep] + prompt[(prompt.count - (capacity - keep))...]), prompt.count - capacity)
    }
}

/// One context shift for `Transformer.shift`: keep `keep`, drop the next `discard` of `filled`.
struct ShiftPlan {
    let keep: Int
    let discard: Int
    let filled: Int
}
