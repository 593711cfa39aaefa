import QuillKernels

/// The storage type a GGUF tensor info declares, by its id (the numbering of ggml's `enum
/// ggml_type`), whether or not Quill computes with it; `decoded` is the kernels' type for the
/// ones it does.
/// Every known type has a name for messages ("IQ2_XS") and its block layout: `blockSize`
/// consecutive values of a row are stored in `bytesPerBlock` bytes.
public struct GGUFTensorType: Hashable, Sendable, CustomStringConvertible {
    /// The id stored in the file.
    public let id: UInt32

    public init(id: UInt32) { self.id = id }

    public static let f32 = GGUFTensorType(id: 0)
    public static let f16 = GGUFTensorType(id: 1)
    public static let q4_0 = GGUFTensorType(id: 2)
    public static let q5_0 = GGUFTensorType(id: 6)
    public static let q8_0 = GGUFTensorType(id: 8)
    public static let q4_K = GGUFTensorType(id: 12)
    public static let q5_K = GGUFTensorType(id: 13)
    public static let q6_K = GGUFTensorType(id: 14)
    public static let bf16 = GGUFTensorType(id: 30)

    /// The types Quill's kernels read; a tensor of any other known type loads as a container
    /// entry, and the model reader refuses it by name.
    public static let readByQuill: [GGUFTensorType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q5_0, .q4_K, .q5_K, .q6_K]

    /// The kernels' type for this id, when Quill decodes it.
    public var decoded: GGMLType? { GGMLType(rawValue: Int(id)) }

    /// (name, values per block, bytes per block), indexed by id; nil for ids ggml never used or
    /// retired (4, 5: Q4_2, Q4_3; 31…33 and 36…38: repacked layouts no longer written to files).
    /// K-quants and most i-quants use 256-value super-blocks. Source: gguf-py's `GGML_QUANT_SIZES`.
    private static let table: [(name: String, blockSize: Int, bytesPerBlock: Int)?] = [
        ("F32", 1, 4),                    // 0
        ("F16", 1, 2),                    // 1
        ("Q4_0", 32, 18),                 // 2: f16 scale + 16 bytes of nibbles
        ("Q4_1", 32, 20),                 // 3
        nil, nil,                         // 4, 5
        ("Q5_0", 32, 22),                 // 6
        ("Q5_1", 32, 24),                 // 7
        ("Q8_0", 32, 34),                 // 8: f16 scale + 32 int8
        ("Q8_1", 32, 40),                 // 9
        ("Q2_K", 256, 84),                // 10
        ("Q3_K", 256, 110),               // 11
        ("Q4_K", 256, 144),               // 12
        ("Q5_K", 256, 176),               // 13
        ("Q6_K", 256, 210),               // 14
        ("Q8_K", 256, 292),               // 15
        ("IQ2_XXS", 256, 66),             // 16
        ("IQ2_XS", 256, 74),              // 17
        ("IQ3_XXS", 256, 98),             // 18
        ("IQ1_S", 256, 50),               // 19
        ("IQ4_NL", 32, 18),               // 20
        ("IQ3_S", 256, 110),              // 21
        ("IQ2_S", 256, 82),               // 22
        ("IQ4_XS", 256, 136),             // 23
        ("I8", 1, 1),                     // 24
        ("I16", 1, 2),                    // 25
        ("I32", 1, 4),                    // 26
        ("I64", 1, 8),                    // 27
        ("F64", 1, 8),                    // 28
        ("IQ1_M", 256, 56),               // 29
        ("BF16", 1, 2),                   // 30
        nil, nil, nil,                    // 31…33
        ("TQ1_0", 256, 54),               // 34
        ("TQ2_0", 256, 66),               // 35
        nil, nil, nil,                    // 36…38
        ("MXFP4", 32, 17),                // 39
        ("NVFP4", 64, 36),                // 40
        ("Q1_0", 128, 18),                // 41
    ]

    private var entry: (name: String, blockSize: Int, bytesPerBlock: Int)? {
        id < GGUFTensorType.table.count ? GGUFTensorType.table[Int(id)] : nil
    }

    /// Whether ggml defines this id (so its block layout is known).
    public var isKnown: Bool { entry != nil }
    /// Whether Quill's kernels read this type.
    public var isReadByQuill: Bool { decoded != nil }
    /// Values per block (1 for plain types); nil for an unknown id.
    public var blockSize: Int? { entry?.blockSize }
    /// Bytes per block; nil for an unknown id.
    public var bytesPerBlock: Int? { entry?.bytesPerBlock }

    /// "Q8_0", or "type 99" for an id ggml does not define.
    public var name: String { entry?.name ?? "type \(id)" }
    public var description: String { name }
}
