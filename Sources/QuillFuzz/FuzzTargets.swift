import Foundation
import Quill
import QuillCommandLine

/// One fuzz target per parser of untrusted bytes. Each takes any bytes and must return
/// normally: a thrown error is the right answer to bad input, while a crash, a trap, a hang or
/// a sanitizer report is a defect. Properties that must hold for accepted input are checked
/// with `require`, which traps (and so is reported) when they fail.
enum FuzzTarget: String, CaseIterable {
    case checkpoint, gguf, tokenizer, batchFile = "batch-file", batchLine = "batch-line", json, arguments

    func run(_ bytes: [UInt8]) {
        switch self {
        case .checkpoint: fuzzCheckpoint(bytes)
        case .gguf: fuzzGGUF(bytes)
        case .tokenizer: fuzzTokenizer(bytes)
        case .batchFile: fuzzBatchFile(bytes)
        case .batchLine: fuzzBatchLine(bytes)
        case .json: fuzzJSON(bytes)
        case .arguments: fuzzArguments(bytes)
        }
    }
}

private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("fuzz property failed: \(message())") }
}

/// llama2.c checkpoints (versions 0, 1, 2): header validation and layout; a model small enough
/// is also run for two positions, so every view the header implies is read.
private func fuzzCheckpoint(_ bytes: [UInt8]) {
    guard let checkpoint = try? Checkpoint(bytes: bytes, path: "fuzz.bin") else { return }
    let c = checkpoint.config
    require(checkpoint.byteCount == bytes.count, "a loaded checkpoint covers the whole input")
    guard c.parameterCount <= 1 << 20, c.hiddenDim <= 1 << 12, c.dim <= 1 << 10 else { return }
    _ = checkpoint.weights.firstNonFiniteWeight()
    guard let transformer = try? Transformer(checkpoint: checkpoint, maxRows: 2, threads: 1,
                                             cacheCapacity: min(2, c.contextLength)),
          let cache = try? transformer.makeCache() else { return }
    let tokens = Array([0, c.vocabSize - 1].prefix(transformer.cacheCapacity))
    _ = transformer.prefill(tokens, startPosition: 0, cache: cache)
}

/// GGUF containers: whatever opens has every tensor inside the file, aligned, and apart from
/// the others; every metadata value and tensor byte range can be read; a vocabulary is
/// refused or loads.
private func fuzzGGUF(_ bytes: [UInt8]) {
    guard let gguf = try? GGUFFile(bytes: bytes, path: "fuzz.gguf") else { return }
    require([2, 3].contains(gguf.version), "only versions 2 and 3 open")
    require(gguf.alignment > 0 && gguf.alignment & (gguf.alignment - 1) == 0, "the alignment is a power of two")
    var end = 0
    for tensor in gguf.tensors.sorted(by: { $0.offset < $1.offset }) {
        require(tensor.offset >= end, "tensors do not overlap")
        require(tensor.dataOffset == gguf.dataOffset + tensor.offset && tensor.offset % gguf.alignment == 0,
                "tensor data is aligned")
        require(tensor.byteCount > 0 && tensor.dataOffset + tensor.byteCount <= bytes.count, "tensors lie inside the file")
        require((1...4).contains(tensor.dimensions.count) && tensor.dimensions.allSatisfy { $0 >= 1 },
                "one to four dimensions, none empty")
        end = tensor.offset + tensor.byteCount
        _ = gguf.file.bytes(at: tensor.dataOffset, count: 1)
        _ = gguf.file.bytes(at: tensor.dataOffset + tensor.byteCount - 1, count: 1)
        if tensor.type == .f32 { _ = gguf.file.floats(at: tensor.dataOffset, count: tensor.elementCount) }
        _ = try? gguf.requireReadable(tensor)
    }
    for entry in gguf.metadata {
        require(gguf.value(entry.key) == entry.value || entry.value != entry.value, "each key finds its value")
        _ = entry.value.typeName
        _ = try? gguf.integer(entry.key)
        _ = try? gguf.stringArray(entry.key)
        _ = try? gguf.integerArray(entry.key)
    }
    // The vocabulary it may carry: refused, or a model SentencePiece loads.
    if let model = try? sentencePieceModel(from: gguf) {
        require((try? Tokenizer(serializedModel: model, name: "fuzz.gguf")) != nil,
                "a vocabulary that passes the checks loads in SentencePiece")
    }
    // A file that reads as a model is also run for two positions when small.
    guard let weights = try? GGUFModel.weights(from: gguf) else { return }
    let c = weights.config
    guard c.parameterCount <= 1 << 20, c.hiddenDim <= 1 << 12, c.dim <= 1 << 10,
          let transformer = try? Transformer(weights: weights, maxRows: 2, cacheCapacity: min(2, c.contextLength)),
          let cache = try? transformer.makeCache() else { return }
    _ = transformer.prefill(Array([0, c.vocabSize - 1].prefix(transformer.cacheCapacity)), startPosition: 0, cache: cache)
}

