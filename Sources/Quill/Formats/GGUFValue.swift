/// The value types of GGUF metadata, by their id in the file.
public enum GGUFValueType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case uint8 = 0, int8, uint16, int16, uint32, int32, float32, bool, string, array, uint64, int64, float64

    /// Bytes of one value in the file; nil for strings and arrays (a length comes first).
    var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64: 8
        case .string, .array: nil
        }
    }

    /// The fewest bytes one value of this type takes (a string: its length; an array: its
    /// element type and count), which bounds how many elements an array can claim.
    var minimumSize: Int {
        fixedSize ?? (self == .string ? 8 : 12)
    }

    public var description: String { name }

    var name: String {
        switch self {
        case .uint8: "uint8"
        case .int8: "int8"
        case .uint16: "uint16"
        case .int16: "int16"
        case .uint32: "uint32"
        case .int32: "int32"
        case .float32: "float32"
        case .bool: "bool"
        case .string: "string"
        case .array: "array"
        case .uint64: "uint64"
        case .int64: "int64"
        case .float64: "float64"
        }
    }
}

/// A GGUF metadata array: one element type for all its elements, held as a typed Swift array
/// (a million-entry uint8 array costs a megabyte, not a million enum values). Arrays of arrays
/// hold each inner array with its own element type, as the file does.
public enum GGUFArray: Equatable, Sendable {
    case uint8([UInt8])
    case int8([Int8])
    case uint16([UInt16])
    case int16([Int16])
    case uint32([UInt32])
    case int32([Int32])
    case float32([Float])
    case bool([Bool])
    case string([String])
    case uint64([UInt64])
    case int64([Int64])
    case float64([Double])
    case array([GGUFArray])

    public var count: Int {
        switch self {
        case .uint8(let a): a.count
        case .int8(let a): a.count
        case .uint16(let a): a.count
        case .int16(let a): a.count
        case .uint32(let a): a.count
        case .int32(let a): a.count
        case .float32(let a): a.count
        case .bool(let a): a.count
        case .string(let a): a.count
        case .uint64(let a): a.count
        case .int64(let a): a.count
        case .float64(let a): a.count
        case .array(let a): a.count
        }
    }

    public var elementType: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .float32: .float32
        case .bool: .bool
        case .string: .string
        case .uint64: .uint64
        case .int64: .int64
        case .float64: .float64
        case .array: .array
        }
    }

    /// "array of string", "array of array of int32" (an array of arrays is named after its
    /// first element; an empty one is "array of array").
    public var typeName: String {
        if case .array(let inner) = self, let first = inner.first { return "array of " + first.typeName }
        return "array of " + elementType.name
    }

    /// The elements as integers when the element type is an integer type and every value fits
    /// in `Int` (uint64 values above `Int.max` do not); nil otherwise.
    public var integers: [Int]? {
        switch self {
        case .uint8(let a): a.map(Int.init)
        case .int8(let a): a.map(Int.init)
        case .uint16(let a): a.map(Int.init)
        case .int16(let a): a.map(Int.init)
        case .uint32(let a): a.map(Int.init)
        case .int32(let a): a.map(Int.init)
        case .int64(let a): a.map(Int.init)
        case .uint64(let a): a.allSatisfy { $0 <= UInt64(Int.max) } ? a.map { Int($0) } : nil
        case .float32, .bool, .string, .float64, .array: nil
        }
    }
}

/// One GGUF metadata value.
public enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8)
    case int8(Int8)
    case uint16(UInt16)
    case int16(Int16)
    case uint32(UInt32)
    case int32(Int32)
    case float32(Float)
    case bool(Bool)
    case string(String)
    case array(GGUFArray)
    case uint64(UInt64)
    case int64(Int64)
    case float64(Double)

    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .float32: .float32
        case .bool: .bool
        case .string: .string
        case .array: .array
        case .uint64: .uint64
        case .int64: .int64
        case .float64: .float64
        }
    }

    /// "uint32", "string", "array of float32": how messages name the type.
    public var typeName: String {
        if case .array(let array) = self { return array.typeName }
        return type.name
    }

    /// The value as an integer when it is of an integer type and fits in `Int`; nil otherwise.
    public var integer: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .int64(let v): Int(v)
        case .uint64(let v): v <= UInt64(Int.max) ? Int(v) : nil
        case .float32, .bool, .string, .array, .float64: nil
        }
    }
}

/// One metadata entry, in file order.
public struct GGUFMetadataEntry: Equatable, Sendable {
    public let key: String
    public let value: GGUFValue
}
