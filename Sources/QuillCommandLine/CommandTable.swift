import Quill

// The one table of every command and its options. The parsers refuse a flag that is not here,
// and `--help`, per-command help, the man page (docs/quill.1), the shell completions
// (docs/completions/) and the README's flag table are printed from it (`quill _docs KIND`; a test
// regenerates them and compares). Generation's request parameters (sampling, -n, stop strings)
// are rows of `RequestParameter.all` in the library, shared with the batch reader.
//
// Adding a flag: add its row to a group below (`OptionSpec(["-x", "--long"], "VALUE", "help (default …)")`,
// or without "VALUE" for a switch), its `case` in the command's parser in Arguments.swift, then
// `make docs`. A request parameter (also a batch JSON key) is a row of RequestParameter.all instead.

/// What a shell may offer for an option's value.
public enum ValueCompletion: Sendable, Equatable {
    case none
    case file
    case choices([String])
}

/// One option of a command as users see it.
public struct OptionSpec: Sendable {
    /// Spellings, short ones first.
    public let flags: [String]
    /// The value's name (`FILE`, `N`); nil for an option without a value.
    public let value: String?
    /// One line: what it does and its default.
    public let help: String
    public let completion: ValueCompletion
    /// The key of the `RequestParameter` row this option sets, if it is one.
    public let parameter: String?

    /// An option that takes a value named `value`.
    public init(_ flags: [String], _ value: String, _ help: String, completion: ValueCompletion = .none) {
        self.flags = flags
        self.value = value
        self.help = help
        self.completion = completion
        self.parameter = nil
    }

    /// An option without a value.
    public init(_ flags: [String], _ help: String) {
        self.flags = flags
        self.value = nil
        self.help = help
        self.completion = .none
        self.parameter = nil
    }

    /// The command-line face of a request parameter: its flags, value name and help with its
    /// off value and default.
    public init(_ parameter: RequestParameter) {
        flags = parameter.flags
        value = parameter.valueName
        var text = parameter.help
        if let off = parameter.off { text += "; \(off) = off" }
        // An empty list or an unset count has no default to show: nothing is done unless asked.
        if parameter.valueName != nil, ![.strings([]), .absent].contains(parameter.defaultValue) {
            text += " (default \(parameter.defaultText))"
        }
        help = text
        completion = .none
        self.parameter = parameter.key
    }

    /// "-m, --model FILE".
    public var label: String { flags.joined(separator: ", ") + (value.map { " " + $0 } ?? "") }
}

/// A heading of a command's options.
public struct OptionGroup: Sendable {
    public let title: String
    public let options: [OptionSpec]
    public init(_ title: String, _ options: [OptionSpec]) {
        self.title = title
        self.options = options
    }
}

/// A command: generation (the default, `name` empty) or a subcommand.
public struct CommandSpec: Sendable {
    /// The subcommand's word; "" for generation.
    public let name: String
    /// Usage lines after `quill`.
    public let synopsis: [String]
    /// What it does, one paragraph.
    public let summary: String
    public let groups: [OptionGroup]

    public var options: [OptionSpec] { groups.flatMap(\.options) }

    /// The option spelled `flag`, nil when the command has none.
    public func option(_ flag: String) -> OptionSpec? { options.first { $0.flags.contains(flag) } }

    /// Every command, generation first.
    public static let all: [CommandSpec] = [generate, perplexity, tokenize, detokenize, info, quantize, bench, logits]

    /// The subcommands' words.
    public static var subcommandNames: [String] { all.map(\.name).filter { !$0.isEmpty } }

    public static func named(_ name: String) -> CommandSpec? { all.first { $0.name == name } }
}

// Options several commands share.
private let helpOption = OptionSpec(["-h", "--help"], "this help")
private let modelOption = OptionSpec(["-m", "--model"], "FILE",
    "llama2.c checkpoint or GGUF file (default: $QUILL_MODEL, else the installed or shipped tinystories.bin)",
    completion: .file)
private let tokenizerOption = OptionSpec(["-z", "--tokenizer"], "FILE",
    "SentencePiece .model (default: MODEL's stem + .model beside it, else tokenizer.model in its folder)",
    completion: .file)
private let threadsOption = OptionSpec(["-t", "--threads"], "N", "threads for BLAS and attention (default: physical cores)")
private func batchSizeOption(_ defaultSize: Int) -> OptionSpec {
    OptionSpec(["-b", "--batch-size"], "N", "prompt tokens per forward block (default \(defaultSize))")
}
private let contextOption = OptionSpec(["-c", "--ctx-size"], "N",
    "KV cache positions, at most the model's context (default: prompt + -n within the context; the context for -n -1 and --batch)")
private let noProgressOption = OptionSpec(["--no-progress"], "no progress line on stderr (it is shown only when stderr is a terminal)")

private func parameterOptions(_ keys: [String]) -> [OptionSpec] {
    keys.map { OptionSpec(RequestParameter.named($0)!) }
}

