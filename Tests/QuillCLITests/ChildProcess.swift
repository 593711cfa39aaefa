#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest

/// Everything one pipe delivers, read on a thread of its own, so that a test can wait for a line
/// (a readiness line on stderr, a first JSON line on stdout) while the process keeps running.
final class PipeCollector: @unchecked Sendable {
    private let condition = NSCondition()
    private var bytes = Data()
    private var ended = false

    init(fd: Int32) {
        Thread.detachNewThread { [self] in
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                condition.lock()
                if n > 0 { bytes.append(contentsOf: chunk[..<n]) } else { ended = true }
                condition.broadcast()
                condition.unlock()
                if n <= 0 { break }
            }
            close(fd)
        }
    }

    /// Waits until `ready` holds for what has arrived, the pipe ends, or `timeout` passes (hang
    /// detection only). Returns what has arrived and whether `ready` holds for it.
    func wait(timeout: TimeInterval = 120, until ready: (Data) -> Bool) -> (data: Data, ready: Bool) {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while !ready(bytes) && !ended {
            if !condition.wait(until: deadline) { break }
        }
        return (bytes, ready(bytes))
    }

    /// Everything, once the writer has closed the pipe (or `timeout` passed).
    func waitForEnd(timeout: TimeInterval = 120) -> (data: Data, ended: Bool) {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while !ended {
            if !condition.wait(until: deadline) { break }
        }
        return (bytes, ended)
    }
}

/// How a child process ended.
struct Finished {
    /// The exit status, or nil when a signal killed it.
    let status: Int32?
    /// The signal that killed it, if one did.
    let signal: Int32?
    let stdout: Data
    let stderr: Data
    /// The child's peak resident memory, in bytes.
    let peakRSS: Int
    /// True when the hang detection had to kill it.
    let hung: Bool

    var text: String { String(decoding: stdout, as: UTF8.self) }
    var errorText: String { String(decoding: stderr, as: UTF8.self) }
    var summary: String {
        let end = signal.map { "killed by signal \($0)" } ?? "exit \(status ?? -1)"
        return "\(end)\(hung ? " (hung)" : ""), peak RSS \(peakRSS / 1_000_000) MB, stderr: \(errorText.debugDescription.prefix(600))"
    }
}

/// `quill` started with posix_spawn: pipes the test can read and write while it runs, signals,
/// and wait4 for the exit status and the child's own peak RSS.
final class Child {
    enum Input { case null, pipe, fd(Int32) }
    enum Output { case collect, raw, fd(Int32), closed }

    let pid: pid_t
    /// Write end of the stdin pipe (`.pipe`), else -1.
    private(set) var input: Int32 = -1
    /// stdout as collected (`.collect`).
    let output: PipeCollector?
    /// Read end of the stdout pipe (`.raw`), else -1: the test reads and closes it itself.
    private(set) var rawOutput: Int32 = -1
    let errors: PipeCollector
    /// Where /usr/bin/time writes quill's peak RSS (and how it ended), when it measures it.
    private var timeReport: String?

    /// Starts `quill ARGUMENTS`. `memoryLimitMB` caps the address space (`ulimit -v`) so that a
    /// runaway allocation fails fast instead of taking the shared machine's memory; such runs also
    /// go through /usr/bin/time, which forks quill from its own small process: wait4's ru_maxrss
    /// of a posix_spawn child starts at the test runner's own peak (the spawn shares its memory
    /// until exec), so it cannot measure a quill that uses less than the runner. Signals sent
    /// with `send` would reach /usr/bin/time, so tests that signal do not limit memory.
    convenience init(_ arguments: [String], stdin: Input = .null, stdout: Output = .collect,
                     environment: [String: String] = [:], directory: String? = nil, memoryLimitMB: Int? = nil) throws {
        try self.init(bytes: arguments.map { Array($0.utf8) }, stdin: stdin, stdout: stdout, environment: environment,
                      directory: directory, memoryLimitMB: memoryLimitMB)
    }

