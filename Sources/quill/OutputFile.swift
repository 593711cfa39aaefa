#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A file written in full under a temporary name in its destination's folder and then renamed
/// over the destination, so the destination is never half-written, and an existing directory,
/// device or the input itself is never replaced.
struct ReplacementFile {
    /// The destination (a symlink's target, when the destination is a symlink).
    let destination: String
    /// The temporary file being written (created empty, mode 0600 until `commit`).
    let temporary: String

    /// Checks `path` as a destination for output made from `input` and creates the temporary
    /// file. Refused: an existing destination that is not a regular file, and any destination
    /// that is the input file itself however it is spelled (same device and inode).
    init(replacing path: String, input: String) throws(InputError) {
        var inputInfo = stat()
        guard stat(input, &inputInfo) == 0 else { throw InputError("\(input): \(String(cString: strerror(errno)))") }
        var destination = path
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                let kind = (info.st_mode & S_IFMT) == S_IFDIR ? "is a directory" : "exists and is not a regular file"
                throw InputError("\(path): \(kind); give the path of a new or regular file")
            }
            guard info.st_dev != inputInfo.st_dev || info.st_ino != inputInfo.st_ino else {
                throw InputError("\(path) is the same file as the input \(input); give another output path")
            }
            // Replace what a symlink points to, and keep the link.
            if let resolved = realpath(path, nil) {
                destination = String(cString: resolved)
                free(resolved)
            }
        } else if errno != ENOENT {
            throw InputError("\(path): \(String(cString: strerror(errno)))")
        }
        let folder = URL(fileURLWithPath: destination).deletingLastPathComponent().path
        let name = URL(fileURLWithPath: destination).lastPathComponent
        var template = Array("\(folder)/.\(name).quill-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw InputError("\(folder): cannot create a file there: \(String(cString: strerror(errno)))") }
        close(fd)
        self.destination = destination
        temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Gives the finished file the usual permissions (0666 less the umask) and renames it over
    /// the destination in one step.
    func commit() throws(InputError) {
        let mask = umask(0)
        umask(mask)
        chmod(temporary, 0o666 & ~mask)
        guard rename(temporary, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            discard()
            throw InputError("\(destination): cannot replace: \(reason)")
        }
    }

    /// Removes the temporary file (after a failure or an interruption).
    func discard() { unlink(temporary) }

    /// Runs `write` on the temporary file's path and commits it; any error discards it and is
    /// rethrown. Returns false (after discarding) when `write` stops with CancellationError
    /// (Ctrl-C), leaving the destination untouched.
    func replace(_ write: (String) throws -> Void) throws -> Bool {
        do {
            try write(temporary)
            try commit()
            return true
        } catch is CancellationError {
            discard()
            return false
        } catch {
            discard()
            throw error
        }
    }
}
