import Foundation
import Quill

// Hand-written argument parsing: flags follow llama.cpp's llama-cli where it has one.
// Accepts "--flag value", "--flag=value" and "-x value"; "--" ends the flags. Every flag a parser
// takes is a row of CommandTable.swift (a flag missing there is refused as unknown, and a test
// reads this file to name it); generation's request parameters are read by their table rows.

/// A command line that cannot be understood. Printed with a hint; exit status 2.
public struct UsageError: Error {
    public let message: String
    public init(_ message: String) { self.message = message }
}

/// Everything the command line asked for.
public enum Invocation {
    case help
    case version
    case generate(GenerateOptions)
    case logits(LogitsOptions)
    case perplexity(PerplexityOptions)
    case tokenize(TokenizeOptions)
    case detokenize(TokenizeOptions)
    case info(InfoOptions)
    case quantize(QuantizeOptions)
    case bench(BenchOptions)
    /// `quill SUBCOMMAND --help`: that command's own usage.
    case commandHelp(CommandSpec)
    /// `quill _docs KIND`: a file made from the command table (man page, completions, README table).
    case documentation(String)
}

/// `quill perplexity`: how well a model predicts a text (or an exact id sequence).
public struct PerplexityOptions {
    public var modelPath: String?
    public var tokenizerPath: String?
    public var file: String?
    public var ids: [Int]?
    public var idsFile: String?
    public var stride: Int?
    /// `-c`: positions of the KV cache (the window length; default: the text, within the context).
    public var ctxSize: Int?
    /// `--stream`: one pass through a rolling cache with attention sinks instead of windows.
    public var stream = false
    /// `--keep`: the attention sinks of `--stream` (default 4).
    public var keep: Int?
    public var json = false
    public var perToken = false
    /// The work to be done on stderr before scoring starts.
    public var verbose = false
    public var threads: Int?
    public var batchSize = 64
    /// No progress line even when stderr is a terminal.
    public var noProgress = false
}

/// `quill tokenize` / `quill detokenize`.
public struct TokenizeOptions {
    public enum Format { case ids, pieces, json }
    public var tokenizerPath: String?
    public var modelPath: String?
    public var input: PromptSource?
    public var format = Format.ids
    public var addBOS = true
}

/// `quill info -m MODEL`.
public struct InfoOptions {
    public var modelPath: String?
    public var tokenizerPath: String?
    public var json = false
}

/// `quill quantize IN OUT [TYPE]`: any model Quill reads → GGUF of TYPE; without a type, a
/// float32 llama2.c checkpoint → int8 llama2.c version 2.
public struct QuantizeOptions {
    public var input = ""
    public var output = ""
    /// The GGUF storage type (`--type` or the third argument, as llama-quantize takes it); nil
    /// writes llama2.c version 2.
    public var type: String?
    /// `-z`: the SentencePiece model whose vocabulary the GGUF file carries (default: the one
    /// Quill finds for IN, or a GGUF input's own).
    public var tokenizerPath: String?
    /// nil: 64, or the largest power of two below it that divides dim and hidden_dim.
    public var groupSize: Int?
    /// No progress line even when stderr is a terminal.
    public var noProgress = false
}

/// The storage types `quill quantize` writes (Quill has no K-quant quantizer).
public let quantizeTypes = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_0"]
/// The storage types `quill bench --type` writes (the K types as random blocks).
public let benchTypes = quantizeTypes + ["Q4_K", "Q5_K", "Q6_K", "Q4_K_M"]
/// The random-weight shapes of `quill bench --shape`.
public let benchShapes = ["15m", "42m", "110m", "tinyllama", "gpt2", "qwen2-0.5b", "gemma-2b", "gemma2-2b", "phi3-mini"]

/// `quill bench`: prompt and generation speed in a llama-bench style table.
public struct BenchOptions {
    public var shape: String?
    public var modelPath: String?
    public var quantize = false
    /// `--type`: the random weights of `--shape` written as GGUF of this storage type.
    public var type: String?
    public var promptTokens = 512
    public var generateTokens = 128
    public var repetitions = 5
    public var threads: Int?
    public var batchSize = 512
    public var parallel = 8
    /// `-c`: positions of the KV caches (default: the larger of -p and -n).
    public var ctxSize: Int?
    public var json = false
    /// Name shown for the model (set when `--shape` re-runs bench on the file it wrote).
    public var label: String?
}

