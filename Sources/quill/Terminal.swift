#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// Set by SIGINT/SIGTERM; every command checks it between forward blocks or tokens.
let interruptRequested = Atomic<Bool>(false)

/// Set by the first SIGBUS, so that a fault in several threads at once prints one line.
private let mappedFileFaultReported = Atomic<Bool>(false)

/// The line printed when a mapped model file faults (SIGBUS: truncated or replaced while in
/// use). Written by `setMappedModelPath` before the model is mapped; read only by the handler.
nonisolated(unsafe) private var mappedFileFaultMessage: UnsafeMutablePointer<CChar>?
nonisolated(unsafe) private var mappedFileFaultLength = 0

/// Ctrl-C and SIGTERM ask the running command to stop at its next check (within one forward
/// block), keep what it has printed and exit with 130. The handler stays installed, so a second
/// Ctrl-C does not kill the process half-way through a clean stop. SIGPIPE is ignored so a
/// closed pipe shows up as EPIPE from write. SIGBUS (a mapped model truncated under us) ends
/// the process with a one-line error instead of a crash.
func installSignalHandlers() {
    signal(SIGPIPE, SIG_IGN)
    for signalNumber in [SIGINT, SIGTERM] {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in interruptRequested.store(true, ordering: .relaxed) }
        action.sa_flags = 0  // no SA_RESTART: a blocking read or wait returns EINTR and sees the flag
        sigemptyset(&action.sa_mask)
        sigaction(signalNumber, &action, nil)
    }
    var busAction = sigaction()
    busAction.__sigaction_handler.sa_handler = { _ in
        // Only async-signal-safe calls here: write(2), pause(2) and _exit(2). Several worker
        // threads can fault at once: the first reports and exits, the others wait for that.
        if mappedFileFaultReported.exchange(true, ordering: .relaxed) {
            while true { pause() }
        }
        if let message = mappedFileFaultMessage {
            _ = Glibc.write(2, message, mappedFileFaultLength)
        } else {
            let text = "quill: error: a mapped file changed or was truncated while in use\n"
            _ = text.withCString { Glibc.write(2, $0, strlen($0)) }
        }
        _exit(1)
    }
    sigemptyset(&busAction.sa_mask)
    sigaction(SIGBUS, &busAction, nil)
}

/// Names the model file in the SIGBUS message (called before the model is mapped).
func setMappedModelPath(_ path: String) {
    let text = "quill: error: \(printable(path)) changed or was truncated while in use\n"
    let bytes = Array(text.utf8CString)
    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
    buffer.initialize(from: bytes, count: bytes.count)
    mappedFileFaultLength = bytes.count - 1
    mappedFileFaultMessage = buffer  // the previous buffer, if any, is left: the handler may read it
}

/// Unbuffered writes to a file descriptor. A reader that has gone away (EPIPE) ends output
/// quietly; any other failure (a full disk, a closed descriptor) is remembered so the program
/// can exit with an error instead of reporting success over truncated output.
final class OutputStream: @unchecked Sendable {
    let fd: Int32
    /// The first write error other than EPIPE, as strerror text.
    private(set) var failure: String?
    /// Whether the reader has gone (EPIPE).
    private(set) var readerGone = false

    init(fd: Int32) { self.fd = fd }

    static let standardOutput = OutputStream(fd: 1)
    static let standardError = OutputStream(fd: 2)

    /// Whether output can still be written: false after EPIPE or a write error.
    var isOpen: Bool { failure == nil && !readerGone }

    /// Writes all bytes; false when the output is no longer writable (see `isOpen`).
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        guard isOpen else { return false }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE { readerGone = true } else { failure = String(cString: strerror(errno)) }
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

/// A diagnostic line on stderr, "quill: error: ...", with control characters made visible.
func printError(_ message: String) {
    OutputStream.standardError.write("quill: error: \(printable(message))\n")
}

/// `text` with control characters (newlines, ESC, DEL, C1 controls) written as escapes, so
/// bytes from file names and file contents cannot break a one-line message or reach the
/// terminal as commands.
func printable(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value < 0xA0):
            out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// A progress line on stderr, redrawn in place ("\r", clear to end of line), shown only when
/// stderr is a terminal and not turned off: a pipe or a log file gets no progress bytes.
final class ProgressLine {
    let enabled: Bool
    private let start = DispatchTime.now()
    private var lastDraw: UInt64 = 0
    private var drawn = false

    init(disabled: Bool = false) { enabled = !disabled && OutputStream.standardError.isTerminal }

    /// Redraws `text` with the seconds since start, at most ten times a second.
    func update(_ text: @autoclosure () -> String) {
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard now - lastDraw >= 100_000_000 else { return }
        lastDraw = now
        drawn = true
        let elapsed = Double(now - start.uptimeNanoseconds) / 1e9
        OutputStream.standardError.write("\r\u{1b}[K" + text() + String(format: " (%.1f s)", elapsed))
    }

    /// Clears the line, so that what follows on stderr starts on a clean line.
    func finish() {
        if drawn { OutputStream.standardError.write("\r\u{1b}[K") }
        drawn = false
    }
}
