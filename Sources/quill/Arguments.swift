// Hand-written argument parsing: flags follow llama.cpp's llama-cli where it has one.
// Accepts "--flag value", "--flag=value" and "-x value"; "--" ends the flags.

/// A command line that cannot be understood. Printed with a hint; exit status 2.
struct UsageError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Everything the command line asked for.
enum Invocation {
    case help
    case version
    case generate(GenerateOptions)
    case logits(LogitsOptions)
}

/// `quill logits -m MODEL --ids 1,2,3`: every position's logits as JSON, for checking a model
/// against another implementation.
struct LogitsOptions {
    var modelPath: String?
    var ids: [Int] = []
    var threads: Int?
    var batchSize = 64
}

/// Options of the default command, generation.
struct GenerateOptions {
    var modelPath: String?
    var tokenizerPath: String?
    /// Where the prompt comes from; nil means stdin when it is not a terminal, else empty.
    var prompt: PromptSource?
    var maxNewTokens = -1
    var threads: Int?
    var batchSize = 64
    var verbose = false
    var sampling = SamplingOptions()
}

/// Sampling flags as typed (validated by the library's SamplingParameters).
struct SamplingOptions {
    var temperature: Float?
    var topK: Int?
    var topP: Float?
    var minP: Float?
    var seed: UInt64?
}

enum PromptSource: Equatable {
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

func parseInt(_ text: String, flag: String) throws(UsageError) -> Int {
    guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
        throw UsageError("\(flag) expects an integer, got '\(text)'")
    }
    return value
}

func parseFloat(_ text: String, flag: String) throws(UsageError) -> Float {
    guard let value = Float(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
        throw UsageError("\(flag) expects a finite number, got '\(text)'")
    }
    return value
}

/// Parses the whole command line (without the program name).
func parseInvocation(_ arguments: [String]) throws(UsageError) -> Invocation {
    switch arguments.first {
    case "logits": return try parseLogits(Array(arguments.dropFirst()))
    default: break
    }
    var scanner = ArgumentScanner(arguments)
    var options = GenerateOptions()
    var positional: [String] = []

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
            case "-n", "--n-predict":
                let n = try parseInt(value(), flag: flag)
                guard n >= -1 else { throw UsageError("\(flag) must be ≥ -1 (-1 = until the context is full), got \(n)") }
                options.maxNewTokens = n
            case "-t", "--threads": options.threads = try parseThreads(value(), flag: flag)
            case "-b", "--batch-size": options.batchSize = try parseBatchSize(value(), flag: flag)
            case "--temp": options.sampling.temperature = try parseFloat(value(), flag: flag)
            case "--top-k": options.sampling.topK = try parseInt(value(), flag: flag)
            case "--top-p": options.sampling.topP = try parseFloat(value(), flag: flag)
            case "--min-p": options.sampling.minP = try parseFloat(value(), flag: flag)
            case "-s", "--seed":
                let text = try value()
                if text == "-1" {
                    options.sampling.seed = nil  // llama.cpp: -1 means a random seed
                } else {
                    guard let seed = UInt64(text) else {
                        throw UsageError("\(flag) expects an integer from 0 to \(UInt64.max) (or -1 for random), got '\(text)'")
                    }
                    options.sampling.seed = seed
                }
            case "--verbose": try noValue(); options.verbose = true
            default:
                throw UsageError("unknown option '\(flag)'")
            }
        }
    }
    if positional.count > 1 {
        throw UsageError("expected at most one prompt argument, got \(positional.count) (quote the prompt)")
    }
    if let text = positional.first { try setPrompt(text == "-" ? .standardInput : .text(text)) }
    return .generate(options)
}

private func nonEmpty(_ text: String, flag: String) throws(UsageError) -> String {
    guard !text.isEmpty else { throw UsageError("\(flag) needs a non-empty value") }
    return text
}

/// "1,403,407" → [1, 403, 407].
func parseIDs(_ text: String, flag: String) throws(UsageError) -> [Int] {
    var ids: [Int] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: false) {
        guard let id = Int(part.trimmingCharacters(in: .whitespaces)), id >= 0 else {
            throw UsageError("\(flag) expects comma-separated token ids ≥ 0, got '\(part)'")
        }
        ids.append(id)
    }
    return ids
}

func parseThreads(_ text: String, flag: String) throws(UsageError) -> Int {
    let n = try parseInt(text, flag: flag)
    guard n >= 1 && n <= 1024 else { throw UsageError("\(flag) must be between 1 and 1024, got \(n)") }
    return n
}

func parseBatchSize(_ text: String, flag: String) throws(UsageError) -> Int {
    let n = try parseInt(text, flag: flag)
    guard n >= 1 && n <= 4096 else { throw UsageError("\(flag) must be between 1 and 4096, got \(n)") }
    return n
}

private func parseLogits(_ arguments: [String]) throws(UsageError) -> Invocation {
    var scanner = ArgumentScanner(arguments)
    var options = LogitsOptions()
    while let item = scanner.next() {
        switch item {
        case .positional(let text):
            throw UsageError("logits: unexpected argument '\(text)'")
        case .flag(let flag, let inline):
            switch flag {
            case "-h", "--help": return .help
            case "-m", "--model": options.modelPath = try nonEmpty(scanner.value(for: flag, inline: inline), flag: flag)
            case "--ids": options.ids = try parseIDs(scanner.value(for: flag, inline: inline), flag: flag)
            case "-t", "--threads": options.threads = try parseThreads(scanner.value(for: flag, inline: inline), flag: flag)
            case "-b", "--batch-size": options.batchSize = try parseBatchSize(scanner.value(for: flag, inline: inline), flag: flag)
            default: throw UsageError("logits: unknown option '\(flag)'")
            }
        }
    }
    guard !options.ids.isEmpty else { throw UsageError("logits: give the token ids with --ids 1,2,3") }
    return .logits(options)
}
