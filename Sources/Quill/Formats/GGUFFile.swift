import QuillKernels

/// Where one tensor lies in a GGUF file.
public struct GGUFTensorInfo: Equatable, Sendable {
    public let name: String
    /// ggml order: `dimensions[0]` is the row length (the fastest-varying index), so a matrix
    /// of `out` rows of `in` values is `[in, out]`. One to four entries, each at least 1.
    public let dimensions: [Int]
    public let type: GGUFTensorType
    /// Offset of the data from the start of the data section, as stored (a multiple of the
    /// alignment).
    public let offset: Int
    /// Offset of the data from the start of the file.
    public let dataOffset: Int
    /// Bytes of data: rows × (row length / block size) × bytes per block.
    public let byteCount: Int
    /// Values in the tensor (the product of the dimensions).
    public let elementCount: Int
}

/// A GGUF file (versions 2 and 3, little-endian), memory-mapped: its metadata and the
/// location of every tensor, validated against the file's size when opened. This is the
/// container only; what the keys and tensors mean (the model, the tokenizer) is read on top.
///
/// Layout: magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata count, the
/// metadata entries (string key, uint32 value type, value), the tensor infos (string name,
/// uint32 dimension count, uint64 dimensions, uint32 ggml type, uint64 offset), padding to the
/// alignment, then the tensor data. Strings are a uint64 byte length and UTF-8 bytes.
public struct GGUFFile: Sendable {
    public static let magic: UInt32 = 0x4655_4747  // "GGUF" read as a little-endian uint32
    public static let defaultAlignment = 32
    /// Deepest array nesting accepted (an array of arrays is 2); real files use 1.
    public static let maximumArrayDepth = 8
    /// Longest tensor name, in bytes (the GGUF specification's limit).
    public static let maximumTensorNameBytes = 64
    /// Longest metadata key, in bytes (the GGUF specification's limit).
    public static let maximumKeyBytes = 65_535

    public let path: String
    /// 2 or 3 (the two differ only for big-endian files, which Quill does not read).
    public let version: Int
    /// `general.alignment`, else 32: tensor data offsets are multiples of it.
    public let alignment: Int
    /// Metadata entries in file order.
    public let metadata: [GGUFMetadataEntry]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// Start of the data section (the end of the tensor infos, rounded up to the alignment).
    public let dataOffset: Int
    /// The mapping: tensor data are views into it (`file.floats(at: tensor.dataOffset, ...)`).
    public let file: MappedFile
    private let metadataIndex: [String: Int]
    private let tensorIndex: [String: Int]

    /// Size of the file in bytes.
    public var byteCount: Int { file.byteCount }

    /// Maps and validates the GGUF file at `path`.
    public init(path: String) throws(CheckpointError) {
        try self.init(file: try MappedFile.checkpoint(path: path))
    }

    /// Validates a GGUF file held in memory (`bytes`), named `path` in messages: the same
    /// checks as a file, for tests and fuzzing.
    public init(bytes: [UInt8], path: String) throws(CheckpointError) {
        try self.init(file: try MappedFile.checkpoint(bytes: bytes, path: path))
    }