/// SentencePiece model files, loaded from bytes.
private func fuzzTokenizer(_ bytes: [UInt8]) {
    guard let tokenizer = try? Tokenizer(serializedModel: bytes, name: "fuzz.model") else { return }
    if let ids = try? tokenizer.encode("Once upon a time, héllo 🙂\n", addBOS: false) {
        require(ids.allSatisfy { $0 >= 0 && $0 < tokenizer.vocabSize }, "encoded ids are in the vocabulary")
        _ = tokenizer.decode(ids)
    }
    _ = tokenizer.decode(Array(0..<min(tokenizer.vocabSize, 64)))
}

/// A batch file split into lines by LineReader, fed in reads of 1 to 64 bytes, sometimes "not
/// ready": every line must come back as written (line endings and a first BOM removed), and
/// a line reported too long must be longer than the limit. The first two bytes choose the read
/// size and the limit.
private func fuzzBatchFile(_ bytes: [UInt8]) {
    guard bytes.count >= 2 else { return }
    let readSize = Int(bytes[0] % 64) + 1, limit = Int(bytes[1] % 48) + 1
    let input = Array(bytes[2...])
    var offset = 0, reads = 0
    var reader = LineReader(maximumLineBytes: limit, read: { buffer in
        let n = min(readSize, buffer.count, input.count - offset)
        if n > 0 { input[offset..<offset + n].withUnsafeBytes { buffer.copyMemory(from: $0) } }
        offset += n
        return n
    }, readable: {
        reads += 1
        return reads % 3 != 0
    })
    // The lines as the file holds them: split on "\n", one trailing "\r" dropped, a BOM dropped
    // from the first, nothing after a final "\n".
    var expected = input.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
    if expected.last == [] { expected.removeLast() }
    var got = 0
    var canWait = false
    while true {
        guard let item = try? reader.next(canWait: canWait) else { return }
        canWait.toggle()
        switch item {
        case .end:
            require(got == expected.count, "every line is reported (\(got) of \(expected.count))")
            return
        case .notReady:
            continue
        case .tooLong(let number):
            require(number == got + 1 && expected[got].count > limit, "only lines over the limit are too long")
            got += 1
        case .line(let line, let number):
            require(number == got + 1, "lines are numbered in order")
            var want = expected[got]
            if want.last == 0x0D { want.removeLast() }
            if got == 0 && want.starts(with: [0xEF, 0xBB, 0xBF]) { want.removeFirst(3) }
            require(line == want, "line \(number) comes back as written")
            got += 1
        }
    }
}

/// One line of a batch file: plain text or a JSON request.
private func fuzzBatchLine(_ bytes: [UInt8]) {
    guard let line = try? BatchRequestLine.parse(bytes, defaults: GenerationRequest(prompt: [])) else { return }
    require((try? line.request.sampling.validate()) != nil, "accepted requests have valid sampling parameters")
    require(!line.request.stopStrings.contains(""), "no empty stop string is accepted")
}

/// The strict JSON reader: whatever it accepts, it reads back identically from its own encoding.
private func fuzzJSON(_ bytes: [UInt8]) {
    guard let value = try? JSONParser.parse(bytes) else { return }
    let again = try? JSONParser.parse(Array(value.encoded.utf8))
    require(again == value, "encoding and parsing again gives the same value")
}

/// Command lines: NUL-separated arguments.
private func fuzzArguments(_ bytes: [UInt8]) {
    var arguments: [String] = []
    for part in bytes.split(separator: 0, omittingEmptySubsequences: false) {
        guard let text = String(validating: part, as: UTF8.self) else { return }  // quill refuses these before parsing
        arguments.append(text)
    }
    _ = try? parseInvocation(arguments)
}
