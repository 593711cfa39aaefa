/// A parameter's value as written: a JSON value of a batch line, or a flag's text on the command
/// line once the command line has checked its spelling.
public enum ParameterValue: Sendable, Equatable {
    /// The digits as written (a JSON number, or a flag's decimal text), read exactly by the row.
    case number(String)
    case bool(Bool)
    case string(String)
    case strings([String])
    /// No value: an optional parameter left unset (the default of `.count` rows; nothing
    /// written in a batch line or on a command line reads as this).
    case absent
    /// A JSON value of no type any parameter takes (null, an object, a list of non-strings):
    /// every row refuses it, naming the type it wants.
    case other
}

/// One parameter of a generation request, as the one table of them all: its field, its
/// command-line flags, its batch-file JSON key, its default, the value that turns it off, its
/// check and its one-line help. The argument parser, the batch reader, `--help`, the man page,
/// the shell completions and the README's flag table are all made from `RequestParameter.all`,
/// so a new parameter is one new row here (and its field in `GenerationRequest`).
public struct RequestParameter: Sendable {
    /// How the value is read and which field of `GenerationRequest` it sets.
    public enum Kind: Sendable {
        /// A whole number (a JSON 5.0 or 1e2 is one too, up to 2^53).
        case integer(WritableKeyPath<GenerationRequest, Int> & Sendable)
        /// A finite decimal number.
        case decimal(WritableKeyPath<GenerationRequest, Float> & Sendable)
        /// 0 to 2^64−1 read digit by digit (a Double would round it); -1 is a random seed.
        case seed
        /// A whole number that may be unset (nil: nothing asked for), as an integer is read.
        case count(WritableKeyPath<GenerationRequest, Int?> & Sendable)
        /// true or false; on the command line a flag without a value sets true.
        case flag(WritableKeyPath<GenerationRequest, Bool> & Sendable)
        /// One string or a list of them, none empty; on the command line the flag repeats.
        case strings(WritableKeyPath<GenerationRequest, [String]> & Sendable)
    }

    /// The batch file's JSON key, and the name the library's messages use.
    public let key: String
    /// The command-line spellings, short ones first (the command line prints them; the library never does).
    public let flags: [String]
    /// The value's name in help texts (`T`, `N`); nil for a flag without a value.
    public let valueName: String?
    public let kind: Kind
    /// The value a request has when nothing sets it (equal to `GenerationRequest`'s own default; tested).
    public let defaultValue: ParameterValue
    /// The value that turns this step off, when there is one.
    public let off: String?
    /// What it does, in one line without its default.
    public let help: String
    /// Why a request's value is out of range (the value shown), nil when it is allowed.
    public let check: @Sendable (GenerationRequest) -> String?

    /// `defaultValue` as help texts show it.
    public var defaultText: String {
        switch defaultValue {
        case .number(let text), .string(let text): return text
        case .bool(let value): return value ? "on" : "off"
        case .strings(let list): return list.isEmpty ? "none" : list.joined(separator: ", ")
        case .absent: return "none"
        case .other: return ""
        }
    }

    /// Sets this parameter of `request` to `value` and checks it; the error names `key`.
    public func apply(_ value: ParameterValue, to request: inout GenerationRequest) throws(ParameterError) {
        func fail(_ problem: String) -> ParameterError { ParameterError(parameter: key, problem: problem) }
        switch (kind, value) {
        case (.integer(let field), .number(let text)):
            guard let n = Self.exactInteger(text) else { throw fail("must be an integer, got \(text)") }
            request[keyPath: field] = n
        case (.integer, _):
            throw fail("must be an integer")
        case (.count(let field), .number(let text)):
            guard let n = Self.exactInteger(text) else { throw fail("must be an integer, got \(text)") }
            request[keyPath: field] = n
        case (.count(let field), .absent):
            request[keyPath: field] = nil
        case (.count, _):
            throw fail("must be an integer")
        case (.decimal(let field), .number(let text)):
            guard let number = Double(text), Float(number).isFinite else { throw fail("must be a number") }
            request[keyPath: field] = Float(number)
        case (.decimal, _):
            throw fail("must be a number")
        case (.seed, .number(let text)):
            if text == "-1" {
                request.sampling.seed = nil
            } else if let seed = UInt64(text) {
                request.sampling.seed = seed
            } else {
                throw fail("must be an integer from 0 to \(UInt64.max) (or -1 for random), got \(text)")
            }
        case (.seed, _):
            throw fail("must be an integer")
        case (.flag(let field), .bool(let on)):
            request[keyPath: field] = on
        case (.flag, _):
            throw fail("must be true or false")
        case (.strings(let field), .string(let single)):
            guard !single.isEmpty else { throw fail("strings must not be empty") }
            request[keyPath: field] = [single]
        case (.strings(let field), .strings(let list)):
            guard !list.contains("") else { throw fail("strings must not be empty") }
            request[keyPath: field] = list
        case (.strings, _):
            throw fail("must be a string or a list of strings")
        }
        if let problem = check(request) { throw fail(problem) }
    }