/// `quill logits -m MODEL --ids 1,2,3`: every position's logits as JSON, for checking a model
/// against another implementation.
public struct LogitsOptions {
    public var modelPath: String?
    public var ids: [Int] = []
    public var threads: Int?
    public var batchSize = 64
}

/// Options of the default command, generation.
public struct GenerateOptions {
    public var modelPath: String?
    public var tokenizerPath: String?
    /// Where the prompt comes from; nil means stdin when it is not a terminal, else empty.
    public var prompt: PromptSource?
    /// Every row of `RequestParameter.all` as the flags set it (checked), the library's defaults
    /// for the rest; its prompt stays empty.
    public var request = GenerationRequest(prompt: [])
    public var maxNewTokens: Int { request.maxNewTokens }
    public var sampling: SamplingParameters { request.sampling }
    /// Strings that end generation (-r/--reverse-prompt/--stop, repeatable).
    public var stopStrings: [String] { request.stopStrings }
    public var ignoreEOS: Bool { request.ignoreEOS }
    public var threads: Int?
    public var batchSize = 64
    public var verbose = false
    /// Process \n, \t, \\ in -p (never in files or stdin).
    public var escape = false
    /// Print the prompt before the generated text.
    public var echo = false
    /// One JSON object instead of streamed text.
    public var json = false
    /// --batch FILE: one request per line ("-" is stdin).
    public var batchFile: String?
    public var parallel: Int?
    public var noProgress = false
    public var shard: (index: Int, count: Int)?
    /// --output FILE: results appended to FILE instead of stdout (issue #14).
    public var outputFile: String?
    /// --resume: skip the requests whose id FILE already holds (needs --output).
    public var resume = false
    /// `-c`: positions of the KV cache (default: prompt + -n within the context; the context for -n -1 and --batch).
    public var ctxSize: Int?
    /// `--keep`: tokens kept at the start when the cache is full (the attention sinks); nil: 4,
    /// or no shift in a cache too small to keep 4 and drop any.
    public var keep: Int?
    /// `--no-context-shift` clears it: stop when the cache is full, refuse a longer prompt.
    public var contextShift = true

    // MARK: Interactive and chat use (issue #13)
    /// `-i`: a conversation that keeps the KV cache between turns (one turn a line on stdin).
    public var interactive = false
    /// `--chat` / `-cnv`: turns wrapped in the model's chat template (implies `-i`).
    public var chat = false
    /// `--chat-template NAME`: a template chosen by hand instead of the model's.
    public var chatTemplate: String?
    /// `-sys`: the system message of a chat (and of batch lines with "messages").
    public var systemPrompt: String?
    /// `--json-stream`: one JSON object per token, then a summary object (NDJSON).
    public var jsonStream = false
    /// `--logprobs N`: each token's log-probability and its N most likely alternatives (a row of
    /// the parameter table, so it lives in `request`).
    public var logprobs: Int? { request.logprobs }
}

public enum PromptSource: Equatable {
    case text(String)
    case file(String)  // "-" is stdin
    case standardInput
}

/// Reads flags one at a time.
struct ArgumentScanner {
    private let arguments: [String]
    private var index = 0
    private var flagsEnded = false

    init(_ arguments: [String]) { self.arguments = arguments }

    enum Item {
        case flag(String, inlineValue: String?)
        case positional(String)
    }