    /// Validates the GGUF file in `file`. Every count and length is checked against the bytes
    /// left before anything is allocated from it, so no input can trap or exhaust memory.
    public init(file: MappedFile) throws(CheckpointError) {
        self.file = file
        path = file.path
        var reader = GGUFByteReader(file: file)

        guard file.byteCount >= 24 else {
            throw reader.error("file is \(groupedDigits(file.byteCount)) bytes, too short for a GGUF header (24 bytes)")
        }
        let magic = try reader.uint32("the magic")
        guard magic == GGUFFile.magic else {
            throw reader.error("not a GGUF file (it starts with \(hexBytes(magic)), not \"GGUF\")")
        }
        let version = try reader.uint32("the version")
        switch version {
        case 2, 3: break
        case 1: throw reader.error("GGUF version 1 is not supported (Quill reads versions 2 and 3)")
        case _ where version.byteSwapped == 2 || version.byteSwapped == 3:
            throw reader.error("a big-endian GGUF file, which Quill does not read")
        default: throw reader.error("unknown GGUF version \(version) (Quill reads versions 2 and 3)")
        }
        self.version = Int(version)

        // Bounds before allocation: a metadata entry takes at least 13 bytes (key length,
        // one key byte, value type, a one-byte value) and a tensor info at least 33.
        let tensorCount = try reader.uint64("the tensor count")
        let metadataCount = try reader.uint64("the metadata count")
        guard metadataCount <= UInt64(reader.remaining / 13) else {
            throw reader.error("the metadata count in the header, \(metadataCount), is more than the "
                + "\(groupedDigits(reader.remaining)) bytes after it can hold")
        }
        guard tensorCount <= UInt64(reader.remaining / 33) else {
            throw reader.error("the tensor count in the header, \(tensorCount), is more than the "
                + "\(groupedDigits(reader.remaining)) bytes after it can hold")
        }

        var metadata: [GGUFMetadataEntry] = []
        var metadataIndex: [String: Int] = [:]
        metadata.reserveCapacity(Int(metadataCount))
        for number in 0..<Int(metadataCount) {
            let key = try reader.string("the key of metadata entry \(number)", maximumBytes: GGUFFile.maximumKeyBytes)
            guard !key.isEmpty else { throw reader.error("metadata entry \(number) has an empty key") }
            guard metadataIndex[key] == nil else { throw reader.error("metadata key \(quoted(key)) appears twice") }
            let typeID = try reader.uint32("the value type of \(quoted(key))")
            let value = try reader.value(typeID: typeID, key: key, depth: 0)
            metadataIndex[key] = metadata.count
            metadata.append(GGUFMetadataEntry(key: key, value: value))
        }

        var alignment = GGUFFile.defaultAlignment
        if let index = metadataIndex["general.alignment"] {
            guard case .uint32(let value) = metadata[index].value else {
                throw reader.error("general.alignment is \(metadata[index].value.typeName), expected uint32")
            }
            guard value != 0 && value & (value - 1) == 0 else {
                throw reader.error("general.alignment is \(value); it must be a power of two")
            }
            alignment = Int(value)
        }

        var tensors: [GGUFTensorInfo] = []
        var tensorIndex: [String: Int] = [:]
        var relativeOffsets: [UInt64] = []  // checked once the data section's start is known
        tensors.reserveCapacity(Int(tensorCount))
        relativeOffsets.reserveCapacity(Int(tensorCount))
        for number in 0..<Int(tensorCount) {
            let name = try reader.string("the name of tensor \(number)", maximumBytes: GGUFFile.maximumTensorNameBytes)
            guard !name.isEmpty else { throw reader.error("tensor \(number) has an empty name") }
            guard tensorIndex[name] == nil else { throw reader.error("tensor name \(quoted(name)) appears twice") }
            let what = "tensor \(quoted(name))"
            let dimensionCount = try reader.uint32("the dimension count of \(what)")
            guard (1...4).contains(dimensionCount) else {
                throw reader.error("\(what) has \(dimensionCount) dimensions (GGUF allows 1 to 4)")
            }
            var dimensions: [Int] = []
            var elementCount = 1
            for axis in 0..<Int(dimensionCount) {
                let size = try reader.uint64("dimension \(axis) of \(what)")
                guard size >= 1 else { throw reader.error("dimension \(axis) of \(what) is 0") }
                guard size <= UInt64(Int.max) else {
                    throw reader.error("dimension \(axis) of \(what) is \(size), too large")
                }
                let (product, overflow) = elementCount.multipliedReportingOverflow(by: Int(size))
                guard !overflow else { throw reader.error("\(what) has too many elements (their count overflows)") }
                elementCount = product
                dimensions.append(Int(size))
            }
            let type = GGUFTensorType(id: try reader.uint32("the type of \(what)"))
            guard let blockSize = type.blockSize, let bytesPerBlock = type.bytesPerBlock else {
                throw reader.error("\(what) has unknown ggml type \(type.id)")
            }
            guard dimensions[0] % blockSize == 0 else {
                throw reader.error("\(what) has rows of \(dimensions[0]) values, not a multiple of "
                    + "\(type.name)'s block of \(blockSize)")
            }
            let (byteCount, sizeOverflow) = (elementCount / blockSize).multipliedReportingOverflow(by: bytesPerBlock)
            guard !sizeOverflow else { throw reader.error("\(what) is too large (its byte count overflows)") }
            let offset = try reader.uint64("the offset of \(what)")
            guard offset % UInt64(alignment) == 0 else {
                throw reader.error("\(what) has offset \(offset), not a multiple of the alignment \(alignment)")
            }
            tensorIndex[name] = tensors.count
            relativeOffsets.append(offset)
            // dataOffset is filled in below, once the end of the tensor infos is known.
            tensors.append(GGUFTensorInfo(name: name, dimensions: dimensions, type: type, offset: 0, dataOffset: 0,
                                          byteCount: byteCount, elementCount: elementCount))
        }

        // The data section starts at the end of the tensor infos rounded up to the alignment.
        let end = reader.offset
        let dataOffset = end + (alignment - end % alignment) % alignment
        let fileSize = file.byteCount
        for (number, relative) in relativeOffsets.enumerated() {
            let t = tensors[number]
            // In subtractions: no sum of a stored offset and a size can overflow.
            guard relative <= UInt64(fileSize), dataOffset <= fileSize - Int(relative),
                  t.byteCount <= fileSize - dataOffset - Int(relative) else {
                throw reader.error("tensor \(quoted(t.name)) (\(groupedDigits(t.byteCount)) bytes at offset "
                    + "\(relative) of the data section, which starts at byte \(groupedDigits(dataOffset))) "
                    + "runs past the end of the file (\(groupedDigits(fileSize)) bytes)")
            }
            tensors[number] = GGUFTensorInfo(name: t.name, dimensions: t.dimensions, type: t.type,
                                             offset: Int(relative), dataOffset: dataOffset + Int(relative),
                                             byteCount: t.byteCount, elementCount: t.elementCount)
        }
        let byStart = tensors.indices.sorted { (tensors[$0].offset, $0) < (tensors[$1].offset, $1) }
        for (a, b) in zip(byStart, byStart.dropFirst()) where tensors[a].offset + tensors[a].byteCount > tensors[b].offset {
            throw reader.error("tensors \(quoted(tensors[a].name)) and \(quoted(tensors[b].name)) overlap "
                + "(bytes \(tensors[a].offset)..<\(tensors[a].offset + tensors[a].byteCount) and "
                + "\(tensors[b].offset)..<\(tensors[b].offset + tensors[b].byteCount) of the data section)")
        }

        self.alignment = alignment
        self.metadata = metadata
        self.metadataIndex = metadataIndex
        self.tensors = tensors
        self.tensorIndex = tensorIndex
        self.dataOffset = dataOffset
    }

