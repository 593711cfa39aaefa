/// Reads a stream of bytes (a batch file) one line at a time: "\n" and "\r\n" both end a line, a
/// UTF-8 byte order mark before the first line is dropped, and lines are numbered as in the
/// file (blank ones included). Memory stays bounded by `maximumLineBytes` whatever the input:
/// the rest of a longer line is read and discarded, and the line is reported as too long.
/// The bytes come from `read` (a file descriptor for the CLI, a buffer for the fuzz target).
public struct LineReader {
    public enum Item: Equatable {
        /// A line (without its ending) and its number in the file, from 1.
        case line([UInt8], number: Int)
        /// A line longer than `maximumLineBytes`; its bytes were discarded.
        case tooLong(number: Int)
        /// No complete line is available without waiting.
        case notReady
        /// The input has ended.
        case end
    }

    /// Fills the buffer with the next bytes and returns how many (0 at the end of the input).
    public typealias Read = (UnsafeMutableRawBufferPointer) throws -> Int

    private let read: Read
    private let readable: () -> Bool
    private let shouldStop: () -> Bool
    public let maximumLineBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0           // first unconsumed byte of `buffer`
    private var searched = 0        // bytes from `start` already known to hold no newline
    private var ended = false
    private var lineNumber = 0
    private var discarding = false  // inside a line that is already too long
    private var atFileStart = true
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)  // one read's bytes, reused

    /// `readable` says whether a read would return at once; `shouldStop` (Ctrl-C) ends the
    /// input early.
    public init(maximumLineBytes: Int, read: @escaping Read, readable: @escaping () -> Bool,
                shouldStop: @escaping () -> Bool = { false }) {
        self.read = read
        self.readable = readable
        self.shouldStop = shouldStop
        self.maximumLineBytes = maximumLineBytes
    }

    /// The next line. With `canWait` false, answers `.notReady` instead of blocking when the
    /// input has no complete line yet (a pipe whose writer is waiting for our output).
    public mutating func next(canWait: Bool) throws -> Item {
        while true {
            if shouldStop() { return .end }
            if let newline = buffer[(start + searched)...].firstIndex(of: 0x0A) {
                var line = Array(buffer[start..<newline])
                start = newline + 1
                searched = 0
                compact()
                lineNumber += 1
                if discarding {
                    discarding = false
                    atFileStart = false  // a BOM starting the next line is that line's data
                    return .tooLong(number: lineNumber)
                }
                if line.last == 0x0D { line.removeLast() }
                return .line(stripBOM(line), number: lineNumber)
            }
            if ended {
                guard start < buffer.count || discarding else { return .end }
                var line = Array(buffer[start...])
                if line.last == 0x0D { line.removeLast() }  // a last line without "\n" may still end in "\r"
                buffer.removeAll()
                start = 0
                searched = 0
                lineNumber += 1
                if discarding {
                    discarding = false
                    atFileStart = false  // a BOM starting the next line is that line's data
                    return .tooLong(number: lineNumber)
                }
                return .line(stripBOM(line), number: lineNumber)
            }
            searched = buffer.count - start
            if buffer.count - start > maximumLineBytes {
                // Keep reading this line, but not its bytes.
                discarding = true
                buffer.removeAll(keepingCapacity: true)
                start = 0
                searched = 0
            }
            if !canWait && !readable() { return .notReady }
            try fill()
        }
    }

    private mutating func stripBOM(_ line: [UInt8]) -> [UInt8] {
        defer { atFileStart = false }
        if atFileStart && line.starts(with: [0xEF, 0xBB, 0xBF]) { return Array(line.dropFirst(3)) }
        return line
    }

    private mutating func compact() {
        if start > 1 << 16 && start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
    }

    private mutating func fill() throws {
        let n = try chunk.withUnsafeMutableBytes { try read($0) }
        precondition(n >= 0 && n <= chunk.count, "a read returns at most the buffer's size")
        if n == 0 {
            ended = true
        } else if discarding, let newline = chunk[..<n].firstIndex(of: 0x0A) {
            buffer += chunk[newline..<n]  // the rest of the long line is dropped; its ending kept
        } else if !discarding {
            buffer += chunk[..<n]
        }
    }
}