    mutating func next() -> Item? {
        guard index < arguments.count else { return nil }
        let argument = arguments[index]
        index += 1
        if flagsEnded || argument == "-" || !argument.hasPrefix("-") || isNegativeNumber(argument) {
            return .positional(argument)
        }
        if argument == "--" {
            flagsEnded = true
            return next()
        }
        if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
            return .flag(String(argument[..<equals]), inlineValue: String(argument[argument.index(after: equals)...]))
        }
        return .flag(argument, inlineValue: nil)
    }

    /// The value of `flag`: its inline "=value" or the next argument.
    mutating func value(for flag: String, inline: String?) throws(UsageError) -> String {
        if let inline { return inline }
        guard index < arguments.count else { throw UsageError("\(flag) needs a value") }
        index += 1
        return arguments[index - 1]
    }

    private func isNegativeNumber(_ text: String) -> Bool {
        text.count > 1 && Double(text) != nil
    }
}

public func parseInt(_ text: String, flag: String) throws(UsageError) -> Int {
    guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
        throw UsageError("\(flag) expects an integer, got '\(text)'")
    }
    return value
}

/// A decimal number ("0.7", "-1", "1e-3"); Float(_:) alone would also take hexadecimal
/// ("0x10"), "nan" and "inf", which no one means on a command line.
public func parseFloat(_ text: String, flag: String) throws(UsageError) -> Float {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    guard isDecimalNumber(trimmed), let value = Float(trimmed), value.isFinite else {
        throw UsageError("\(flag) expects a finite decimal number, got '\(text)'")
    }
    return value
}

/// Whether `text` is [+-] digits [. digits] [e [+-] digits], with at least one digit before the exponent.
func isDecimalNumber(_ text: String) -> Bool {
    var bytes = Substring(text).utf8[...]
    func digits() -> Int {
        let count = bytes.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }.count
        bytes = bytes.dropFirst(count)
        return count
    }
    if bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
    var count = digits()
    if bytes.first == UInt8(ascii: ".") {
        bytes = bytes.dropFirst()
        count += digits()
    }
    guard count > 0 else { return false }
    if bytes.first == UInt8(ascii: "e") || bytes.first == UInt8(ascii: "E") {
        bytes = bytes.dropFirst()
        if bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        guard digits() > 0 else { return false }
    }
    return bytes.isEmpty
}