    init(bytes arguments: [[UInt8]], stdin: Input = .null, stdout: Output = .collect,
         environment: [String: String] = [:], directory: String? = nil, memoryLimitMB: Int? = nil) throws {
        signal(SIGPIPE, SIG_IGN)  // writing to a child that has gone must not kill the test runner
        var argv: [[UInt8]] = [Array(CLI.executable.path.utf8)] + arguments
        var path = CLI.executable.path
        if memoryLimitMB != nil || directory != nil {
            var script = ""
            // AddressSanitizer reserves terabytes of address space for its shadow memory, so an
            // address-space cap would stop a sanitized quill before it starts (`make sanitize`
            // says so with QUILL_SANITIZED_BUILD); peak RSS is still measured and checked.
            let sanitized = ProcessInfo.processInfo.environment["QUILL_SANITIZED_BUILD"] != nil
            if let memoryLimitMB, !sanitized { script += "ulimit -v \(memoryLimitMB * 1024) || exit 97; " }
            if let directory { script += "cd '\(directory)' || exit 98; " }
            if memoryLimitMB != nil && FileManager.default.isExecutableFile(atPath: "/usr/bin/time") {
                let report = FileManager.default.temporaryDirectory.appendingPathComponent("quill-rss-\(UUID())").path
                timeReport = report
                script += "exec /usr/bin/time -o '\(report)' -f '%M' "
            } else {
                script += "exec "
            }
            script += #""$0" "$@""#
            argv = [Array("/bin/sh".utf8), Array("-c".utf8), Array(script.utf8)] + argv
            path = "/bin/sh"
        }
        var env = ProcessInfo.processInfo.environment
        env["QUILL_MODEL"] = nil
        for (key, value) in environment { env[key] = value }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var closeAfterSpawn: [Int32] = []
        func makePipe() throws -> (read: Int32, write: Int32) {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            return (fds[0], fds[1])
        }
        switch stdin {
        case .null: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .pipe:
            let p = try makePipe()
            posix_spawn_file_actions_adddup2(&actions, p.read, 0)
            closeAfterSpawn.append(p.read)
            input = p.write
        case .fd(let fd): posix_spawn_file_actions_adddup2(&actions, fd, 0)
        }
        var collectFD: Int32 = -1
        switch stdout {
        case .collect, .raw:
            let p = try makePipe()
            posix_spawn_file_actions_adddup2(&actions, p.write, 1)
            closeAfterSpawn.append(p.write)
            if case .raw = stdout { rawOutput = p.read } else { collectFD = p.read }
        case .fd(let fd): posix_spawn_file_actions_adddup2(&actions, fd, 1)
        case .closed: posix_spawn_file_actions_addclose(&actions, 1)
        }
        let errorPipe = try makePipe()
        posix_spawn_file_actions_adddup2(&actions, errorPipe.write, 2)
        closeAfterSpawn.append(errorPipe.write)

        // The child starts with default signal actions and nothing blocked, as from a shell.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGPIPE, SIGBUS, SIGQUIT, SIGHUP] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        // Its own process group, so that hang detection also ends whatever it started.
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        func cStrings(_ list: [[UInt8]]) -> [UnsafeMutablePointer<CChar>?] {
            list.map { bytes in
                let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
                for (i, b) in bytes.enumerated() { p[i] = CChar(bitPattern: b) }
                p[bytes.count] = 0
                return p
            } + [nil]
        }
        let cArguments = cStrings(argv)
        let cEnvironment = cStrings(env.map { Array("\($0.key)=\($0.value)".utf8) })
        defer { (cArguments + cEnvironment).forEach { $0?.deallocate() } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, cArguments, cEnvironment)
        closeAfterSpawn.forEach { close($0) }
        guard result == 0 else { throw POSIXError(.init(rawValue: result) ?? .EIO) }
        self.pid = pid
        output = collectFD >= 0 ? PipeCollector(fd: collectFD) : nil
        errors = PipeCollector(fd: errorPipe.read)
    }

