/// The SentencePiece vocabulary a GGUF file carries under `tokenizer.ggml.*` (tokenizer model
/// "llama", as llama.cpp's converter writes it from a `tokenizer.model`), validated, and turned
/// back into a SentencePiece `ModelProto` that the shim loads.
///
/// GGUF keeps the pieces, their scores and types and the special ids, not the rest of the
/// `.model`: the algorithm is taken to be BPE (Llama's; llama.cpp runs every "llama" vocabulary
/// with its BPE-like merge by score), the normalizer to be identity with no whitespace
/// clean-up (llama.cpp only replaces spaces with U+2581 and adds the prefix space), and byte
/// fallback is on exactly when there are byte pieces.
public struct GGUFVocabulary: Sendable {
    /// A piece's kind: SentencePiece's `ModelProto.SentencePiece.Type`, whose numbers are also
    /// llama.cpp's `tokenizer.ggml.token_type` values.
    public enum PieceType: Int, Sendable, CaseIterable {
        case normal = 1, unknown, control, userDefined, unused, byte

        var name: String {
            switch self {
            case .normal: "normal"
            case .unknown: "unknown"
            case .control: "control"
            case .userDefined: "user-defined"
            case .unused: "unused"
            case .byte: "byte"
            }
        }

        /// SentencePiece looks up normal, user-defined and unused pieces in one table and the
        /// others in another; a piece's text must be unique within its table.
        var isReserved: Bool { self == .unknown || self == .control || self == .byte }
    }

    /// The piece texts as SentencePiece stores them (`▁` for a space, `<0x0A>` for a byte).
    public let pieces: [String]
    public let scores: [Float]
    public let types: [PieceType]
    /// The one piece of type unknown.
    public let unknownID: Int
    /// Beginning-of-sequence id (a control piece), nil when the file names none and the
    /// default (1) is not a control piece.
    public let bosID: Int?
    /// End-of-sequence id (a control piece), nil as for `bosID` (default 2).
    public let eosID: Int?
    /// Padding id, when the file gives one.
    public let padID: Int?
    /// `tokenizer.ggml.add_space_prefix` (default true): a space is put before the text.
    public let addSpacePrefix: Bool
    /// `tokenizer.ggml.add_bos_token` (default true): prompts start with BOS.
    public let addBOS: Bool

    /// Keys read (llama.cpp's names, `gguf-py/gguf/constants.py`).
    public enum Key {
        public static let model = "tokenizer.ggml.model"
        public static let tokens = "tokenizer.ggml.tokens"
        public static let scores = "tokenizer.ggml.scores"
        public static let tokenTypes = "tokenizer.ggml.token_type"
        public static let bosID = "tokenizer.ggml.bos_token_id"
        public static let eosID = "tokenizer.ggml.eos_token_id"
        public static let unknownID = "tokenizer.ggml.unknown_token_id"
        public static let padID = "tokenizer.ggml.padding_token_id"
        public static let addSpacePrefix = "tokenizer.ggml.add_space_prefix"
        public static let addBOS = "tokenizer.ggml.add_bos_token"
    }

    /// What the other values of `tokenizer.ggml.model` that llama.cpp writes are.
    private static let otherKinds = [
        "gpt2": "byte-level BPE", "bert": "WordPiece", "t5": "SentencePiece Unigram",
        "rwkv": "RWKV world", "plamo2": "PLaMo-2", "no_vocab": "no vocabulary", "none": "no vocabulary",
    ]

