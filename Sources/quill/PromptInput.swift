#if canImport(Glibc)
import Glibc
#endif
import Quill
import QuillCommandLine

/// A prompt or input that cannot be read.
struct InputError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Most bytes `tokenize`, `detokenize` and `perplexity` read from a file or stdin: they have no
/// context window to size the limit by, and a larger text is more than anyone scores at once.
let textInputByteLimit = 64 << 20

/// Most bytes of a prompt for a model with `contextLength` positions: far more than the
/// context can hold (a piece of more than 64 bytes is rare), so no prompt that fits is refused,
/// while `quill < /dev/zero` stops after a bounded read.
func promptByteLimit(contextLength: Int) -> Int { max(1 << 20, min(contextLength, 1 << 24) * 64) }

/// Opens `path` for reading. Regular files, FIFOs and process substitutions (`<(…)`, which
/// are /dev/fd paths) are accepted; directories are refused by name.
func openInput(_ path: String) throws(InputError) -> Int32 {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw InputError("\(path): cannot open: \(String(cString: strerror(errno)))") }
    var info = stat()
    if fstat(fd, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
        close(fd)
        throw InputError("\(path): is a directory")
    }
    return fd
}

/// Reads everything from `fd`, refusing more than `limit` bytes as soon as they arrive (so an
/// endless stream costs a bounded read). A closed stdin (EBADF) reads as empty.
func readAll(fd: Int32, name: String, limit: Int) throws(InputError) -> [UInt8] {
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            if errno == EBADF && fd == 0 { return result }
            throw InputError("\(name): cannot read: \(String(cString: strerror(errno)))")
        }
        if n == 0 { return result }
        guard result.count + n <= limit else {
            throw InputError("\(name): input too large: more than \(groupedDigits(limit)) bytes")
        }
        result += chunk[..<n]
    }
}

/// The bytes of a text source: the argument itself, a file, or stdin (`nil`: stdin when it is
/// not a terminal, else nothing).
func readInputBytes(_ source: PromptSource?, limit: Int) throws(InputError) -> [UInt8] {
    switch source {
    case .text(let text):
        guard text.utf8.count <= limit else {
            throw InputError("the prompt is too large: more than \(groupedDigits(limit)) bytes")
        }
        return Array(text.utf8)
    case .file(let path):
        let fd = try openInput(path)
        defer { close(fd) }
        return try readAll(fd: fd, name: path, limit: limit)
    case .standardInput:
        return try readAll(fd: 0, name: "stdin", limit: limit)
    case nil:
        return isatty(0) == 1 ? [] : try readAll(fd: 0, name: "stdin", limit: limit)
    }
}

/// The prompt text from where the command line said. Like llama.cpp's -f, one trailing
/// newline of a file or of stdin is dropped, so `echo "Once upon a time" | quill` continues the line.
func readPrompt(_ source: PromptSource?, limit: Int) throws(InputError) -> String {
    var bytes = try readInputBytes(source, limit: limit)
    if case .text = source {} else if bytes.last == 0x0A { bytes.removeLast() }
    return try decodeText(bytes, name: sourceName(source))
}

/// A prompt as read for a run that can shift its context: the whole text when it is at most
/// `limit` bytes, else its first bytes (`text`) and its last bytes (`tail`), the bytes between
/// them never held in memory (`skippedBytes`).
struct PromptHeadAndTail {
    var text: String
    var tail: String?
    var skippedBytes = 0
}

/// Bytes of a long prompt's head: far more than the few tokens (`--keep`) taken from it.
let promptHeadBytes = 1 << 16

