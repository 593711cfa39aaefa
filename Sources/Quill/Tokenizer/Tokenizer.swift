import CSentencePiece
import Foundation

/// Why a tokenizer could not be loaded or used. Messages carry SentencePiece's own text.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}

/// A SentencePiece model loaded through the C shim. The handle is owned here and freed in
/// `deinit`; the byte form of every piece is precomputed for streaming decode.
public final class Tokenizer: @unchecked Sendable {
    /// Largest tokenizer file read: real models are well under 10 MiB (Llama 2's is 500 KB), so
    /// a larger file is not one, and reading it whole would only cost memory.
    public static let maxModelBytes = 256 << 20

    /// The file it was loaded from, or the name given with the serialized model.
    public let path: String
    public let vocabSize: Int
    /// Beginning-of-sequence id (`<s>`), prepended to prompts; -1 when the model has none.
    public let bosID: Int
    /// End-of-sequence id (`</s>`); -1 when the model has none.
    public let eosID: Int
    /// The bytes each id prints as: byte pieces are their byte, `▁` a space, control pieces nothing.
    let pieceBytes: PieceTable
    /// The shim's processor (internal: GGUF export enumerates its pieces).
    let handle: OpaquePointer

    /// Loads a `.model` file. Quill reads the file itself and refuses anything but a regular
    /// file (a FIFO would block, a device would never end) and files over `maxModelBytes`.
    public convenience init(path: String) throws(TokenizerError) {
        try self.init(serializedModel: try Tokenizer.readModelFile(path), name: path)
    }

    /// Loads a model from the bytes of a serialized SentencePiece `ModelProto` (what a `.model`
    /// file holds). Any bytes are safe: what is not a model throws, naming it `name`.
    public init(serializedModel bytes: [UInt8], name: String) throws(TokenizerError) {
        path = name
        var processor: OpaquePointer?
        let status = bytes.withUnsafeBytes { spm_load_from_bytes($0.baseAddress, $0.count, &processor) }
        guard status == Int32(SPM_OK), let processor else {
            let message = String(cString: spm_last_error())
            throw TokenizerError(path: name, problem: "not a SentencePiece model (\(message))")
        }
        handle = processor
        vocabSize = Int(spm_vocab_size(processor))
        bosID = Int(spm_bos_id(processor))
        eosID = Int(spm_eos_id(processor))
        pieceBytes = PieceTable(processor: processor, count: vocabSize)
    }

    /// The bytes of a tokenizer file. Opened non-blocking so that a FIFO cannot hang `open`;
    /// only a regular file of at most `maxModelBytes` is read.
    static func readModelFile(_ path: String) throws(TokenizerError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let problem = errno == ENOENT ? "no such file" : "cannot open: " + String(cString: strerror(errno))
            throw TokenizerError(path: path, problem: problem)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw TokenizerError(path: path, problem: "cannot stat: " + String(cString: strerror(errno)))
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw TokenizerError(path: path, problem: "not a regular file") }
        let size = Int(info.st_size)
        guard size <= maxModelBytes else {
            throw TokenizerError(path: path, problem: "file is \(groupedDigits(size)) bytes; "
                                     + "a tokenizer model larger than \(maxModelBytes >> 20) MiB is refused")
        }
        // Read what fstat promised; a file that shrinks meanwhile gives a shorter (invalid) model.
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw TokenizerError(path: path, problem: "cannot read: " + String(cString: strerror(errno))) }
            if n == 0 { break }
            done += n
        }
        return Array(bytes[..<done])
    }

    deinit { spm_free(handle) }

    /// The ids of `text`, with BOS first when `addBOS` (an error if the model has no BOS piece).
    /// The text is encoded exactly as given: nothing is trimmed.
    public func encode(_ text: String, addBOS: Bool = true) throws(TokenizerError) -> [Int] {
        if addBOS && bosID < 0 {
            throw TokenizerError(path: path, problem: "the tokenizer has no beginning-of-sequence piece (<s>), "
                                     + "so it cannot put BOS before the text; encode without BOS")
        }
        var utf8 = Array(text.utf8)
        var ids: UnsafeMutablePointer<Int32>?
        var count = 0
        let status = utf8.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                spm_encode(handle, chars.baseAddress, chars.count, &ids, &count)
            }
        }
        defer { spm_free_ids(ids) }
        guard status == Int32(SPM_OK) else {
            throw TokenizerError(path: path, problem: "cannot encode text: " + String(cString: spm_last_error()))
        }
        var result: [Int] = addBOS ? [bosID] : []
        result.reserveCapacity(count + 1)
        for i in 0..<count { result.append(Int(ids![i])) }
        return result
    }

    /// The bytes `id` prints as on its own (a byte piece its byte, `▁` a space, a control piece
    /// nothing); empty outside the vocabulary.
    public func bytes(of id: Int) -> [UInt8] { id >= 0 && id < pieceBytes.count ? Array(pieceBytes[id]) : [] }

    /// The piece text of an id as stored in the model (with `▁`, `<0x0A>` etc.), for inspection.
    public func piece(_ id: Int) -> String? {
        var piece: UnsafePointer<CChar>?
        var length = 0
        guard spm_id_to_piece(handle, Int32(id), &piece, &length) == Int32(SPM_OK), let piece else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: piece, count: length), as: UTF8.self)
    }

    /// The text of a whole id sequence, as SentencePiece's own decode gives it: control ids
    /// (BOS, EOS) print nothing, the leading space of the first piece is dropped whether or not
    /// BOS comes first (it is the space encode added), and byte pieces that do not form valid
    /// UTF-8 become U+FFFD. So `decode(encode(x))` is `x` for valid UTF-8 without U+2581 (which
    /// SentencePiece reads as a space). Ids outside the vocabulary are skipped. Generation
    /// streams through `StreamingDetokenizer` instead, which continues a prompt.
    public func decode(_ ids: [Int]) -> [UInt8] {
        let valid = ids.compactMap { $0 >= 0 && $0 < vocabSize ? Int32($0) : nil }
        var text: UnsafeMutablePointer<CChar>?
        var length = 0
        let status = valid.withUnsafeBufferPointer { spm_decode(handle, $0.baseAddress, $0.count, &text, &length) }
        defer { spm_free_text(text) }
        guard status == Int32(SPM_OK) else {
            // Only a malformed model gets here (SentencePiece checked its byte pieces on load);
            // the piece table still gives every byte.
            var detokenizer = StreamingDetokenizer(tokenizer: self)
            return valid.flatMap { detokenizer.append(Int($0)) } + detokenizer.finish()
        }
        guard let text else { return [] }
        return Array(UnsafeRawBufferPointer(start: text, count: length))
    }

    /// Finds the tokenizer for a checkpoint: `NAME.model` beside `NAME.bin`, else
    /// `tokenizer.model` in the same folder; when the checkpoint is a symbolic link, then the
    /// same two beside the file it points to. Returns nil when none exists. A path beside the
    /// checkpoint as given stays relative if that path was.
    public static func defaultPath(forCheckpoint checkpointPath: String) -> String? {
        func candidates(beside path: String) -> [String] {
            let file = path as NSString
            return [file.deletingPathExtension + ".model",
                    (file.deletingLastPathComponent as NSString).appendingPathComponent("tokenizer.model")]
        }
        var paths = candidates(beside: checkpointPath)
        let target = URL(fileURLWithPath: checkpointPath).resolvingSymlinksInPath().path
        if target != URL(fileURLWithPath: checkpointPath).standardizedFileURL.path {
            paths += candidates(beside: target)
        }
        return paths.first { path in
            var isFolder: ObjCBool = false
            return FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && !isFolder.boolValue
        }
    }
}