    /// Reads and checks the vocabulary of `gguf`. Every refusal is one line naming the key.
    public init(gguf: GGUFFile) throws(CheckpointError) {
        let pass = "give a SentencePiece tokenizer.model if the model has one"
        guard let kind = try gguf.stringIfPresent(Key.model) else {
            throw gguf.error("\(Key.model) is missing, so the file has no tokenizer Quill reads; \(pass)")
        }
        guard kind == "llama" else {
            let what = GGUFVocabulary.otherKinds[kind].map { " (\($0))" } ?? ""
            throw gguf.error("\(Key.model) is \(quoted(kind))\(what), which Quill does not read; \(pass)")
        }

        var pieces = try gguf.stringArray(Key.tokens)
        let scores = try gguf.float32Array(Key.scores)
        let typeValues = try gguf.integerArray(Key.tokenTypes)
        let count = pieces.count
        guard count > 0 else { throw gguf.error("\(Key.tokens) is empty") }
        guard count <= Int(Int32.max) else {
            throw gguf.error("\(Key.tokens) has \(groupedDigits(count)) tokens, more than SentencePiece's int32 ids hold")
        }
        guard scores.count == count else {
            throw gguf.error("\(Key.scores) has \(groupedDigits(scores.count)) values for \(groupedDigits(count)) tokens")
        }
        guard typeValues.count == count else {
            throw gguf.error("\(Key.tokenTypes) has \(groupedDigits(typeValues.count)) values for \(groupedDigits(count)) tokens")
        }
        if let bad = scores.firstIndex(where: { !$0.isFinite }) {
            throw gguf.error("\(Key.scores) has a non-finite value (\(scores[bad])) for token \(bad)")
        }
        var types: [PieceType] = []
        types.reserveCapacity(count)
        for (id, value) in typeValues.enumerated() {
            guard let type = PieceType(rawValue: value) else {
                throw gguf.error("\(Key.tokenTypes) has \(value) for token \(id); token types are 1 to 6")
            }
            types.append(type)
        }

        // llama.cpp's converter writes user-defined pieces with spaces where SentencePiece has
        // `▁` (it matches them in the raw text); SentencePiece matches them after spaces became `▁`.
        for id in pieces.indices where types[id] == .userDefined {
            pieces[id] = pieces[id].replacingSpaces()
        }
        // Keyed by bytes: Swift's String equality is canonical equivalence, SentencePiece's is
        // byte equality (Llama 2 has both "ί" U+1F77 and "ί" U+03AF).
        var seen: [[UInt8]: Int] = [:]
        var seenReserved: [[UInt8]: Int] = [:]
        var bytesSeen = [Bool](repeating: false, count: 256)
        var unknownIDs: [Int] = []
        for (id, piece) in pieces.enumerated() {
            guard !piece.isEmpty else { throw gguf.error("\(Key.tokens) has an empty token at id \(id)") }
            let type = types[id]
            let bytes = Array(piece.utf8)
            if let first = type.isReserved ? seenReserved[bytes] : seen[bytes] {
                throw gguf.error("\(Key.tokens) has \(quoted(piece)) twice (ids \(first) and \(id))")
            }
            if type.isReserved { seenReserved[bytes] = id } else { seen[bytes] = id }
            switch type {
            case .unknown: unknownIDs.append(id)
            case .byte:
                guard let byte = GGUFVocabulary.byteValue(piece) else {
                    throw gguf.error("\(Key.tokens) has \(quoted(piece)) at id \(id), of type byte (6), "
                        + "which is not a byte piece <0x00> … <0xFF>")
                }
                bytesSeen[Int(byte)] = true
            default: break
            }
        }
        let byteCount = bytesSeen.filter { $0 }.count
        guard byteCount == 0 || byteCount == 256 else {
            throw gguf.error("\(Key.tokenTypes) marks \(byteCount) byte pieces; byte fallback needs all 256 or none")
        }
        guard unknownIDs.count == 1 else {
            throw gguf.error("\(Key.tokenTypes) has \(unknownIDs.count) tokens of type unknown (2); "
                + "SentencePiece needs exactly one")
        }
        unknownID = unknownIDs[0]

        /// An id key: absent is nil; present, it must be a token of the vocabulary.
        func id(_ key: String) throws(CheckpointError) -> Int? {
            guard let id = try gguf.integerIfPresent(key) else { return nil }
            guard (0..<count).contains(id) else {
                throw gguf.error("\(key) is \(id), outside the \(groupedDigits(count)) tokens")
            }
            return id
        }
        if let given = try id(Key.unknownID), given != unknownID {
            throw gguf.error("\(Key.unknownID) is \(given), but the token of type unknown (2) is \(unknownID)")
        }
        /// BOS and EOS: SentencePiece reports them only when they are control pieces. Without
        /// the key, llama.cpp's default id is used if it is one.
        func control(_ key: String, default fallback: Int) throws(CheckpointError) -> Int? {
            guard let given = try id(key) else {
                return fallback < count && types[fallback] == .control ? fallback : nil
            }
            guard types[given] == .control else {
                throw gguf.error("\(key) is \(given) (\(quoted(pieces[given]))), a token of type "
                    + "\(types[given].name) (\(types[given].rawValue)); it must be of type control (3)")
            }
            return given
        }
        bosID = try control(Key.bosID, default: 1)
        eosID = try control(Key.eosID, default: 2)
        padID = try id(Key.padID)
        addSpacePrefix = try gguf.boolIfPresent(Key.addSpacePrefix) ?? true
        addBOS = try gguf.boolIfPresent(Key.addBOS) ?? true
        self.pieces = pieces
        self.scores = scores
        self.types = types
    }