    // MARK: - Tensors

    /// The tensor named `name`, or nil.
    public func tensorIfPresent(_ name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The tensor named `name`; its absence is an error naming it.
    public func tensor(_ name: String) throws(CheckpointError) -> GGUFTensorInfo {
        guard let tensor = tensorIfPresent(name) else { throw error("tensor \(quoted(name)) is missing") }
        return tensor
    }

    /// Refuses a tensor whose type Quill's kernels do not read, naming the tensor and the type.
    public func requireReadable(_ tensor: GGUFTensorInfo) throws(CheckpointError) {
        guard tensor.type.isReadByQuill else {
            let names = GGUFTensorType.readByQuill.map(\.name).joined(separator: ", ")
            throw error("tensor \(quoted(tensor.name)) is \(tensor.type.name); Quill does not read this type "
                + "(it reads \(names))")
        }
    }

    // MARK: - Metadata

    /// The value of `key`, or nil.
    public func value(_ key: String) -> GGUFValue? {
        metadataIndex[key].map { metadata[$0].value }
    }

    public func contains(_ key: String) -> Bool { metadataIndex[key] != nil }

    /// An error about this file (for readers built on the container).
    public func error(_ problem: String) -> CheckpointError {
        CheckpointError(path: path, problem: problem)
    }

    /// The value of `key` converted by `extract`, nil when the key is absent; a value of
    /// another type is an error naming the key, the expected and the actual type.
    private func typed<T>(_ key: String, _ expected: String, _ extract: (GGUFValue) -> T?) throws(CheckpointError) -> T? {
        guard let value = value(key) else { return nil }
        guard let result = extract(value) else {
            throw error("metadata \(quoted(key)) is \(value.typeName), expected \(expected)")
        }
        return result
    }

    private func required<T>(_ key: String, _ value: T?) throws(CheckpointError) -> T {
        guard let value else { throw error("metadata \(quoted(key)) is missing") }
        return value
    }

    public func uint32IfPresent(_ key: String) throws(CheckpointError) -> UInt32? {
        try typed(key, "uint32") { if case .uint32(let v) = $0 { v } else { nil } }
    }
    public func int32IfPresent(_ key: String) throws(CheckpointError) -> Int32? {
        try typed(key, "int32") { if case .int32(let v) = $0 { v } else { nil } }
    }
    public func uint64IfPresent(_ key: String) throws(CheckpointError) -> UInt64? {
        try typed(key, "uint64") { if case .uint64(let v) = $0 { v } else { nil } }
    }
    public func float32IfPresent(_ key: String) throws(CheckpointError) -> Float? {
        try typed(key, "float32") { if case .float32(let v) = $0 { v } else { nil } }
    }
    public func float64IfPresent(_ key: String) throws(CheckpointError) -> Double? {
        try typed(key, "float64") { if case .float64(let v) = $0 { v } else { nil } }
    }
    public func boolIfPresent(_ key: String) throws(CheckpointError) -> Bool? {
        try typed(key, "bool") { if case .bool(let v) = $0 { v } else { nil } }
    }
    public func stringIfPresent(_ key: String) throws(CheckpointError) -> String? {
        try typed(key, "string") { if case .string(let v) = $0 { v } else { nil } }
    }
    /// Any integer type whose value fits in `Int` (writers differ in which they use for counts).
    public func integerIfPresent(_ key: String) throws(CheckpointError) -> Int? {
        try typed(key, "an integer that fits in 64 bits") { $0.integer }
    }
    public func stringArrayIfPresent(_ key: String) throws(CheckpointError) -> [String]? {
        try typed(key, "array of string") { if case .array(.string(let v)) = $0 { v } else { nil } }
    }
    public func float32ArrayIfPresent(_ key: String) throws(CheckpointError) -> [Float]? {
        try typed(key, "array of float32") { if case .array(.float32(let v)) = $0 { v } else { nil } }
    }
    public func int32ArrayIfPresent(_ key: String) throws(CheckpointError) -> [Int32]? {
        try typed(key, "array of int32") { if case .array(.int32(let v)) = $0 { v } else { nil } }
    }
    /// An array of any integer type whose values fit in `Int`.
    public func integerArrayIfPresent(_ key: String) throws(CheckpointError) -> [Int]? {
        try typed(key, "an array of integers") { if case .array(let a) = $0 { a.integers } else { nil } }
    }

    public func uint32(_ key: String) throws(CheckpointError) -> UInt32 { try required(key, uint32IfPresent(key)) }
    public func int32(_ key: String) throws(CheckpointError) -> Int32 { try required(key, int32IfPresent(key)) }
    public func uint64(_ key: String) throws(CheckpointError) -> UInt64 { try required(key, uint64IfPresent(key)) }
    public func float32(_ key: String) throws(CheckpointError) -> Float { try required(key, float32IfPresent(key)) }
    public func float64(_ key: String) throws(CheckpointError) -> Double { try required(key, float64IfPresent(key)) }
    public func bool(_ key: String) throws(CheckpointError) -> Bool { try required(key, boolIfPresent(key)) }
    public func string(_ key: String) throws(CheckpointError) -> String { try required(key, stringIfPresent(key)) }
    public func integer(_ key: String) throws(CheckpointError) -> Int { try required(key, integerIfPresent(key)) }
    public func stringArray(_ key: String) throws(CheckpointError) -> [String] {
        try required(key, stringArrayIfPresent(key))
    }
    public func float32Array(_ key: String) throws(CheckpointError) -> [Float] {
        try required(key, float32ArrayIfPresent(key))
    }
    public func int32Array(_ key: String) throws(CheckpointError) -> [Int32] {
        try required(key, int32ArrayIfPresent(key))
    }
    public func integerArray(_ key: String) throws(CheckpointError) -> [Int] {
        try required(key, integerArrayIfPresent(key))
    }
}

/// A key or name in a message: quoted, and cut short when long (a key may be 64 KiB).
func quoted(_ text: String) -> String {
    text.count <= 80 ? "'\(text)'" : "'\(text.prefix(80))…'"
}

/// The magic as its four bytes in file order, "0x7f 0x45 0x4c 0x46".
private func hexBytes(_ value: UInt32) -> String {
    (0..<4).map { shift in
        let byte = UInt8(truncatingIfNeeded: value >> (8 * UInt32(shift)))
        return "0x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
    }.joined(separator: " ")
}

/// Reads GGUF fields in order from a mapping, checking each against the bytes left.
private struct GGUFByteReader {
    let file: MappedFile
    var offset = 0

