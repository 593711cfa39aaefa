import Foundation

/// A float32 array owned by Quill: activations, KV cache, scratch. Allocated once and zeroed
/// with calloc (large buffers come from fresh, lazily zeroed pages, so a 75 MB KV cache costs
/// nothing until it is written), freed in `deinit`. Kernels read and write it through its pointer; callers
/// outside this module only see element access and bulk copies.
public final class FloatBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    /// Number of float32 elements.
    public let count: Int

    /// A zeroed buffer of `count` floats, or an error when the memory cannot be had. Sizes that
    /// come from a file or a flag go through here, so a large one is an error, never a crash.
    public init(allocating count: Int, for purpose: String) throws(AllocationError) {
        guard count >= 0, count <= Int.max / 8, let raw = calloc(max(count, 1), 4) else {
            throw AllocationError(purpose: purpose, bytes: count.multipliedReportingOverflow(by: 4).partialValue)
        }
        self.count = count
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    /// A zeroed buffer of `count` floats, for sizes the program itself chooses (small scratch,
    /// tests); running out of memory there is not a condition the caller can handle.
    public convenience init(count: Int) {
        do { try self.init(allocating: count, for: "a buffer") } catch { preconditionFailure("\(error)") }
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { free(pointer) }

    public subscript(index: Int) -> Float {
        get { precondition(index >= 0 && index < count, "index out of range"); return pointer[index] }
        set { precondition(index >= 0 && index < count, "index out of range"); pointer[index] = newValue }
    }

    /// Elements `offset ..< offset + length` as an array (allocates; not for the hot path).
    public func array(offset: Int = 0, length: Int? = nil) -> [Float] {
        let n = length ?? (count - offset)
        precondition(offset >= 0 && n >= 0 && offset + n <= count, "range out of bounds")
        return Array(UnsafeBufferPointer(start: pointer + offset, count: n))
    }

    /// Copies `length` elements starting at `offset` into `destination` (reusing its storage).
    public func copy(offset: Int, length: Int, into destination: inout [Float]) {
        precondition(offset >= 0 && length >= 0 && offset + length <= count, "range out of bounds")
        if destination.count != length { destination = [Float](repeating: 0, count: length) }
        destination.withUnsafeMutableBufferPointer { target in
            target.baseAddress!.update(from: pointer + offset, count: length)
        }
    }

    /// Copies elements `offset ..< offset + length` into `destination` at `destinationOffset`.
    public func copy(offset: Int, length: Int, to destination: FloatBuffer, at destinationOffset: Int) {
        precondition(offset >= 0 && length >= 0 && offset + length <= count, "source range out of bounds")
        precondition(destinationOffset >= 0 && destinationOffset + length <= destination.count,
                     "destination range out of bounds")
        (destination.pointer + destinationOffset).update(from: pointer + offset, count: length)
    }
}

/// Memory that could not be allocated, with what it was for.
public struct AllocationError: Error, CustomStringConvertible, Sendable {
    public let purpose: String
    public let bytes: Int
    public init(purpose: String, bytes: Int) {
        self.purpose = purpose
        self.bytes = bytes
    }
    public var description: String {
        let size = bytes >= 1 << 30 ? "\(bytes >> 30) GiB" : bytes >= 1 << 20 ? "\(bytes >> 20) MiB" : "\(bytes) bytes"
        return "cannot allocate \(size) for \(purpose)"
    }
}

/// A read-only float32 array that lives in memory owned by someone else (a mapped checkpoint
/// or a FloatBuffer). It keeps its owner alive, so a view never dangles.
public struct FloatView: @unchecked Sendable {
    let pointer: UnsafePointer<Float>
    /// Number of float32 elements.
    public let count: Int
    let owner: AnyObject

    init(pointer: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = pointer
        self.count = count
        self.owner = owner
    }

    /// A view of the whole buffer.
    public init(_ buffer: FloatBuffer) {
        self.init(pointer: UnsafePointer(buffer.pointer), count: buffer.count, owner: buffer)
    }

    /// Elements `offset ..< offset + length`.
    public func slice(offset: Int, count length: Int) -> FloatView {
        precondition(offset >= 0 && length >= 0 && offset + length <= count, "slice out of bounds")
        return FloatView(pointer: pointer + offset, count: length, owner: owner)
    }

    public subscript(index: Int) -> Float {
        precondition(index >= 0 && index < count, "index out of range")
        return pointer[index]
    }

    /// All elements as an array (allocates; not for the hot path).
    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// A read-only int8 array in memory owned by someone else (quantized weights in a mapping).
public struct Int8View: @unchecked Sendable {
    let pointer: UnsafePointer<Int8>
    /// Number of int8 elements.
    public let count: Int
    let owner: AnyObject

    public func slice(offset: Int, count length: Int) -> Int8View {
        precondition(offset >= 0 && length >= 0 && offset + length <= count, "slice out of bounds")
        return Int8View(pointer: pointer + offset, count: length, owner: owner)
    }

    public subscript(index: Int) -> Int8 {
        precondition(index >= 0 && index < count, "index out of range")
        return pointer[index]
    }
}

/// Owned int8 storage (for quantized weights built in memory, e.g. by tests or `quantize`).
public final class Int8Buffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Int8>
    public let count: Int

    public init(_ values: [Int8]) {
        count = values.count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
        pointer = raw.bindMemory(to: Int8.self, capacity: max(count, 1))
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.update(from: base, count: count) }
        }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    public var view: Int8View { Int8View(pointer: UnsafePointer(pointer), count: count, owner: self) }
}

/// Read-only bytes in memory owned by someone else (packed GGUF blocks in a mapping, or a
/// ByteBuffer). No alignment is assumed: GGUF aligns tensors only to 32 bytes and its blocks are
/// 18, 22, 34, 144, 176 or 210 bytes long.
public struct ByteView: @unchecked Sendable {
    let pointer: UnsafeRawPointer
    /// Number of bytes.
    public let count: Int
    let owner: AnyObject

    init(pointer: UnsafeRawPointer, count: Int, owner: AnyObject) {
        self.pointer = pointer
        self.count = count
        self.owner = owner
    }

    /// Bytes `offset ..< offset + length`.
    public func slice(offset: Int, count length: Int) -> ByteView {
        precondition(offset >= 0 && length >= 0 && offset <= count - length, "slice out of bounds")
        return ByteView(pointer: pointer + offset, count: length, owner: owner)
    }

    public subscript(index: Int) -> UInt8 {
        precondition(index >= 0 && index < count, "index out of range")
        return pointer.load(fromByteOffset: index, as: UInt8.self)
    }
}

/// Owned bytes (for blocks built in memory, e.g. by tests).
public final class ByteBuffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    public let count: Int

    public init(_ bytes: [UInt8]) {
        count = bytes.count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { pointer.copyMemory(from: base, byteCount: count) }
        }
    }

    deinit { pointer.deallocate() }

    public var view: ByteView { ByteView(pointer: UnsafeRawPointer(pointer), count: count, owner: self) }
}