/// Parses the whole command line (without the program name).
public func parseInvocation(_ arguments: [String]) throws(UsageError) -> Invocation {
    switch arguments.first {
    case "logits": return try parseLogits(Array(arguments.dropFirst()))
    case "perplexity": return try parsePerplexity(Array(arguments.dropFirst()))
    case "tokenize": return try parseTokenize(Array(arguments.dropFirst()), decode: false)
    case "detokenize": return try parseTokenize(Array(arguments.dropFirst()), decode: true)
    case "info": return try parseInfo(Array(arguments.dropFirst()))
    case "quantize": return try parseQuantize(Array(arguments.dropFirst()))
    case "bench": return try parseBench(Array(arguments.dropFirst()))
    case "_docs":
        guard arguments.count == 2, documentationKinds.contains(arguments[1]) else {
            throw UsageError("_docs prints one of \(documentationKinds.joined(separator: ", "))")
        }
        return .documentation(arguments[1])
    default: break
    }
    var scanner = ArgumentScanner(arguments)
    var options = GenerateOptions()
    var positional: [String] = []
    var stopStrings: [String] = []

    func setPrompt(_ source: PromptSource) throws(UsageError) {
        if let existing = options.prompt, existing != source {
            throw UsageError("give the prompt once: as an argument, -p, -f or stdin")
        }
        options.prompt = source
    }

    while let item = scanner.next() {
        switch item {
        case .positional(let text):
            positional.append(text)
        case .flag(let flag, let inline):
            func value() throws(UsageError) -> String { try scanner.value(for: flag, inline: inline) }
            func noValue() throws(UsageError) {
                if inline != nil { throw UsageError("\(flag) takes no value") }
            }
            guard let spec = CommandSpec.generate.option(flag) else { throw UsageError("unknown option '\(flag)'") }
            if let key = spec.parameter {
                let parameter = RequestParameter.named(key)!
                if case .strings = parameter.kind {
                    stopStrings.append(try nonEmpty(value(), flag: flag))  // repeatable: applied once, all together, below
                } else {
                    let given = try parameterValue(parameter, flag: flag, text: parameter.valueName == nil ? nil : value(), inline: inline)
                    try apply(parameter, given, flag: flag, to: &options.request)
                }
                continue
            }
            switch flag {
            case "-h", "--help": try noValue(); return .help
            case "--version": try noValue(); return .version
            case "-m", "--model": options.modelPath = try nonEmpty(value(), flag: flag)
            case "-z", "--tokenizer": options.tokenizerPath = try nonEmpty(value(), flag: flag)
            case "-p", "--prompt":
                let text = try value()
                try setPrompt(text == "-" ? .standardInput : .text(text))
            case "-f", "--file":
                let path = try nonEmpty(value(), flag: flag)
                try setPrompt(path == "-" ? .standardInput : .file(path))
            case "-t", "--threads": options.threads = try parseThreads(value(), flag: flag)
            case "-b", "--batch-size": options.batchSize = try parseBatchSize(value(), flag: flag)
            case "-e", "--escape": try noValue(); options.escape = true
            case "--echo": try noValue(); options.echo = true
            case "--json": try noValue(); options.json = true
            case "--batch": options.batchFile = try nonEmpty(value(), flag: flag)
            case "--parallel":
                let n = try parseInt(value(), flag: flag)
                guard n >= 1 && n <= 256 else { throw UsageError("\(flag) must be between 1 and 256, got \(n)") }
                options.parallel = n
            case "--no-progress": try noValue(); options.noProgress = true
            case "--shard": options.shard = try parseShard(value(), flag: flag)
            case "--output": options.outputFile = try nonEmpty(value(), flag: flag)
            case "--resume": try noValue(); options.resume = true
            case "--verbose": try noValue(); options.verbose = true
            case "-c", "--ctx-size": options.ctxSize = try parseContextSize(value(), flag: flag)
            case "--keep": options.keep = try parseKeep(value(), flag: flag)
            case "--no-context-shift": try noValue(); options.contextShift = false
            // Interactive and chat use (issue #13).
            case "-i", "--interactive": try noValue(); options.interactive = true
            case "--chat", "-cnv", "--conversation": try noValue(); options.chat = true
            case "--chat-template": options.chatTemplate = try nonEmpty(value(), flag: flag)
            case "-sys", "--system-prompt": options.systemPrompt = try value()
            case "--json-stream": try noValue(); options.jsonStream = true
            default:
                throw UsageError("unknown option '\(flag)'")
            }
        }
    }
    if !stopStrings.isEmpty {
        try apply(RequestParameter.named("stop")!, .strings(stopStrings), flag: "--stop", to: &options.request)
    }
    if positional.count > 1 {
        throw UsageError("expected at most one prompt argument, got \(positional.count) (quote the prompt)")
    }
    if let word = positional.first, word == arguments.first, let name = nearSubcommand(word) {
        throw UsageError("'\(word)' is not a subcommand: did you mean '\(name)'? (for a prompt of that one word: quill -p \(word))")
    }
    if let text = positional.first { try setPrompt(text == "-" ? .standardInput : .text(text)) }
    if options.batchFile != nil {
        if options.prompt != nil { throw UsageError("--batch reads its prompts from the batch file; drop the prompt") }
        if options.echo { throw UsageError("--echo cannot be used with --batch") }
    } else {
        if options.parallel != nil { throw UsageError("--parallel needs --batch") }
        if options.shard != nil { throw UsageError("--shard needs --batch") }
        if options.outputFile != nil { throw UsageError("--output needs --batch") }
    }
    if options.resume && options.outputFile == nil { throw UsageError("--resume needs --output FILE (the file to continue)") }
    if options.json && options.echo { throw UsageError("--echo cannot be used with --json") }
    try checkChatOptions(&options)
    return .generate(options)
}