    var remaining: Int { file.byteCount - offset }

    func error(_ problem: String) -> CheckpointError {
        CheckpointError(path: file.path, problem: problem)
    }

    /// Claims `count` bytes (`count` ≥ 0) and returns where they start.
    mutating func take(_ count: Int, _ what: @autoclosure () -> String) throws(CheckpointError) -> Int {
        guard count <= remaining else {
            throw error("\(what()) at byte \(groupedDigits(offset)) runs past the end of the file "
                + "(\(groupedDigits(file.byteCount)) bytes)")
        }
        defer { offset += count }
        return offset
    }

    mutating func uint8(_ what: @autoclosure () -> String) throws(CheckpointError) -> UInt8 {
        file.uint8(at: try take(1, what()))
    }
    mutating func uint16(_ what: @autoclosure () -> String) throws(CheckpointError) -> UInt16 {
        file.uint16(at: try take(2, what()))
    }
    mutating func uint32(_ what: @autoclosure () -> String) throws(CheckpointError) -> UInt32 {
        file.uint32(at: try take(4, what()))
    }
    mutating func uint64(_ what: @autoclosure () -> String) throws(CheckpointError) -> UInt64 {
        file.uint64(at: try take(8, what()))
    }

    /// A length (uint64) of items of at least `minimumSize` bytes each, checked against the
    /// bytes left so that it can be allocated.
    mutating func count(_ what: @autoclosure () -> String, minimumSize: Int) throws(CheckpointError) -> Int {
        let count = try uint64(what())
        guard count <= UInt64(remaining / minimumSize) else {
            throw error("\(what()) is \(count), more than the \(groupedDigits(remaining)) bytes left in the file hold")
        }
        return Int(count)
    }