    /// The row whose key is `key`.
    public static func named(_ key: String) -> RequestParameter? { all.first { $0.key == key } }

    /// "5", "-1", and also "5.0" or "1e2" (exact integers written as JSON numbers), up to 2^53
    /// where a Double stops being exact.
    static func exactInteger(_ text: String) -> Int? {
        if let exact = Int(text) { return exact }
        guard let number = Double(text), number == number.rounded(), abs(number) <= 9_007_199_254_740_992 else { return nil }
        return Int(number)
    }

    /// Every parameter of a request, in the order `--help` lists them (llama.cpp's flags).
    public static let all: [RequestParameter] = [
        RequestParameter(
            key: "n_predict", flags: ["-n", "--n-predict"], valueName: "N", kind: .integer(\.maxNewTokens),
            defaultValue: .number("-1"), off: nil,
            help: "new tokens to generate; -1 = until the end of the story (or until the context is full when it cannot shift)",
            check: { $0.maxNewTokens >= -1 ? nil : "must be ≥ -1 (-1 = until end of story), got \($0.maxNewTokens)" }),
        RequestParameter(
            key: "temp", flags: ["--temp"], valueName: "T", kind: .decimal(\.sampling.temperature),
            defaultValue: .number("0.8"), off: nil, help: "temperature; 0 = greedy (the most likely token every time)",
            check: { let t = $0.sampling.temperature
                return t.isFinite && t >= 0 ? nil : "must be a finite number ≥ 0, got \(t)" }),
        RequestParameter(
            key: "top_k", flags: ["--top-k"], valueName: "K", kind: .integer(\.sampling.topK),
            defaultValue: .number("40"), off: "0", help: "keep the K most likely tokens",
            check: { $0.sampling.topK >= 0 ? nil : "must be ≥ 0, got \($0.sampling.topK)" }),
        RequestParameter(
            key: "top_p", flags: ["--top-p"], valueName: "P", kind: .decimal(\.sampling.topP),
            defaultValue: .number("0.95"), off: "1", help: "nucleus sampling: keep the most likely tokens up to probability P, in (0, 1]",
            check: { let p = $0.sampling.topP
                return p.isFinite && p > 0 && p <= 1 ? nil : "must be in (0, 1], got \(p)" }),
        RequestParameter(
            key: "min_p", flags: ["--min-p"], valueName: "P", kind: .decimal(\.sampling.minP),
            defaultValue: .number("0.05"), off: "0", help: "drop tokens below P × the most likely one's probability",
            check: { let p = $0.sampling.minP
                return p.isFinite && p >= 0 && p <= 1 ? nil : "must be in [0, 1], got \(p)" }),
        RequestParameter(
            key: "repeat_penalty", flags: ["--repeat-penalty"], valueName: "R", kind: .decimal(\.sampling.repeatPenalty),
            defaultValue: .number("1"), off: "1",
            help: "divide positive and multiply negative logits of recently seen tokens by R",
            check: { let r = $0.sampling.repeatPenalty
                return r.isFinite && r > 0 ? nil : "must be a finite number > 0, got \(r)" }),
        RequestParameter(
            key: "repeat_last_n", flags: ["--repeat-last-n"], valueName: "N", kind: .integer(\.sampling.repeatLastN),
            defaultValue: .number("64"), off: "0", help: "how many recent tokens the penalty sees; -1 = the whole context",
            check: { $0.sampling.repeatLastN >= -1 ? nil : "must be ≥ -1, got \($0.sampling.repeatLastN)" }),
        RequestParameter(
            key: "seed", flags: ["-s", "--seed"], valueName: "N", kind: .seed,
            defaultValue: .number("-1"), off: nil, help: "random seed, 0 to 2^64−1; -1 = a random one (reported with the statistics)",
            check: { _ in nil }),
        RequestParameter(
            key: "stop", flags: ["-r", "--reverse-prompt", "--stop"], valueName: "S", kind: .strings(\.stopStrings),
            defaultValue: .strings([]), off: nil, help: "stop when the text contains S (repeatable; S is not printed)",
            check: { _ in nil }),
        RequestParameter(
            key: "ignore_eos", flags: ["--ignore-eos"], valueName: nil, kind: .flag(\.ignoreEOS),
            defaultValue: .bool(false), off: nil, help: "keep generating past the end of sequence",
            check: { _ in nil }),
        RequestParameter(
            key: "logprobs", flags: ["--logprobs"], valueName: "N", kind: .count(\.logprobs),
            defaultValue: .absent, off: nil,
            help: "with --json, --json-stream or --batch: each token's log-probability (after penalty and temperature, "
                + "before truncation), its raw one, and the N most likely alternatives",
            check: { request in
                guard let n = request.logprobs, !(0...100).contains(n) else { return nil }
                return "must be between 0 and 100 (alternatives per token), got \(n)"
            }),
    ]
}