/// The rules of the interactive and chat flags (issue #13): `--chat` implies `-i`; the JSON
/// forms are one at a time; what only a chat or JSON output uses is refused elsewhere.
private func checkChatOptions(_ options: inout GenerateOptions) throws(UsageError) {
    if options.chatTemplate != nil && !options.chat && options.batchFile == nil { options.chat = true }
    if options.chat { options.interactive = true }
    if options.jsonStream && options.json { throw UsageError("give one of --json and --json-stream") }
    if options.jsonStream && options.echo { throw UsageError("--echo cannot be used with --json-stream") }
    if options.interactive {
        if options.batchFile != nil { throw UsageError("-i/--chat reads turns from stdin; it cannot be used with --batch") }
        if options.echo { throw UsageError("--echo cannot be used with -i or --chat") }
    }
    if options.systemPrompt != nil && !options.chat && options.batchFile == nil {
        throw UsageError("--system-prompt needs --chat (or --batch lines with \"messages\")")
    }
    if options.logprobs != nil && !options.json && !options.jsonStream && options.batchFile == nil {
        throw UsageError("--logprobs needs --json, --json-stream or --batch (plain text has nowhere to put them)")
    }
    if options.jsonStream && options.batchFile != nil { throw UsageError("--json-stream cannot be used with --batch") }
}

private func nonEmpty(_ text: String, flag: String) throws(UsageError) -> String {
    guard !text.isEmpty else { throw UsageError("\(flag) needs a non-empty value") }
    return text
}

/// "1,403,407" → [1, 403, 407].
public func parseIDs(_ text: String, flag: String) throws(UsageError) -> [Int] {
    var ids: [Int] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: false) {
        guard let id = Int(part.trimmingCharacters(in: .whitespaces)), id >= 0 else {
            throw UsageError("\(flag) expects comma-separated token ids ≥ 0, got '\(part)'")
        }
        ids.append(id)
    }
    return ids
}

public func parseThreads(_ text: String, flag: String) throws(UsageError) -> Int {
    let n = try parseInt(text, flag: flag)
    guard n >= 1 && n <= 1024 else { throw UsageError("\(flag) must be between 1 and 1024, got \(n)") }
    return n
}

/// `-c N`: a KV cache of N ≥ 1 positions (the model's context bounds it once the model is known).
public func parseContextSize(_ text: String, flag: String) throws(UsageError) -> Int {
    let n = try parseInt(text, flag: flag)
    guard n >= 1 else { throw UsageError("\(flag) must be ≥ 1 (positions of the KV cache), got \(n)") }
    return n
}

/// `--keep N`: N ≥ 0 tokens kept at the start of a full cache.
public func parseKeep(_ text: String, flag: String) throws(UsageError) -> Int {
    let n = try parseInt(text, flag: flag)
    guard n >= 0 else { throw UsageError("\(flag) must be ≥ 0 (tokens kept at the start), got \(n)") }
    return n
}

public func parseBatchSize(_ text: String, flag: String) throws(UsageError) -> Int {
    let n = try parseInt(text, flag: flag)
    guard n >= 1 && n <= 4096 else { throw UsageError("\(flag) must be between 1 and 4096, got \(n)") }
    return n
}

private func parseLogits(_ arguments: [String]) throws(UsageError) -> Invocation {
    var o = LogitsOptions()
    let help = try scanSubcommand("logits", arguments, positional: { text throws(UsageError) in
        throw UsageError("logits: unexpected argument '\(text)'")
    }) { flag, value, _ throws(UsageError) in
        switch flag {
        case "-m", "--model": o.modelPath = try nonEmpty(value(), flag: flag)
        case "--ids": o.ids = try parseIDs(value(), flag: flag)
        case "-t", "--threads": o.threads = try parseThreads(value(), flag: flag)
        case "-b", "--batch-size": o.batchSize = try parseBatchSize(value(), flag: flag)
        default: return false
        }
        return true
    }
    if help { return .commandHelp(CommandSpec.logits) }
    guard !o.ids.isEmpty else { throw UsageError("logits: give the token ids with --ids 1,2,3") }
    return .logits(o)
}

/// "K/N" with 0 ≤ K < N.
public func parseShard(_ text: String, flag: String) throws(UsageError) -> (index: Int, count: Int) {
    let parts = text.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]), n >= 1, k >= 0, k < n else {
        throw UsageError("\(flag) expects K/N with 0 ≤ K < N, got '\(text)'")
    }
    return (k, n)
}