    mutating func string(_ what: @autoclosure () -> String, maximumBytes: Int = .max) throws(CheckpointError) -> String {
        let length = try count("the length of \(what())", minimumSize: 1)
        guard length <= maximumBytes else {
            throw error("\(what()) is \(groupedDigits(length)) bytes long (at most \(groupedDigits(maximumBytes)))")
        }
        let start = try take(length, what())
        guard let text = file.utf8String(at: start, count: length) else {
            throw error("\(what()) is not valid UTF-8")
        }
        return text
    }

    /// A value of type `typeID` (of metadata `key`), `depth` arrays deep.
    mutating func value(typeID: UInt32, key: String, depth: Int) throws(CheckpointError) -> GGUFValue {
        guard let type = GGUFValueType(rawValue: typeID) else {
            throw error("metadata \(quoted(key)) has unknown value type \(typeID)")
        }
        let what = "the value of \(quoted(key))"
        switch type {
        case .uint8: return .uint8(try uint8(what))
        case .int8: return .int8(Int8(bitPattern: try uint8(what)))
        case .uint16: return .uint16(try uint16(what))
        case .int16: return .int16(Int16(bitPattern: try uint16(what)))
        case .uint32: return .uint32(try uint32(what))
        case .int32: return .int32(Int32(bitPattern: try uint32(what)))
        case .float32: return .float32(Float(bitPattern: try uint32(what)))
        case .uint64: return .uint64(try uint64(what))
        case .int64: return .int64(Int64(bitPattern: try uint64(what)))
        case .float64: return .float64(Double(bitPattern: try uint64(what)))
        case .bool: return .bool(try bool(uint8(what), key: key))
        case .string: return .string(try string(what))
        case .array: return .array(try array(key: key, depth: depth + 1))
        }
    }

