import CQuillKernels

/// The GGUF tensor storage types Quill decodes, by their ggml type id (the number a GGUF tensor
/// info stores). The container's table of every ggml id (`GGUFTensorType` in the Quill library)
/// names the others, so a type Quill does not decode is refused by name.
public enum GGMLType: Int, CaseIterable, Sendable {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q5_0 = 6
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30

    /// ggml's name for the type, as in messages and llama.cpp's tools: "Q4_K", "BF16".
    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q5_0: "Q5_0"
        case .q8_0: "Q8_0"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .bf16: "BF16"
        }
    }

    /// Values per block: 1 for F32, F16 and BF16, 32 for Q8_0, Q4_0 and Q5_0, 256 for the K types.
    public var blockSize: Int { Int(ggml_block_size(Int32(rawValue))) }

    /// Bytes per block.
    public var bytesPerBlock: Int { Int(ggml_block_bytes(Int32(rawValue))) }

    /// Bytes of a row of `count` values; `count` must be a multiple of the block size.
    public func rowBytes(count: Int) -> Int {
        precondition(count >= 0 && count % blockSize == 0,
                     "\(name) rows hold a multiple of \(blockSize) values, got \(count)")
        return count / blockSize * bytesPerBlock
    }
}

/// Decoding of packed GGUF rows: exact dequantisation to float32 (the same bits as ggml's
/// reference dequantize_row_* and gguf-py) and row dot products with float32 activations, in
/// the summation order documented in `ggml_quants.h`.
public enum GGMLQuants {
    /// The row of `count` values stored as `type` at the start of `bytes`, as float32.
    public static func dequantize(_ type: GGMLType, bytes: ByteView, count: Int) -> [Float] {
        let needed = type.rowBytes(count: count)
        precondition(needed <= bytes.count, "a \(type.name) row of \(count) values needs \(needed) bytes, got \(bytes.count)")
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            if count > 0 {
                let status = ggml_dequantize_row(Int32(type.rawValue), bytes.pointer, out.baseAddress!, Int64(count))
                precondition(status == 0, "ggml_dequantize_row refused \(type.name) × \(count)")
            }
            initialized = count
        }
    }

    /// Σ_i w[i] · x[i] for the row w of `x.count` values stored as `type` at the start of `bytes`.
    public static func dot(_ type: GGMLType, bytes: ByteView, _ x: [Float]) -> Float {
        let needed = type.rowBytes(count: x.count)
        precondition(needed <= bytes.count, "a \(type.name) row of \(x.count) values needs \(needed) bytes, got \(bytes.count)")
        var result: Float = 0
        x.withUnsafeBufferPointer { input in
            guard let base = input.baseAddress else { return }
            let status = ggml_dot_row(Int32(type.rawValue), bytes.pointer, base, Int64(x.count), &result)
            precondition(status == 0, "ggml_dot_row refused \(type.name) × \(x.count)")
        }
        return result
    }

    /// One IEEE half (its bits) as float32: exact for every value; a NaN keeps its sign and
    /// payload and is quieted.
    public static func float(fromHalfBits bits: UInt16) -> Float { ggml_fp16_to_fp32(bits) }

    /// The path of the F16 conversion: "f16c" or "portable".
    public static var halfConversionPath: String { String(cString: ggml_f16_path_name()) }

    /// Selects the F16 conversion path ("portable", "f16c", "auto"); false when this CPU cannot
    /// run it. For tests that compare the paths.
    @discardableResult
    public static func forceHalfConversionPath(_ name: String) -> Bool { ggml_f16_force_path(name) != 0 }
}

extension GGMLType {
    /// Whether `GGMLQuants.quantize` encodes this type (F32, F16, BF16, Q8_0, Q4_0, Q5_0); the
    /// K types are decoded only.
    public var isEncoded: Bool { ggml_can_quantize(Int32(rawValue)) != 0 }
}

extension GGMLQuants {
    /// `values` (rows of `rowLength`, row-major) encoded as `type`: the same bytes as ggml's
    /// reference quantizer and gguf-py's `gguf.quants.quantize` (see `ggml_quantize.h`).
    /// `rowLength` must be a multiple of the type's block size and `values.count` of `rowLength`.
    public static func quantize(_ type: GGMLType, _ values: [Float], rowLength: Int) -> [UInt8] {
        precondition(type.isEncoded, "Quill does not encode \(type.name)")
        precondition(rowLength > 0 && values.count % rowLength == 0, "\(values.count) values are not rows of \(rowLength)")
        let rows = values.count / rowLength
        let rowBytes = type.rowBytes(count: rowLength)
        // (rows, rowBytes): one encoded row after another; rows are whole blocks, so the whole
        // array is one call.
        return [UInt8](unsafeUninitializedCapacity: rows * rowBytes) { out, initialized in
            values.withUnsafeBufferPointer { input in
                if let source = input.baseAddress, let target = out.baseAddress {
                    let status = ggml_quantize_row(Int32(type.rawValue), source, target, Int64(values.count))
                    precondition(status == 0, "ggml_quantize_row refused \(type.name) × \(values.count)")
                }
            }
            initialized = rows * rowBytes
        }
    }

    /// The IEEE half nearest to `value` (ties to even), as bits: infinity beyond 65504 (from
    /// 65520), as F16C and numpy round.
    public static func halfBits(_ value: Float) -> UInt16 { ggml_fp32_to_fp16(value) }

    /// The bfloat16 nearest to `value` (ties to even), as bits.
    public static func bfloat16Bits(_ value: Float) -> UInt16 { ggml_fp32_to_bf16(value) }
}

extension ByteView {
    /// Bytes `offset ..< offset + length` copied into an array.
    public func bytes(offset: Int = 0, count length: Int? = nil) -> [UInt8] {
        let n = length ?? (count - offset)
        precondition(offset >= 0 && n >= 0 && offset <= count - n, "range out of bounds")
        return Array(UnsafeRawBufferPointer(start: pointer + offset, count: n))
    }
}
