#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Quill

/// The file of `--batch --output FILE`: one complete JSON result line per `write`, appended in
/// completion order and fsynced at most `syncInterval` after it was written, so that a run killed
/// at any moment leaves complete lines plus at most one cut-off last line, which `--resume`
/// removes before it appends. The ids the file already holds are read once at opening.
final class ResultFile {
    let path: String
    /// The most time a written line may wait for fsync: a crash of the machine loses at most
    /// this much work, and a fast batch does not pay one fsync per line.
    static let syncInterval = 1.0
    /// A longer line in FILE is not one Quill wrote (a result holds at most a context of text,
    /// each byte escaped as 6 at most), so reading stops there instead of holding it.
    static let maximumLineBytes = 1 << 28

    private let fd: Int32
    /// Bytes of complete lines in the file: where a failed write is cut back to.
    private var length: off_t
    private var lastSync = DispatchTime.now()
    private var unsynced = false
    /// The encoded "id" of every result already in the file when it was opened.
    let doneIDs: Set<String>
    /// Bytes of a cut-off last line that opening with `resume` removed (0 if none).
    let removedBytes: Int
    /// The first write or sync failure, as a one-line reason; nothing more is written after it.
    private(set) var failure: String?

    /// Opens (or creates) `path`. Without `resume` a non-empty file is refused, so a user's file
    /// is never overwritten or appended to by mistake; with it, every line is read for its id
    /// and a cut-off last line (no "\n") is truncated away. `input` is the batch file (nil for
    /// stdin): results are never appended to it. The file is locked (flock) while open, so two
    /// runs cannot interleave their lines in it.
    init(path: String, resume: Bool, input: String?) throws(InputError) {
        self.path = path
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw InputError("\(path): cannot open for results: \(String(cString: strerror(errno)))") }
        var info = stat()
        fstat(fd, &info)
        func refuse(_ message: String) -> InputError {
            close(fd)
            return InputError(message)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw refuse("\(path): not a regular file; --output needs a file it can append to, fsync and truncate")
        }
        var inputInfo = stat()
        if let input, stat(input, &inputInfo) == 0, inputInfo.st_dev == info.st_dev, inputInfo.st_ino == info.st_ino {
            throw refuse("\(path) is the same file as the batch input; give another --output path")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            throw refuse("\(path) is being written by another quill run; wait for it to end or give another --output path")
        }
        if !resume && info.st_size > 0 {
            throw refuse("\(path) already holds \(info.st_size) bytes; give --resume to continue it, or a new --output path")
        }
        var ids = Set<String>()
        var complete: off_t = 0
        if resume && info.st_size > 0 {
            do { complete = try ResultFile.readIDs(fd: fd, path: path, into: &ids) } catch { throw refuse(error.description) }
        }
        removedBytes = Int(info.st_size - complete)
        if removedBytes > 0 {
            // A run killed inside a write left the start of a line; its request runs again.
            guard ftruncate(fd, complete) == 0, fsync(fd) == 0 else {
                throw refuse("\(path): cannot remove the cut-off last line: \(String(cString: strerror(errno)))")
            }
        }
        self.fd = fd
        length = complete
        doneIDs = ids
    }

    deinit { close(fd) }

    /// Reads every line of the open file: each complete line must be a JSON object with an
    /// "id". Returns the bytes of complete lines (a last line without "\n" is not counted).
    private static func readIDs(fd: Int32, path: String, into ids: inout Set<String>) throws(InputError) -> off_t {
        var pending: [UInt8] = []  // (bytes of the line being read so far)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)  // (one read)
        var complete: off_t = 0, offset: off_t = 0, number = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw InputError("\(path): cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return complete }
            offset += off_t(n)
            var start = 0
            while let newline = chunk[start..<n].firstIndex(of: 0x0A) {
                number += 1
                pending += chunk[start..<newline]
                guard let id = resultID(pending) else {
                    throw InputError("\(path): line \(number) is not a result line of quill --batch (a JSON object with an "
                                     + "\"id\"); --resume continues only files written by --output")
                }
                ids.insert(id)
                complete += off_t(pending.count + 1)
                pending.removeAll(keepingCapacity: true)
                start = newline + 1
            }
            pending += chunk[start..<n]
            guard pending.count <= maximumLineBytes else {
                throw InputError("\(path): line \(number + 1) is longer than \(maximumLineBytes) bytes, not a result of quill --batch")
            }
        }
    }

    /// The encoded "id" member of a result line, or nil when the line is not a JSON object with one.
    private static func resultID(_ line: [UInt8]) -> String? {
        guard case .object(let members)? = try? JSONParser.parse(line),
              let id = members.first(where: { $0.key == "id" })?.value else { return nil }
        return id.encoded
    }

    /// Appends `line` (one JSON object and its "\n") with one write, and fsyncs when the last
    /// sync is `syncInterval` old. On a failure (a full disk) the file is cut back to its
    /// complete lines, `failure` is set and false returned.
    @discardableResult
    func append(_ line: String) -> Bool {
        guard failure == nil else { return false }
        let bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            // O_APPEND: each write lands at the end. A short write (the disk filled up) is
            // followed by another for the rest, which then reports the error.
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                failure = String(cString: strerror(errno))
                // Leave only complete lines; if this fails too, --resume removes the rest.
                _ = ftruncate(fd, length)
                _ = fsync(fd)
                return false
            }
            offset += written
        }
        length += off_t(bytes.count)
        unsynced = true
        if Double(DispatchTime.now().uptimeNanoseconds - lastSync.uptimeNanoseconds) / 1e9 >= ResultFile.syncInterval {
            sync()
        }
        return failure == nil
    }

    /// Forces the lines written so far to the disk (also called at the end of the run).
    func sync() {
        guard unsynced, failure == nil else { return }
        if fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        unsynced = false
        lastSync = DispatchTime.now()
    }
}