    func bool(_ byte: UInt8, key: String) throws(CheckpointError) -> Bool {
        guard byte <= 1 else { throw error("metadata \(quoted(key)) has bool value \(byte) (must be 0 or 1)") }
        return byte == 1
    }

    /// An array (element type, count, elements) of metadata `key`, nested `depth` deep (1 for
    /// a value that is an array).
    mutating func array(key: String, depth: Int) throws(CheckpointError) -> GGUFArray {
        guard depth <= GGUFFile.maximumArrayDepth else {
            throw error("metadata \(quoted(key)) nests arrays more than \(GGUFFile.maximumArrayDepth) deep")
        }
        let typeID = try uint32("the element type of \(quoted(key))")
        guard let type = GGUFValueType(rawValue: typeID) else {
            throw error("metadata \(quoted(key)) is an array of unknown value type \(typeID)")
        }
        let what = "the elements of \(quoted(key))"
        let n = try count("the length of \(quoted(key))", minimumSize: type.minimumSize)
        // Fixed-size elements are claimed at once, then read in place.
        let start = try take(n * (type.fixedSize ?? 0), what)
        switch type {
        case .uint8: return .uint8(file.bytes(at: start, count: n))
        case .int8: return .int8(file.bytes(at: start, count: n).map { Int8(bitPattern: $0) })
        case .uint16: return .uint16((0..<n).map { file.uint16(at: start + 2 * $0) })
        case .int16: return .int16((0..<n).map { Int16(bitPattern: file.uint16(at: start + 2 * $0)) })
        case .uint32: return .uint32((0..<n).map { file.uint32(at: start + 4 * $0) })
        case .int32: return .int32((0..<n).map { Int32(bitPattern: file.uint32(at: start + 4 * $0)) })
        case .float32: return .float32((0..<n).map { Float(bitPattern: file.uint32(at: start + 4 * $0)) })
        case .uint64: return .uint64((0..<n).map { file.uint64(at: start + 8 * $0) })
        case .int64: return .int64((0..<n).map { Int64(bitPattern: file.uint64(at: start + 8 * $0)) })
        case .float64: return .float64((0..<n).map { Double(bitPattern: file.uint64(at: start + 8 * $0)) })
        case .bool:
            var values: [Bool] = []
            values.reserveCapacity(n)
            for index in 0..<n { values.append(try bool(file.uint8(at: start + index), key: key)) }
            return .bool(values)
        case .string:
            var values: [String] = []
            values.reserveCapacity(n)
            for index in 0..<n { values.append(try string("element \(index) of \(quoted(key))")) }
            return .string(values)
        case .array:
            var values: [GGUFArray] = []
            values.reserveCapacity(n)
            for _ in 0..<n { values.append(try array(key: key, depth: depth + 1)) }
            return .array(values)
        }
    }
}
