import CSentencePiece

/// The `tokenizer.ggml.*` keys a GGUF file Quill writes carries: copied from a GGUF input, or
/// made from a SentencePiece `.model` as llama.cpp's converter makes them
/// (`tokenizer.ggml.model = "llama"`, pieces, scores, token types, special ids).
public enum GGUFTokenizerMetadata {
    /// Every `tokenizer.*` entry of `gguf`, in file order (the vocabulary and anything a tool
    /// put beside it, such as a chat template).
    public static func copied(from gguf: GGUFFile) -> [GGUFMetadataEntry] {
        gguf.metadata.filter { $0.key.hasPrefix("tokenizer.") }
    }

    /// The keys for the SentencePiece model `modelBytes` (the bytes of a `.model` file, named
    /// `name` in messages), with warnings to show. Pieces, scores and kinds come from
    /// SentencePiece itself (the shim); what its C++ API does not tell (user-defined pieces, the
    /// normalizer's settings, the algorithm) is read from the model's protobuf. GGUF keeps no
    /// normalizer: llama.cpp and Quill run a "llama" vocabulary as BPE on the raw text, spaces
    /// as `▁`. So a Unigram model is refused (its ids would differ for ordinary text), and a
    /// normalization rule other than identity or the removal of extra whitespace (which change
    /// only unusual text: runs of spaces, compatibility characters) are dropped, as llama.cpp's
    /// converter drops them, with a warning that says so.
    public static func fromSentencePiece(
        modelBytes: [UInt8], name: String
    ) throws(TokenizerError) -> (entries: [GGUFMetadataEntry], warnings: [String]) {
        let tokenizer = try Tokenizer(serializedModel: modelBytes, name: name)
        let model: SentencePieceModelFacts
        do { model = try SentencePieceModelFacts(modelBytes) } catch {
            throw TokenizerError(path: name, problem: "not a SentencePiece model (\(error.problem))")
        }
        if model.modelType != 2 {
            throw TokenizerError(path: name, problem: "is a SentencePiece \(model.modelTypeName) model; a GGUF \"llama\" vocabulary "
                                 + "is tokenized as BPE, which would give other ids, so Quill does not write one for it")
        }
        var dropped: [String] = []
        if model.normalizerName != "identity" { dropped.append("normalizes text with the rule '\(model.normalizerName)'") }
        if model.removeExtraWhitespaces { dropped.append("removes extra whitespace") }
        if !model.escapeWhitespaces { dropped.append("keeps spaces unescaped") }
        var warnings: [String] = []
        if !dropped.isEmpty {
            warnings.append("\(name) \(dropped.joined(separator: " and ")); GGUF has no field for that, so the file's vocabulary "
                            + "(in Quill and llama.cpp) tokenizes text that it would change (runs of spaces, leading or trailing "
                            + "spaces, compatibility characters) differently from the .model")
        }
        guard model.pieceCount == tokenizer.vocabSize else {
            throw TokenizerError(path: name, problem: "its protobuf lists \(model.pieceCount) pieces but SentencePiece loads \(tokenizer.vocabSize)")
        }

        var pieces: [String] = []
        var scores: [Float] = []
        var types: [Int32] = []
        pieces.reserveCapacity(tokenizer.vocabSize)
        for id in 0..<tokenizer.vocabSize {
            var score: Float = 0
            var type: Int32 = 0
            guard spm_piece_info(tokenizer.handle, Int32(id), &score, &type) == Int32(SPM_OK),
                  let piece = tokenizer.piece(id) else {
                throw TokenizerError(path: name, problem: "SentencePiece cannot describe piece \(id): \(String(cString: spm_last_error()))")
            }
            pieces.append(piece)
            scores.append(score)
            types.append(model.userDefined.contains(id) ? 4 : type)
        }
        var entries: [(String, GGUFValue)] = [
            (GGUFVocabulary.Key.model, .string("llama")),
            (GGUFVocabulary.Key.tokens, .array(.string(pieces))),
            (GGUFVocabulary.Key.scores, .array(.float32(scores))),
            (GGUFVocabulary.Key.tokenTypes, .array(.int32(types))),
        ]
        let handle = tokenizer.handle
        for (key, id) in [(GGUFVocabulary.Key.bosID, spm_bos_id(handle)), (GGUFVocabulary.Key.eosID, spm_eos_id(handle)),
                          (GGUFVocabulary.Key.unknownID, spm_unk_id(handle)), (GGUFVocabulary.Key.padID, spm_pad_id(handle))]
        where id >= 0 {
            entries.append((key, .uint32(UInt32(id))))
        }
        // llama2.c starts every prompt with BOS and never appends EOS.
        entries.append((GGUFVocabulary.Key.addBOS, .bool(true)))
        entries.append(("tokenizer.ggml.add_eos_token", .bool(false)))
        entries.append((GGUFVocabulary.Key.addSpacePrefix, .bool(model.addDummyPrefix)))
        return (entries.map { GGUFMetadataEntry(key: $0.0, value: $0.1) }, warnings)
    }
}

