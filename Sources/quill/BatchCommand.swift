import Dispatch
import Foundation
import Quill

/// One line of a batch file, parsed: a request to run, or the error that line gets.
private enum BatchLine {
    case request(id: JSON, GenerationRequest)
    case failure(id: JSON, message: String)
}

private let requestKeys: Set<String> = [
    "id", "prompt", "n_predict", "temp", "top_p", "top_k", "min_p", "seed", "stop", "repeat_penalty",
    "repeat_last_n", "ignore_eos",
]

/// Parses one line: a JSON object (when it starts with "{") or a plain-text prompt.
/// Flags on the command line are the defaults that a JSON line's keys override.
private func parseLine(
    _ line: Substring, index: Int, defaults: GenerateOptions, sampling: SamplingParameters, model: LoadedModel
) -> BatchLine {
    var id = JSON.int(index)
    var request = GenerationRequest(prompt: [], maxNewTokens: defaults.maxNewTokens, sampling: sampling,
                                    ignoreEOS: defaults.ignoreEOS, stopStrings: defaults.stopStrings)
    var promptText = String(line)
    do {
        if line.first == "{" {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                return .failure(id: id, message: "line \(index + 1) is not a valid JSON object")
            }
            if let rawID = object["id"] {
                let data = try JSONSerialization.data(withJSONObject: rawID, options: [.fragmentsAllowed])
                id = .raw(String(decoding: data, as: UTF8.self))
            }
            if let unknown = object.keys.sorted().first(where: { !requestKeys.contains($0) }) {
                throw InputError("unknown key '\(unknown)'")
            }
            guard let prompt = object["prompt"] as? String else { throw InputError("'prompt' must be a string") }
            promptText = prompt
            // JSONSerialization gives NSNumber for numbers and booleans alike; a boolean's
            // Objective-C type code is "c".
            func isBoolean(_ value: Any) -> Bool {
                guard let n = value as? NSNumber else { return false }
                return String(cString: n.objCType) == "c"
            }
            func number(_ key: String) throws -> Double? {
                guard let value = object[key] else { return nil }
                guard !isBoolean(value), let n = value as? NSNumber else { throw InputError("'\(key)' must be a number") }
                return n.doubleValue
            }
            func integer(_ key: String) throws -> Int? {
                guard let d = try number(key) else { return nil }
                guard d == d.rounded(), abs(d) < 1e15 else { throw InputError("'\(key)' must be an integer, got \(d)") }
                return Int(d)
            }
            if let n = try integer("n_predict") {
                guard n >= -1 else { throw InputError("'n_predict' must be ≥ -1, got \(n)") }
                request.maxNewTokens = n
            }
            if let v = try number("temp") { request.sampling.temperature = Float(v) }
            if let v = try number("top_p") { request.sampling.topP = Float(v) }
            if let v = try integer("top_k") { request.sampling.topK = v }
            if let v = try number("min_p") { request.sampling.minP = Float(v) }
            if let v = try number("repeat_penalty") { request.sampling.repeatPenalty = Float(v) }
            if let v = try integer("repeat_last_n") { request.sampling.repeatLastN = v }
            if let v = try integer("seed") {
                guard v >= -1 else { throw InputError("'seed' must be ≥ 0 (or -1 for random), got \(v)") }
                request.sampling.seed = v == -1 ? nil : UInt64(v)
            }
            if let value = object["ignore_eos"] {
                guard isBoolean(value), let flag = value as? Bool else { throw InputError("'ignore_eos' must be true or false") }
                request.ignoreEOS = flag
            }
            if let value = object["stop"] {
                if let single = value as? String {
                    request.stopStrings = [single]
                } else if let list = value as? [Any], let strings = list as? [String] {
                    request.stopStrings = strings
                } else {
                    throw InputError("'stop' must be a string or a list of strings")
                }
            }
            try request.sampling.validate()
        }
        request.prompt = try model.tokenizer.encode(promptText)
        try request.validate(for: model.transformer.config)
        return .request(id: id, request)
    } catch {
        return .failure(id: id, message: "\(error)")
    }
}

