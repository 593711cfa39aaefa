/// Turns generated ids into output bytes one at a time. Byte-fallback pieces become raw bytes;
/// an incomplete UTF-8 character at the end is held back until it completes, so a stream is
/// never cut inside a character; invalid bytes are passed through, never dropped. Like
/// SentencePiece's decode, the leading space of the first piece after BOS is dropped.
public struct StreamingDetokenizer {
    private let pieceBytes: PieceTable
    private let bosID: Int
    private var previous: Int?
    private var pending: [UInt8] = []

    /// `previous` is the last id already fed to the model (the end of the prompt).
    public init(tokenizer: Tokenizer, previous: Int? = nil) {
        pieceBytes = tokenizer.pieceBytes
        bosID = tokenizer.bosID
        self.previous = previous
    }

    /// The bytes that can be printed after `id`.
    public mutating func append(_ id: Int) -> [UInt8] {
        defer { previous = id }
        guard id >= 0 && id < pieceBytes.count else { return [] }
        var bytes = pieceBytes[id][...]
        if previous == bosID, bytes.first == 0x20 { bytes = bytes.dropFirst() }
        pending += bytes
        let cut = StreamingDetokenizer.completePrefixLength(pending)
        let ready = Array(pending[..<cut])
        pending.removeFirst(cut)
        return ready
    }

    /// Whatever is still held back (an unfinished character at the end of the text).
    public mutating func finish() -> [UInt8] {
        defer { pending.removeAll() }
        return pending
    }

    /// Length of the longest prefix of `bytes` that does not end inside a UTF-8 character that
    /// could still be completed by more bytes.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        var i = bytes.count - 1
        var continuations = 0
        while i >= 0 && continuations < 4 {
            let byte = bytes[i]
            if byte & 0xC0 == 0x80 {  // continuation byte: keep looking for its lead byte
                continuations += 1
                i -= 1
                continue
            }
            let needed: Int
            switch byte {
            case 0xC2...0xDF: needed = 2
            case 0xE0...0xEF: needed = 3
            case 0xF0...0xF4: needed = 4
            default: needed = 1  // ASCII or a byte that can never start a character
            }
            return continuations + 1 < needed ? i : bytes.count
        }
        return bytes.count
    }
}