    /// "<0x0A>" → 10: SentencePiece's byte piece names, two upper-case hex digits.
    static func byteValue(_ piece: String) -> UInt8? {
        let utf8 = Array(piece.utf8)
        guard utf8.count == 6, utf8.starts(with: Array("<0x".utf8)), utf8[5] == UInt8(ascii: ">") else { return nil }
        func digit(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        guard let high = digit(utf8[3]), let low = digit(utf8[4]) else { return nil }
        return high << 4 | low
    }

    /// The vocabulary as a serialized SentencePiece `ModelProto` (the bytes of a `.model` file;
    /// field numbers from `sentencepiece_model.proto`).
    public func sentencePieceModel() -> [UInt8] {
        var model = ProtobufWriter()
        for id in pieces.indices {
            var piece = ProtobufWriter()
            piece.string(1, pieces[id])  // piece
            piece.float(2, scores[id])  // score
            piece.varint(3, UInt64(types[id].rawValue))  // type
            model.message(1, piece)  // pieces
        }

        var trainer = ProtobufWriter()
        trainer.varint(3, 2)  // model_type: BPE
        trainer.int32(4, Int32(pieces.count))  // vocab_size
        trainer.bool(35, types.contains(.byte))  // byte_fallback
        // SentencePiece finds the special ids by their pieces' text (its default "<s>" and so
        // on when none is written), so a missing one is given a text no piece has.
        let texts = Set(pieces.map { Array($0.utf8) })
        func text(_ id: Int?, absent: String) -> String {
            if let id { return pieces[id] }
            var text = absent
            while texts.contains(Array(text.utf8)) { text += "_" }
            return text
        }
        trainer.int32(40, Int32(unknownID))  // unk_id
        trainer.int32(41, Int32(bosID ?? -1))  // bos_id
        trainer.int32(42, Int32(eosID ?? -1))  // eos_id
        trainer.int32(43, Int32(padID ?? -1))  // pad_id
        trainer.string(45, pieces[unknownID])  // unk_piece
        trainer.string(46, text(bosID, absent: "<no bos>"))  // bos_piece
        trainer.string(47, text(eosID, absent: "<no eos>"))  // eos_piece
        trainer.string(48, text(padID, absent: "<no pad>"))  // pad_piece
        model.message(2, trainer)  // trainer_spec

        var normalizer = ProtobufWriter()
        normalizer.string(1, "identity")  // name
        normalizer.bool(3, addSpacePrefix)  // add_dummy_prefix
        normalizer.bool(4, false)  // remove_extra_whitespaces
        normalizer.bool(5, true)  // escape_whitespaces
        model.message(3, normalizer)  // normalizer_spec
        return model.bytes
    }
}

/// The serialized SentencePiece model of the vocabulary in `gguf` (see `GGUFVocabulary`).
public func sentencePieceModel(from gguf: GGUFFile) throws(CheckpointError) -> [UInt8] {
    try GGUFVocabulary(gguf: gguf).sentencePieceModel()
}

extension Tokenizer {
    /// The tokenizer a GGUF file carries, named by the file's path in messages.
    public convenience init(gguf: GGUFFile) throws(TokenizerError) {
        let vocabulary: GGUFVocabulary
        do { vocabulary = try GGUFVocabulary(gguf: gguf) } catch {
            throw TokenizerError(path: error.path, problem: error.problem)
        }
        try self.init(vocabulary: vocabulary, name: gguf.path)
    }

    /// The tokenizer of a GGUF vocabulary read already (the loader keeps `addBOS` from it).
    public convenience init(vocabulary: GGUFVocabulary, name: String) throws(TokenizerError) {
        try self.init(serializedModel: vocabulary.sentencePieceModel(), name: name)
    }
}

extension String {
    /// The text with every space as SentencePiece's `▁` (U+2581).
    fileprivate func replacingSpaces() -> String {
        String(String.UnicodeScalarView(unicodeScalars.map { $0 == " " ? "\u{2581}" : $0 }))
    }
}

/// Protocol buffers' wire format, for the few field kinds a `ModelProto` needs: each field is
/// a key (field number << 3 | wire type) as a varint, then the value.
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    private mutating func rawVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    private mutating func key(_ field: Int, _ wireType: UInt64) {
        rawVarint(UInt64(field) << 3 | wireType)
    }

    /// Wire type 0: enums, bools, unsigned integers.
    mutating func varint(_ field: Int, _ value: UInt64) {
        key(field, 0)
        rawVarint(value)
    }

    /// An int32 is a varint of its 64-bit sign extension (a negative one takes ten bytes).
    mutating func int32(_ field: Int, _ value: Int32) {
        varint(field, UInt64(bitPattern: Int64(value)))
    }

    mutating func bool(_ field: Int, _ value: Bool) {
        varint(field, value ? 1 : 0)
    }

    /// Wire type 5: four little-endian bytes.
    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        let bits = value.bitPattern
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: bits >> UInt32(shift))) }
    }

    /// Wire type 2: a varint length, then the bytes.
    mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        key(field, 2)
        rawVarint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }

    mutating func string(_ field: Int, _ value: String) {
        lengthDelimited(field, Array(value.utf8))
    }

    mutating func message(_ field: Int, _ message: ProtobufWriter) {
        lengthDelimited(field, message.bytes)
    }
}