extension CommandSpec {
    public static let generate = CommandSpec(
        name: "",
        synopsis: ["[options] [PROMPT]", "--batch FILE [options]"],
        summary: "Generates text from a llama2.c checkpoint or a GGUF file. The prompt comes from PROMPT, -p, -f, or stdin "
            + "when none is given and stdin is not a terminal. Generated text goes to stdout; errors and --verbose "
            + "statistics go to stderr.",
        groups: [
            OptionGroup("model", [modelOption, tokenizerOption]),
            OptionGroup("prompt", [
                OptionSpec(["-p", "--prompt"], "TEXT", "the prompt ('-' reads stdin)"),
                OptionSpec(["-f", "--file"], "FILE", "read the prompt from FILE ('-' is stdin); one final newline is dropped",
                           completion: .file),
                OptionSpec(["-e", "--escape"], "turn \\n, \\t, \\\\ in -p/PROMPT into characters (never in files or stdin)"),
                OptionSpec(["--echo"], "print the prompt before the generated text"),
            ]),
            // --logprobs is a request parameter too, but it shapes the JSON output: listed there.
            OptionGroup("generation", RequestParameter.all.filter { $0.key != "logprobs" }.map(OptionSpec.init)),
            OptionGroup("context", [
                contextOption,
                OptionSpec(["--keep"], "N", "when the cache is full, keep the first N tokens (attention sinks) and drop "
                           + "half of the rest (default 4; a cache under 6 positions then stops when full)"),
                OptionSpec(["--no-context-shift"], "stop when the cache is full; refuse a prompt longer than the cache"),
            ]),
            OptionGroup("output", [
                OptionSpec(["--json"], "one JSON object (as in batch mode) instead of streamed text"),
                OptionSpec(["--json-stream"], "one JSON object a token ({\"token_id\",\"text\",\"logprob\"}), then the --json summary"),
            ] + parameterOptions(["logprobs"]) + [
                OptionSpec(["--verbose"], "load time, tokens/s, seed, stop reason and the KV cache on stderr"),
            ]),
            OptionGroup("batch", [
                OptionSpec(["--batch"], "FILE", "one request per line (text, or JSON with \"prompt\" and options); '-' is stdin",
                           completion: .file),
                OptionSpec(["--parallel"], "N", "sequences decoded together, 1 to 256 (default 8)"),
                OptionSpec(["--shard"], "K/N", "only the lines whose index mod N is K"),
                OptionSpec(["--output"], "FILE", "append results to FILE (completion order, fsynced) instead of stdout",
                           completion: .file),
                OptionSpec(["--resume"], "skip the requests whose id FILE (--output) already holds; cut a half-written last line"),
                noProgressOption,
            ]),
            OptionGroup("interactive and chat", [
                OptionSpec(["-i", "--interactive"], "a conversation: one turn a line (stdin, or \"> \" on a terminal), the KV cache "
                           + "kept between turns; /clear starts over, /bye or Ctrl-D ends, Ctrl-C stops a reply"),
                OptionSpec(["-cnv", "--chat", "--conversation"], "-i with turns in the model's chat template (GGUF tokenizer.chat_template)"),
                OptionSpec(["--chat-template"], "NAME", "\(ChatTemplate.names) instead of the model's (implies --chat)",
                           completion: .choices(ChatTemplate.allCases.map(\.rawValue))),
                OptionSpec(["-sys", "--system-prompt"], "TEXT", "the system message of a chat (and of batch lines with \"messages\")"),
            ]),
            OptionGroup("performance", [threadsOption, batchSizeOption(64)]),
            OptionGroup("other", [helpOption, OptionSpec(["--version"], "the version")]),
        ])

    public static let perplexity = CommandSpec(
        name: "perplexity",
        synopsis: ["perplexity -m M (-f FILE | --ids 1,2,3 | --ids-file F) [-c N] [--stride N | --stream [--keep 4]] [--json [--per-token]]"],
        summary: "Mean negative log-likelihood per token, perplexity and bits per byte of a text (BOS + its tokens, "
            + "teacher-forced), in windows of -c tokens every --stride, or with --stream in one pass through a rolling "
            + "cache of -c positions keeping --keep sinks (StreamingLLM's evaluation).",
        groups: [
            OptionGroup("input", [
                modelOption, tokenizerOption,
                OptionSpec(["-f", "--file"], "FILE", "the text, scored exactly as stored ('-' is stdin)", completion: .file),
                OptionSpec(["--ids"], "IDS", "an exact id sequence instead of a text: 1,403,407"),
                OptionSpec(["--ids-file"], "FILE", "ids separated by commas or white space ('-' is stdin)", completion: .file),
            ]),
            OptionGroup("scoring", [
                OptionSpec(["-c", "--ctx-size"], "N", "the window (or rolling cache) length (default: the text, within the context)"),
                OptionSpec(["--stride"], "N", "a new window every N tokens (default half the window)"),
                OptionSpec(["--stream"], "one pass through a rolling cache instead of windows"),
                OptionSpec(["--keep"], "N", "the attention sinks of --stream (default 4)"),
            ]),
            OptionGroup("output", [
                OptionSpec(["--json"], "one JSON object"),
                OptionSpec(["--per-token"], "with --json, every scored token's position, id and log-probability"),
                OptionSpec(["--verbose"], "say what will be scored on stderr first"),
                noProgressOption,
            ]),
            OptionGroup("performance", [threadsOption, batchSizeOption(64)]),
            OptionGroup("other", [helpOption]),
        ])

