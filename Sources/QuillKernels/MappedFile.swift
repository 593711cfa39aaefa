import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a file could not be mapped.
public struct MappedFileError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// A whole file mapped read-only into memory. Weights are views into the mapping, never
/// copies, so loading costs no reads until pages are touched, and the page cache is shared.
public final class MappedFile: @unchecked Sendable {
    /// The path as given by the caller (used in messages).
    public let path: String
    /// Size of the file in bytes.
    public let byteCount: Int
    private let base: UnsafeRawPointer?

    public init(path: String) throws(MappedFileError) {
        self.path = path
        // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; it is refused
        // below as not a regular file (the flag changes nothing for regular files).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw MappedFileError(path: path, reason: MappedFile.errnoText()) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw MappedFileError(path: path, reason: MappedFile.errnoText()) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw MappedFileError(path: path, reason: "not a regular file")
        }
        byteCount = Int(info.st_size)
        if byteCount == 0 {
            base = nil
            return
        }
        let address = mmap(nil, byteCount, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw MappedFileError(path: path, reason: "cannot map: " + MappedFile.errnoText())
        }
        base = UnsafeRawPointer(address)
    }

    /// A copy of `bytes` in memory that behaves like a mapped file named `path` (for fuzzing
    /// and tests of the readers, which then need no file on disk).
    public init(bytes: [UInt8], path: String) throws(MappedFileError) {
        self.path = path
        byteCount = bytes.count
        guard !bytes.isEmpty else {
            base = nil
            return
        }
        let address = mmap(nil, bytes.count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let address, address != MAP_FAILED else {
            throw MappedFileError(path: path, reason: "cannot map: " + MappedFile.errnoText())
        }
        bytes.withUnsafeBytes { address.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        base = UnsafeRawPointer(address)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), byteCount) }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    /// The bytes `offset ..< offset + count` (for headers).
    public func bytes(at offset: Int, count: Int) -> [UInt8] {
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount, "read out of bounds")
        guard let base else { return [] }
        return Array(UnsafeRawBufferPointer(start: base + offset, count: count))
    }

    public func int32(at offset: Int) -> Int32 {
        precondition(offset >= 0 && offset + 4 <= byteCount, "read out of bounds")
        return Int32(littleEndian: base!.loadUnaligned(fromByteOffset: offset, as: Int32.self))
    }

    public func uint32(at offset: Int) -> UInt32 {
        precondition(offset >= 0 && offset + 4 <= byteCount, "read out of bounds")
        return UInt32(littleEndian: base!.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    public func uint8(at offset: Int) -> UInt8 {
        precondition(offset >= 0 && offset + 1 <= byteCount, "read out of bounds")
        return base!.load(fromByteOffset: offset, as: UInt8.self)
    }

    public func uint16(at offset: Int) -> UInt16 {
        precondition(offset >= 0 && offset + 2 <= byteCount, "read out of bounds")
        return UInt16(littleEndian: base!.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    public func uint64(at offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset + 8 <= byteCount, "read out of bounds")
        return UInt64(littleEndian: base!.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The bytes `offset ..< offset + count` as a string, or nil when they are not valid UTF-8
    /// (read in place: no intermediate array).
    public func utf8String(at offset: Int, count: Int) -> String? {
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount, "read out of bounds")
        guard let base, count > 0 else { return "" }
        return String(validating: UnsafeBufferPointer(start: (base + offset).assumingMemoryBound(to: UInt8.self),
                                                      count: count), as: UTF8.self)
    }

    /// `count` float32 values starting at byte `offset`, as a view into the mapping.
    /// A misaligned offset (possible after int8 data) is served from an aligned copy.
    public func floats(at offset: Int, count: Int) -> FloatView {
        precondition(offset >= 0 && count >= 0 && offset + count * 4 <= byteCount, "read out of bounds")
        guard let base, count > 0 else { return FloatView(FloatBuffer(count: 0)) }
        let start = base + offset
        if Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0 {
            return FloatView(pointer: start.assumingMemoryBound(to: Float.self), count: count, owner: self)
        }
        let copy = FloatBuffer(count: count)
        UnsafeMutableRawPointer(copy.pointer).copyMemory(from: start, byteCount: count * 4)
        return FloatView(copy)
    }

    /// `count` int8 values starting at byte `offset`, as a view into the mapping.
    public func int8s(at offset: Int, count: Int) -> Int8View {
        precondition(offset >= 0 && count >= 0 && offset + count <= byteCount, "read out of bounds")
        guard let base, count > 0 else { return Int8Buffer([]).view }
        return Int8View(pointer: (base + offset).assumingMemoryBound(to: Int8.self), count: count, owner: self)
    }

    /// The bytes `offset ..< offset + count` as a view into the mapping (packed GGUF blocks).
    public func byteView(at offset: Int, count: Int) -> ByteView {
        precondition(offset >= 0 && count >= 0 && offset <= byteCount - count, "read out of bounds")
        guard let base, count > 0 else { return ByteBuffer([]).view }
        return ByteView(pointer: base + offset, count: count, owner: self)
    }
}