/// The bytes every piece prints as, back to back in one buffer: piece `id` is
/// `bytes[starts[id]..<starts[id + 1]]`. One buffer rather than an array per piece, which took
/// milliseconds to build and to free for Llama 2's 32,000 pieces, on every start.
struct PieceTable: Sendable {
    /// Every piece's bytes, in id order.
    private let bytes: [UInt8]
    /// Where each piece starts in `bytes`, plus the end: count + 1 offsets.
    private let starts: [Int]

    var count: Int { starts.count - 1 }

    subscript(id: Int) -> ArraySlice<UInt8> { bytes[starts[id]..<starts[id + 1]] }

    /// Byte pieces are their byte ("<0xAB>" is 0xAB), `▁` (U+2581, E2 96 81) a space, control
    /// pieces nothing, and the unknown piece " ⁇ ", as SentencePiece's decode prints them.
    init(processor: OpaquePointer, count: Int) {
        var kinds = [UInt8](repeating: 0, count: count)
        kinds.withUnsafeMutableBufferPointer { spm_piece_kinds(processor, $0.baseAddress, count) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 8)
        var starts: [Int] = []
        starts.reserveCapacity(count + 1)
        let unknown = Array(" \u{2047} ".utf8)
        for id in 0..<count {
            starts.append(bytes.count)
            var pointer: UnsafePointer<CChar>?
            var length = 0
            guard spm_id_to_piece(processor, Int32(id), &pointer, &length) == Int32(SPM_OK), let pointer else { continue }
            let raw = UnsafeRawBufferPointer(start: pointer, count: length)
            switch Int(kinds[id]) {
            case Int(SPM_PIECE_CONTROL):
                continue
            case Int(SPM_PIECE_UNKNOWN):
                bytes += unknown
            case Int(SPM_PIECE_BYTE):
                if let value = PieceTable.byteValue(raw) { bytes.append(value) } else { bytes += raw }
            default:
                var i = 0
                while i < length {
                    if i + 2 < length && raw[i] == 0xE2 && raw[i + 1] == 0x96 && raw[i + 2] == 0x81 {
                        bytes.append(0x20)
                        i += 3
                    } else {
                        bytes.append(raw[i])
                        i += 1
                    }
                }
            }
        }
        starts.append(bytes.count)
        self.bytes = bytes
        self.starts = starts
    }

    /// The byte a "<0xAB>" piece stands for; nil for any other text.
    private static func byteValue(_ raw: UnsafeRawBufferPointer) -> UInt8? {
        guard raw.count == 6, raw[0] == UInt8(ascii: "<"), raw[1] == UInt8(ascii: "0"), raw[2] == UInt8(ascii: "x"),
              raw[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: raw[3..<5], as: UTF8.self), radix: 16)
    }
}