    /// Writes to stdin (`.pipe`); false if the child has closed it.
    @discardableResult
    func write(_ data: Data) -> Bool {
        precondition(input >= 0, "stdin is not a pipe or is closed")
        return data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(input, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 { if errno == EINTR { continue }; return false }
                offset += n
            }
            return true
        }
    }

    /// Writes `data` `times` times to stdin from a thread of its own (stopping when the child
    /// closes it), then closes stdin.
    func feedAndClose(_ data: Data, times: Int = 1) {
        let fd = input
        input = -1
        Thread.detachNewThread {
            data.withUnsafeBytes { buffer in
                for _ in 0..<times {
                    var offset = 0
                    while offset < buffer.count {
                        let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                        if n < 0 { if errno == EINTR { continue }; return }
                        offset += n
                    }
                }
            }
            close(fd)
        }
    }

    /// Whether `signalNumber` is still pending (sent but not yet delivered) for the child.
    func isPending(_ signalNumber: Int32) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              !status.contains("State:\tZ") else { return false }  // gone, or exited and not yet reaped
        let bit = UInt64(1) << UInt64(signalNumber - 1)
        return status.split(separator: "\n").contains { line in
            guard line.hasPrefix("SigPnd:") || line.hasPrefix("ShdPnd:"),
                  let mask = UInt64(line.split(separator: "\t").last ?? "", radix: 16) else { return false }
            return mask & bit != 0
        }
    }

    func closeInput() {
        if input >= 0 { close(input); input = -1 }
    }

    func closeRawOutput() {
        if rawOutput >= 0 { close(rawOutput); rawOutput = -1 }
    }

    func send(_ signalNumber: Int32) { kill(pid, signalNumber) }

    /// The first complete stderr line (nil if stderr ended or nothing came within the hang timeout).
    func firstErrorLine(timeout: TimeInterval = 120) -> String? {
        let (data, ready) = errors.wait(timeout: timeout) { $0.contains(0x0A) }
        guard ready, let end = data.firstIndex(of: 0x0A) else { return nil }
        return String(decoding: data[..<end], as: UTF8.self)
    }

    /// Waits for the child (killing it if it is still running after `timeout`: hang detection).
    func finish(timeout: TimeInterval = 120) -> Finished {
        closeInput()
        let waiter = Waiter(pid: pid)
        var hung = false
        if !waiter.wait(timeout: timeout) {
            hung = true
            kill(-pid, SIGKILL)
            _ = waiter.wait(timeout: 600)
        }
        closeRawOutput()
        let out = output?.waitForEnd(timeout: 30).data ?? Data()
        let err = errors.waitForEnd(timeout: 30).data
        let status = waiter.status
        var exitStatus: Int32? = status & 0x7F == 0 ? (status >> 8) & 0xFF : nil
        var signalNumber: Int32? = status & 0x7F == 0 ? nil : status & 0x7F
        var peakKilobytes = waiter.maxRSSKilobytes
        if let timeReport, let report = try? String(contentsOfFile: timeReport, encoding: .utf8) {
            try? FileManager.default.removeItem(atPath: timeReport)
            // "[Command terminated by signal N | Command exited with non-zero status N]\n%M\n"
            let lines = report.split(separator: "\n")
            if let last = lines.last, let kilobytes = Int(last) { peakKilobytes = kilobytes }
            if let line = lines.first(where: { $0.hasPrefix("Command terminated by signal ") }),
               let number = Int32(line.split(separator: " ").last ?? "") {
                exitStatus = nil
                signalNumber = number
            }
        }
        return Finished(status: exitStatus, signal: signalNumber, stdout: out, stderr: err, peakRSS: peakKilobytes * 1024, hung: hung)
    }
}

/// wait4 on a thread, so that the test can give up on a hung child.
private final class Waiter: @unchecked Sendable {
    private let condition = NSCondition()
    private var done = false
    private(set) var status: Int32 = 0
    private(set) var maxRSSKilobytes = 0

    init(pid: pid_t) {
        Thread.detachNewThread { [self] in
            var status: Int32 = 0
            var usage = rusage()
            while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
            condition.lock()
            self.status = status
            maxRSSKilobytes = usage.ru_maxrss
            done = true
            condition.broadcast()
            condition.unlock()
        }
    }

    func wait(timeout: TimeInterval) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while !done {
            if !condition.wait(until: deadline) { break }
        }
        return done
    }
}