/// Walks the flags of a subcommand: `handle` returns false for a flag it does not know.
private func scanSubcommand(
    _ name: String, _ arguments: [String], positional: (String) throws(UsageError) -> Void,
    handle: (String, () throws(UsageError) -> String, String?) throws(UsageError) -> Bool
) throws(UsageError) -> Bool {
    var scanner = ArgumentScanner(arguments)
    while let item = scanner.next() {
        switch item {
        case .positional(let text):
            try positional(text)
        case .flag(let flag, let inline):
            if flag == "-h" || flag == "--help" { return true }
            func value() throws(UsageError) -> String { try scanner.value(for: flag, inline: inline) }
            guard CommandSpec.named(name)!.option(flag) != nil, try handle(flag, value, inline) else {
                throw UsageError("\(name): unknown option '\(flag)'")
            }
        }
    }
    return false
}

private func noValue(_ flag: String, _ inline: String?) throws(UsageError) {
    if inline != nil { throw UsageError("\(flag) takes no value") }
}

private func parsePerplexity(_ arguments: [String]) throws(UsageError) -> Invocation {
    var o = PerplexityOptions()
    let help = try scanSubcommand("perplexity", arguments, positional: { text throws(UsageError) in
        throw UsageError("perplexity: unexpected argument '\(text)' (give the text with -f FILE)")
    }) { flag, value, inline throws(UsageError) in
        switch flag {
        case "-m", "--model": o.modelPath = try nonEmpty(value(), flag: flag)
        case "-z", "--tokenizer": o.tokenizerPath = try nonEmpty(value(), flag: flag)
        case "-f", "--file": o.file = try nonEmpty(value(), flag: flag)
        case "--ids": o.ids = try parseIDs(value(), flag: flag)
        case "--ids-file": o.idsFile = try nonEmpty(value(), flag: flag)
        case "--stride":
            let n = try parseInt(value(), flag: flag)
            guard n >= 1 else { throw UsageError("\(flag) must be ≥ 1, got \(n)") }
            o.stride = n
        case "-c", "--ctx-size": o.ctxSize = try parseContextSize(value(), flag: flag)
        case "--stream": try noValue(flag, inline); o.stream = true
        case "--keep": o.keep = try parseKeep(value(), flag: flag)
        case "--json": try noValue(flag, inline); o.json = true
        case "--per-token": try noValue(flag, inline); o.perToken = true
        case "--verbose": try noValue(flag, inline); o.verbose = true
        case "--no-progress": try noValue(flag, inline); o.noProgress = true
        case "-t", "--threads": o.threads = try parseThreads(value(), flag: flag)
        case "-b", "--batch-size": o.batchSize = try parseBatchSize(value(), flag: flag)
        default: return false
        }
        return true
    }
    if help { return .commandHelp(CommandSpec.perplexity) }
    let sources = [o.file != nil, o.ids != nil, o.idsFile != nil].filter { $0 }.count
    guard sources == 1 else { throw UsageError("perplexity: give exactly one of -f FILE, --ids or --ids-file") }
    if o.perToken && !o.json { throw UsageError("--per-token needs --json") }
    if o.stream && o.stride != nil { throw UsageError("perplexity: --stride is for windows; --stream has none") }
    if o.keep != nil && !o.stream { throw UsageError("--keep needs --stream") }
    return .perplexity(o)
}

private func parseTokenize(_ arguments: [String], decode: Bool) throws(UsageError) -> Invocation {
    var o = TokenizeOptions()
    let name = decode ? "detokenize" : "tokenize"
    func setInput(_ source: PromptSource) throws(UsageError) {
        if o.input != nil { throw UsageError("\(name): give the input once: as an argument, -f or stdin") }
        o.input = source
    }
    let help = try scanSubcommand(name, arguments, positional: { text throws(UsageError) in
        try setInput(text == "-" ? .standardInput : .text(text))
    }) { flag, value, inline throws(UsageError) in
        switch flag {
        case "-z", "--tokenizer": o.tokenizerPath = try nonEmpty(value(), flag: flag)
        case "-m", "--model": o.modelPath = try nonEmpty(value(), flag: flag)
        case "-f", "--file":
            let path = try nonEmpty(value(), flag: flag)
            try setInput(path == "-" ? .standardInput : .file(path))
        case "--ids" where !decode: try noValue(flag, inline); o.format = .ids
        case "--pieces" where !decode: try noValue(flag, inline); o.format = .pieces
        case "--json" where !decode: try noValue(flag, inline); o.format = .json
        case "--no-bos" where !decode: try noValue(flag, inline); o.addBOS = false
        default: return false
        }
        return true
    }
    if help { return .commandHelp(decode ? CommandSpec.detokenize : CommandSpec.tokenize) }
    return decode ? .detokenize(o) : .tokenize(o)
}