/// Reads a prompt like `readPrompt`. With `keepTail`, an input longer than `limit` is not an
/// error: only its first `promptHeadBytes` and a ring of its last `tailBytes` are kept while it
/// streams past, so memory stays flat however much is piped in (the tokenizer, too, needs
/// memory in proportion to its text: the tail is sized by the tokens it must give, not by
/// `limit`). The head is cut back to a whole character, the tail starts after its first
/// whitespace (a whole word).
func readPromptHeadAndTail(
    _ source: PromptSource?, limit: Int, keepTail: Bool, tailBytes: Int
) throws(InputError) -> PromptHeadAndTail {
    let fd: Int32
    switch source {
    case .file(let path) where keepTail: fd = try openInput(path)
    case .standardInput where keepTail: fd = 0
    case nil where keepTail && isatty(0) != 1: fd = 0
    default: return PromptHeadAndTail(text: try readPrompt(source, limit: limit))
    }
    defer { if fd != 0 { close(fd) } }
    let name = sourceName(source)
    var head: [UInt8] = []  // the first bytes read, up to limit, then cut to promptHeadBytes
    var tail: [UInt8] = []  // once past limit: the latest bytes, between tailBytes and 2 · tailBytes + a chunk
    var total = 0
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            if errno == EBADF && fd == 0 { break }
            throw InputError("\(name): cannot read: \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        total += n
        if total <= limit {
            head += chunk[..<n]
            continue
        }
        if tail.isEmpty && head.count > promptHeadBytes {
            tail = Array(head[promptHeadBytes...])
            head.removeLast(head.count - promptHeadBytes)
        }
        tail += chunk[..<n]
        if tail.count > 2 * tailBytes { tail.removeFirst(tail.count - tailBytes) }
    }
    if total <= limit {
        if head.last == 0x0A { head.removeLast() }
        return PromptHeadAndTail(text: try decodeText(head, name: name))
    }
    if tail.count > tailBytes { tail.removeFirst(tail.count - tailBytes) }
    if tail.last == 0x0A { tail.removeLast() }
    // Whole characters only: drop a character cut at the head's end and the tail's start,
    // then the tail's first (probably partial) word.
    head.removeLast(head.count - completeUTF8Prefix(head))
    let start = tail.prefix(64).firstIndex { $0 == 0x20 || $0 == 0x0A || $0 == 0x09 }.map { $0 + 1 }
        ?? (tail.firstIndex { $0 & 0xC0 != 0x80 } ?? tail.count)
    tail.removeFirst(start)
    return PromptHeadAndTail(text: try decodeText(head, name: name), tail: try decodeText(tail, name: name),
                             skippedBytes: total - head.count - tail.count)
}

/// The length of `bytes` without a UTF-8 character cut off at its end: the last lead byte's
/// sequence is dropped when fewer bytes follow it than it announces.
func completeUTF8Prefix(_ bytes: [UInt8]) -> Int {
    var start = bytes.count
    while start > 0 && bytes.count - start < 4 && bytes[start - 1] & 0xC0 == 0x80 { start -= 1 }
    guard start > 0 else { return bytes.count }
    let lead = bytes[start - 1]
    let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
    return bytes.count - (start - 1) < length ? start - 1 : bytes.count
}

/// How messages name an input source.
func sourceName(_ source: PromptSource?) -> String {
    switch source {
    case .file(let path): path
    case .text: "the prompt"
    case .standardInput, nil: "stdin"
    }
}

/// The bytes as text; invalid UTF-8 is an error naming the first bad byte and its offset.
func decodeText(_ bytes: [UInt8], name: String) throws(InputError) -> String {
    if let text = String(validating: bytes, as: UTF8.self) { return text }
    let offset = firstInvalidUTF8Offset(bytes) ?? 0
    let byte = String(bytes[offset], radix: 16, uppercase: true)
    throw InputError("\(name): not valid UTF-8 text (byte 0x\(byte) at offset \(offset))")
}

/// The offset of the first byte that does not belong to a valid UTF-8 sequence, or nil.
func firstInvalidUTF8Offset<C: Collection<UInt8>>(_ bytes: C) -> Int? {
    var decoder = Unicode.UTF8()
    var iterator = bytes.makeIterator()
    var offset = 0
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue(let scalar): offset += UTF8.width(scalar)
        case .emptyInput: return nil
        case .error: return offset
        }
    }
}