/// `quill --batch FILE`: one request per line in, one JSON object per line out, in input order.
func runBatch(_ options: GenerateOptions, file: String, sampling: SamplingParameters) throws -> ExitStatus {
    let input = try readPrompt(file == "-" ? .standardInput : .file(file))
    let parallel = options.parallel ?? 8
    let model = try loadModel(modelFlag: options.modelPath, tokenizerFlag: options.tokenizerPath,
                              threads: options.threads, batchSize: options.batchSize, parallel: parallel)
    // Every non-empty line is a request, numbered from 0; --shard K/N keeps index mod N == K.
    var lines: [(index: Int, line: BatchLine)] = []
    var index = 0
    for text in input.split(separator: "\n", omittingEmptySubsequences: false) {
        let line = text.hasSuffix("\r") ? text.dropLast() : text
        if line.allSatisfy(\.isWhitespace) { continue }
        defer { index += 1 }
        if let shard = options.shard, index % shard.count != shard.index { continue }
        lines.append((index, parseLine(line, index: index, defaults: options, sampling: sampling, model: model)))
    }

    let stdout = OutputStream.standardOutput
    let stderr = OutputStream.standardError
    let showProgress = stderr.isTerminal && !options.noProgress
    var outputs = [String?](repeating: nil, count: lines.count)
    var nextToWrite = 0
    var done = 0, generated = 0, failures = 0
    var outputClosed = false
    let start = DispatchTime.now()

    /// Records a finished line and writes every line that is now complete in input order.
    func complete(_ position: Int, _ json: JSON) {
        outputs[position] = json.encoded + "\n"
        done += 1
        while nextToWrite < outputs.count, let line = outputs[nextToWrite], !outputClosed {
            outputClosed = !stdout.write(line)  // one write per line: stdout only ever holds whole lines
            outputs[nextToWrite] = nil
            nextToWrite += 1
        }
        if showProgress {
            let elapsed = seconds(since: start)
            let rate = elapsed > 0 ? Double(generated) / elapsed : 0
            let eta = done > 0 ? elapsed / Double(done) * Double(lines.count - done) : 0
            stderr.write(String(format: "\r\u{1b}[K[%d/%d] %.1f tokens/s, ETA %.0f s", done, lines.count, rate, eta))
        }
    }

    var requests: [GenerationRequest] = []
    var requestLine: [Int] = []  // position in `lines` of each request
    for (position, entry) in lines.enumerated() {
        switch entry.line {
        case .request(_, let request):
            requests.append(request)
            requestLine.append(position)
        case .failure(let id, let message):
            failures += 1
            complete(position, .object([("id", id), ("error", .string(message))]))
        }
    }
    let generator = BatchGenerator(transformer: model.transformer, tokenizer: model.tokenizer, parallel: parallel)
    generator.run(requests, finished: { result in
        let position = requestLine[result.index]
        guard case .request(let id, _) = lines[position].line else { return }
        generated += result.stats.generatedTokens
        complete(position, resultJSON(id: id, text: result.text, stats: result.stats))
    }, shouldStop: { interruptRequested.load(ordering: .relaxed) || outputClosed })
    if showProgress { stderr.write("\n") }
    if outputClosed { return .success }
    if interruptRequested.load(ordering: .relaxed) { return .interrupted }
    if options.verbose {
        let elapsed = seconds(since: start)
        stderr.write(String(format: "batch: %d requests, %d generated tokens in %.2f s (%.2f tokens/s), %d parallel, %d failed\n",
                            lines.count, generated, elapsed, elapsed > 0 ? Double(generated) / elapsed : 0, parallel, failures))
    }
    return failures > 0 ? .failure : .success
}