private func parseInfo(_ arguments: [String]) throws(UsageError) -> Invocation {
    var o = InfoOptions()
    let help = try scanSubcommand("info", arguments, positional: { text throws(UsageError) in
        if o.modelPath != nil { throw UsageError("info: unexpected argument '\(text)'") }
        o.modelPath = text
    }) { flag, value, inline throws(UsageError) in
        switch flag {
        case "-m", "--model": o.modelPath = try nonEmpty(value(), flag: flag)
        case "-z", "--tokenizer": o.tokenizerPath = try nonEmpty(value(), flag: flag)
        case "--json": try noValue(flag, inline); o.json = true
        default: return false
        }
        return true
    }
    return help ? .commandHelp(CommandSpec.info) : .info(o)
}

private func parseQuantize(_ arguments: [String]) throws(UsageError) -> Invocation {
    var o = QuantizeOptions()
    var paths: [String] = []
    func setType(_ text: String) throws(UsageError) {
        let name = text.uppercased()
        guard quantizeTypes.contains(name) else {
            let hint = benchTypes.contains(name) ? " (Quill reads \(name) but has no quantizer for it)" : ""
            throw UsageError("quantize: unknown type '\(text)'\(hint); types: \(quantizeTypes.joined(separator: ", "))")
        }
        if let given = o.type, given != name { throw UsageError("quantize: two types given, \(given) and \(name)") }
        o.type = name
    }
    let help = try scanSubcommand("quantize", arguments, positional: { text throws(UsageError) in
        if paths.count == 2 { try setType(text) } else { paths.append(text) }
    }) { flag, value, inline throws(UsageError) in
        switch flag {
        case "--group-size":
            let n = try parseInt(value(), flag: flag)
            guard n >= 1 && n <= 4096 else { throw UsageError("\(flag) must be between 1 and 4096, got \(n)") }
            o.groupSize = n
        case "--type": try setType(value())
        case "-z", "--tokenizer": o.tokenizerPath = try nonEmpty(value(), flag: flag)
        case "--no-progress": try noValue(flag, inline); o.noProgress = true
        default: return false
        }
        return true
    }
    if help { return .commandHelp(CommandSpec.quantize) }
    guard paths.count == 2 else { throw UsageError("quantize: expected IN and OUT paths, got \(paths.count) arguments") }
    (o.input, o.output) = (paths[0], paths[1])
    if o.type != nil && o.groupSize != nil {
        throw UsageError("quantize: --group-size is for llama2.c output (no type); GGUF types have fixed blocks")
    }
    if o.type == nil {
        if o.output.lowercased().hasSuffix(".gguf") {
            throw UsageError("quantize: give the GGUF type for \(o.output) (\(quantizeTypes.joined(separator: ", ")))")
        }
        if o.tokenizerPath != nil { throw UsageError("quantize: -z is for GGUF output (give a type); llama2.c files hold no tokenizer") }
    }
    return .quantize(o)
}