/// The few facts of a serialized SentencePiece `ModelProto` that its C++ API does not expose
/// (field numbers from `sentencepiece_model.proto`; absent fields take the proto's defaults).
struct SentencePieceModelFacts {
    var pieceCount = 0
    /// Ids of pieces of type USER_DEFINED (4).
    var userDefined = Set<Int>()
    /// trainer_spec.model_type: 1 Unigram (the default), 2 BPE, 3 word, 4 char.
    var modelType = 1
    var normalizerName = "nmt_nfkc"
    var addDummyPrefix = true
    var removeExtraWhitespaces = true
    var escapeWhitespaces = true

    var modelTypeName: String {
        switch modelType {
        case 1: "Unigram"
        case 2: "BPE"
        case 3: "word"
        case 4: "char"
        default: "type \(modelType)"
        }
    }

    init(_ bytes: [UInt8]) throws(ProtobufError) {
        var model = ProtobufReader(bytes[...])
        while let (field, value) = try model.next() {
            switch (field, value) {
            case (1, .bytes(let piece)):  // pieces
                var reader = ProtobufReader(piece)
                while let (pieceField, pieceValue) = try reader.next() {
                    if pieceField == 3, case .varint(let type) = pieceValue, type == 4 { userDefined.insert(pieceCount) }
                }
                pieceCount += 1
            case (2, .bytes(let trainer)):  // trainer_spec
                var reader = ProtobufReader(trainer)
                while let (trainerField, trainerValue) = try reader.next() {
                    if trainerField == 3, case .varint(let type) = trainerValue { modelType = Int(truncatingIfNeeded: type) }
                }
            case (3, .bytes(let normalizer)):  // normalizer_spec
                var reader = ProtobufReader(normalizer)
                while let (normalizerField, normalizerValue) = try reader.next() {
                    switch (normalizerField, normalizerValue) {
                    case (1, .bytes(let text)): normalizerName = String(decoding: text, as: UTF8.self)
                    case (3, .varint(let flag)): addDummyPrefix = flag != 0
                    case (4, .varint(let flag)): removeExtraWhitespaces = flag != 0
                    case (5, .varint(let flag)): escapeWhitespaces = flag != 0
                    default: break
                    }
                }
            default: break
            }
        }
    }
}

/// A malformed protobuf.
struct ProtobufError: Error {
    let problem: String
}

/// Reads protocol buffers' wire format field by field, bounds-checked.
struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed
    }

    private var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    private mutating func varint() throws(ProtobufError) -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            guard let byte = bytes.popFirst() else { throw ProtobufError(problem: "a varint runs past the end") }
            value |= UInt64(byte & 0x7f) << UInt64(shift)
            if byte & 0x80 == 0 { return value }
        }
        throw ProtobufError(problem: "a varint longer than 10 bytes")
    }

    private mutating func skip(_ count: UInt64) throws(ProtobufError) -> ArraySlice<UInt8> {
        guard count <= UInt64(bytes.count) else { throw ProtobufError(problem: "a field runs past the end") }
        let field = bytes.prefix(Int(count))
        bytes = bytes.dropFirst(Int(count))
        return field
    }

    /// The next field number and value, nil at the end.
    mutating func next() throws(ProtobufError) -> (Int, Value)? {
        guard !bytes.isEmpty else { return nil }
        let key = try varint()
        let field = Int(truncatingIfNeeded: key >> 3)
        switch key & 7 {
        case 0: return (field, .varint(try varint()))
        case 1: _ = try skip(8); return (field, .fixed)
        case 2: return (field, .bytes(try skip(try varint())))
        case 5: _ = try skip(4); return (field, .fixed)
        default: throw ProtobufError(problem: "wire type \(key & 7) of field \(field) is not one SentencePiece models use")
        }
    }
}
