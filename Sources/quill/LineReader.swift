#if canImport(Glibc)
import Glibc
#endif

/// Reads a file or stream one line at a time, on bytes: "\n" and "\r\n" both end a line, a
/// UTF-8 byte order mark before the first line is dropped, and lines are numbered as in the
/// file (blank ones included). Memory stays bounded by `maximumLineBytes` whatever the input:
/// the rest of a longer line is read and discarded, and the line is reported as too long.
struct LineReader {
    enum Item {
        /// A line (without its ending) and its number in the file, from 1.
        case line([UInt8], number: Int)
        /// A line longer than `maximumLineBytes`; its bytes were discarded.
        case tooLong(number: Int)
        /// No complete line is available without waiting.
        case notReady
        /// The input has ended.
        case end
    }

    private let fd: Int32
    private let name: String
    let maximumLineBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0           // first unconsumed byte of `buffer`
    private var searched = 0        // bytes from `start` already known to hold no newline
    private var ended = false
    private var lineNumber = 0
    private var discarding = false  // inside a line that is already too long
    private var atFileStart = true
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)  // one read's bytes, reused

    init(fd: Int32, name: String, maximumLineBytes: Int) {
        self.fd = fd
        self.name = name
        self.maximumLineBytes = maximumLineBytes
    }

    /// The next line. With `canWait` false, answers `.notReady` instead of blocking when the
    /// input has no complete line yet (a pipe whose writer is waiting for our output).
    mutating func next(canWait: Bool) throws(InputError) -> Item {
        while true {
            if interrupted() { return .end }
            if let newline = buffer[(start + searched)...].firstIndex(of: 0x0A) {
                var line = Array(buffer[start..<newline])
                start = newline + 1
                searched = 0
                compact()
                lineNumber += 1
                if discarding {
                    discarding = false
                    return .tooLong(number: lineNumber)
                }
                if line.last == 0x0D { line.removeLast() }
                return .line(stripBOM(line), number: lineNumber)
            }
            if ended {
                guard start < buffer.count || discarding else { return .end }
                let line = Array(buffer[start...])
                buffer.removeAll()
                start = 0
                searched = 0
                lineNumber += 1
                if discarding {
                    discarding = false
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

    /// Whether a read would return at once (data or end of input).
    private func readable() -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 0) > 0
    }

    private mutating func fill() throws(InputError) {
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR {
                    if interrupted() { return }
                    continue
                }
                if errno == EBADF && fd == 0 {
                    ended = true
                    return
                }
                throw InputError("\(name): cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                ended = true
            } else if discarding, let newline = chunk[..<n].firstIndex(of: 0x0A) {
                buffer += chunk[newline..<n]  // the rest of the long line is dropped; its ending kept
            } else if !discarding {
                buffer += chunk[..<n]
            }
            return
        }
    }
}