private func parseBench(_ arguments: [String]) throws(UsageError) -> Invocation {
    var o = BenchOptions()
    func count(_ text: String, _ flag: String, min: Int) throws(UsageError) -> Int {
        let n = try parseInt(text, flag: flag)
        guard n >= min else { throw UsageError("\(flag) must be ≥ \(min), got \(n)") }
        return n
    }
    let help = try scanSubcommand("bench", arguments, positional: { text throws(UsageError) in
        throw UsageError("bench: unexpected argument '\(text)'")
    }) { flag, value, inline throws(UsageError) in
        switch flag {
        case "--shape":
            let shape = try value()
            guard benchShapes.contains(shape) else {
                throw UsageError("--shape must be one of \(benchShapes.joined(separator: ", ")), got '\(shape)'")
            }
            o.shape = shape
        case "-m", "--model": o.modelPath = try nonEmpty(value(), flag: flag)
        case "--q8": try noValue(flag, inline); o.quantize = true
        case "--type":
            let type = try value()
            guard benchTypes.contains(type.uppercased()) else {
                throw UsageError("--type must be one of \(benchTypes.joined(separator: ", ")), got '\(type)'")
            }
            o.type = type.uppercased()
        case "-p", "--n-prompt": o.promptTokens = try count(value(), flag, min: 0)
        case "-n", "--n-gen": o.generateTokens = try count(value(), flag, min: 0)
        case "-r", "--repetitions": o.repetitions = try count(value(), flag, min: 1)
        case "-t", "--threads": o.threads = try parseThreads(value(), flag: flag)
        case "-b", "--batch-size": o.batchSize = try parseBatchSize(value(), flag: flag)
        case "--parallel":
            o.parallel = try count(value(), flag, min: 0)
            guard o.parallel <= 256 else { throw UsageError("\(flag) must be between 0 and 256, got \(o.parallel)") }
        case "-c", "--ctx-size": o.ctxSize = try parseContextSize(value(), flag: flag)
        case "--json": try noValue(flag, inline); o.json = true
        case "--label": o.label = try value()
        default: return false
        }
        return true
    }
    if help { return .commandHelp(CommandSpec.bench) }
    if o.shape != nil && o.modelPath != nil { throw UsageError("bench: give --shape or -m, not both") }
    if o.type != nil && o.modelPath != nil { throw UsageError("bench: --type writes random weights for --shape; -m runs a file as it is") }
    if o.type != nil && o.quantize { throw UsageError("bench: give --q8 (llama2.c int8) or --type (GGUF), not both") }
    return .bench(o)
}

// MARK: - Request parameters from their table rows

/// A request parameter's flag text checked for its kind's spelling (the messages name the flag);
/// `text` is nil for a flag without a value.
private func parameterValue(_ parameter: RequestParameter, flag: String, text: String?, inline: String?) throws(UsageError) -> ParameterValue {
    switch parameter.kind {
    case .integer, .count: return .number(String(try parseInt(text!, flag: flag)))
    case .decimal:
        _ = try parseFloat(text!, flag: flag)
        return .number(text!.trimmingCharacters(in: .whitespaces))
    case .seed:
        guard text == "-1" || UInt64(text!) != nil else {
            throw UsageError("\(flag) expects an integer from 0 to \(UInt64.max) (or -1 for random), got '\(text!)'")
        }
        return .number(text!)
    case .flag:
        try noValue(flag, inline)
        return .bool(true)
    case .strings: return .strings([try nonEmpty(text!, flag: flag)])
    }
}

/// Sets a request parameter through its table row; the row's message gets the flag's name.
private func apply(_ parameter: RequestParameter, _ value: ParameterValue, flag: String,
                   to request: inout GenerationRequest) throws(UsageError) {
    do { try parameter.apply(value, to: &request) } catch { throw UsageError("\(flag) \(error.problem)") }
}

// MARK: - Did you mean

/// The subcommand one edit away from `word` (a letter added, dropped, changed, or two
/// neighbours swapped: Damerau–Levenshtein distance 1), nil when none is or `word` is one.
public func nearSubcommand(_ word: String) -> String? {
    CommandSpec.subcommandNames.first { editDistance(Array(word), Array($0)) == 1 }
}

/// Optimal string alignment distance (Damerau–Levenshtein with adjacent transpositions).
func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
    // d (a.count + 1, b.count + 1): d[i][j] is the distance between a's first i and b's first j.
    var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { d[i][0] = i }
    for j in 0...b.count { d[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[a.count][b.count]
}
