#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Set by SIGINT/SIGTERM; the generation loop checks it between tokens.
let interruptRequested = Atomic<Bool>(false)

/// Ctrl-C (and SIGTERM) ask generation to stop after the current token, keeping what was
/// printed; a second Ctrl-C kills at once (the handler resets itself). SIGPIPE is ignored so a
/// closed pipe shows up as EPIPE from write, which ends the program quietly.
func installSignalHandlers() {
    signal(SIGPIPE, SIG_IGN)
    for signalNumber in [SIGINT, SIGTERM] {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in interruptRequested.store(true, ordering: .relaxed) }
        action.sa_flags = Int32(truncatingIfNeeded: SA_RESETHAND)
        sigemptyset(&action.sa_mask)
        sigaction(signalNumber, &action, nil)
    }
}

/// Unbuffered writes to a file descriptor that report a closed reader instead of dying.
struct OutputStream {
    let fd: Int32
    static let standardOutput = OutputStream(fd: 1)
    static let standardError = OutputStream(fd: 2)

    /// Writes all bytes; false when the reader has gone (EPIPE) or the write failed.
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }

    @discardableResult
    func write(_ text: String) -> Bool { write(Array(text.utf8)) }

    var isTerminal: Bool { isatty(fd) == 1 }
}

/// A diagnostic line on stderr, "quill: error: ...".
func printError(_ message: String) {
    OutputStream.standardError.write("quill: error: \(message)\n")
}

/// Reads all of a file descriptor (stdin), or nil on a read error.
func readAll(fd: Int32) -> [UInt8]? {
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return errno == EBADF ? result : nil  // a closed stdin reads as empty
        }
        if n == 0 { return result }
        result += chunk[..<n]
    }
}