    public static let tokenize = CommandSpec(
        name: "tokenize",
        synopsis: ["tokenize [-z TOK | -m M] [TEXT | -f FILE | stdin] [--ids | --pieces | --json] [--no-bos]"],
        summary: "The token ids (or pieces) of exactly the bytes given; no final newline is dropped.",
        groups: [OptionGroup("options", [
            tokenizerOption, OptionSpec(["-m", "--model"], "FILE", "use the tokenizer Quill finds for this model", completion: .file),
            OptionSpec(["-f", "--file"], "FILE", "read the text from FILE ('-' is stdin)", completion: .file),
            OptionSpec(["--ids"], "print ids separated by spaces (the default)"),
            OptionSpec(["--pieces"], "print the pieces"),
            OptionSpec(["--json"], "print ids and pieces as JSON"),
            OptionSpec(["--no-bos"], "no beginning-of-sequence id"),
            helpOption,
        ])])

    public static let detokenize = CommandSpec(
        name: "detokenize",
        synopsis: ["detokenize [-z TOK | -m M] [IDS | -f FILE | stdin]"],
        summary: "The text of comma- or space-separated token ids, decoded as SentencePiece does.",
        groups: [OptionGroup("options", [
            tokenizerOption, OptionSpec(["-m", "--model"], "FILE", "use the tokenizer Quill finds for this model", completion: .file),
            OptionSpec(["-f", "--file"], "FILE", "read the ids from FILE ('-' is stdin)", completion: .file),
            helpOption,
        ])])

    public static let info = CommandSpec(
        name: "info",
        synopsis: ["info [-m] M [--json]"],
        summary: "Format, sizes, hyperparameters, vocabulary, context, classifier, quantization and tokenizer of a model.",
        groups: [OptionGroup("options", [
            modelOption, tokenizerOption, OptionSpec(["--json"], "one JSON object"), helpOption,
        ])])

    public static let quantize = CommandSpec(
        name: "quantize",
        synopsis: ["quantize IN OUT TYPE [-z TOK]", "quantize IN OUT [--group-size N]"],
        summary: "With a TYPE (\(quantizeTypes.joined(separator: ", "))), any model Quill reads becomes GGUF of that type, "
            + "vocabulary included; without one, a float32 llama2.c checkpoint becomes int8 llama2.c (version 2) and its "
            + "tokenizer is copied beside OUT. OUT is replaced only when complete and loadable, so -m OUT works at once.",
        groups: [OptionGroup("options", [
            OptionSpec(["--type"], "TYPE", "the GGUF storage type (or the third argument)", completion: .choices(quantizeTypes)),
            tokenizerOption,
            OptionSpec(["--group-size"], "N", "llama2.c int8 only: weights per scale (default: \(defaultGroupSizeText))"),
            noProgressOption,
            helpOption,
        ])])

    public static let bench = CommandSpec(
        name: "bench",
        synopsis: ["bench [--shape S | -m M] [--q8 | --type T] [-p 512] [-n 128] [-c N] [-r 5] [-t N] [-b 512] [--parallel 8] [--json]"],
        summary: "Prompt and generation speed in a llama-bench style table, on a model file or on random weights of a known shape "
            + "(other architectures than llama as GGUF only, with --type).",
        groups: [OptionGroup("options", [
            OptionSpec(["--shape"], "S", "random weights of this shape", completion: .choices(benchShapes)),
            modelOption,
            OptionSpec(["--q8"], "the random weights as llama2.c int8"),
            OptionSpec(["--type"], "T", "the random weights as GGUF of this type", completion: .choices(benchTypes)),
            OptionSpec(["-p", "--n-prompt"], "N", "prompt tokens (default 512)"),
            OptionSpec(["-n", "--n-gen"], "N", "generated tokens (default 128)"),
            OptionSpec(["-r", "--repetitions"], "N", "runs of each test (default 5)"),
            threadsOption, batchSizeOption(512),
            OptionSpec(["--parallel"], "N", "sequences of the batched test, 0 = none (default 8)"),
            OptionSpec(["-c", "--ctx-size"], "N", "KV cache positions (default: the larger of -p and -n)"),
            OptionSpec(["--json"], "one JSON object"),
            OptionSpec(["--label"], "NAME", "the model's name in the table"),
            helpOption,
        ])])

    public static let logits = CommandSpec(
        name: "logits",
        synopsis: ["logits -m M --ids 1,2,3"],
        summary: "Every position's logits as JSON, for checking a model against another implementation.",
        groups: [OptionGroup("options", [
            modelOption, OptionSpec(["--ids"], "IDS", "the token ids: 1,403,407"), threadsOption, batchSizeOption(64), helpOption,
        ])])
}

/// How `quill quantize` picks the llama2.c group size when none is given (Quantizer.defaultGroupSize).
public let defaultGroupSizeText = "64, or the largest power of two below it that divides dim and hidden_dim"
