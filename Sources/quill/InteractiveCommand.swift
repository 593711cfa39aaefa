#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Quill
import QuillKernels
import QuillCommandLine

/// `quill -i` / `quill --chat`: a conversation, one turn per line. The KV cache is kept between
/// turns, so a turn feeds only its own tokens. On a terminal the prompt marker "> " goes to
/// stderr and Ctrl-C stops the reply and returns to the prompt (at the prompt it ends, as does
/// Ctrl-D or `/bye`); `/clear` starts over. Without a terminal, stdin gives one turn a line, and
/// stdout carries only the replies (each ended by a newline), or one JSON object (`--json`) or
/// a token stream (`--json-stream`) per turn.
func runInteractive(_ options: GenerateOptions, sampling: SamplingParameters) throws -> ExitStatus {
    let start = DispatchTime.now()
    let model = try loadModel(modelFlag: options.modelPath, tokenizerFlag: options.tokenizerPath)
    let tokenizer = try model.requireTokenizer()
    let config = model.weights.config
    let capacity = try contextSize(options.ctxSize, model: model) ?? config.contextLength
    let shift = contextShift(options, capacity: capacity)
    let chat = options.chat ? try chatTokenizer(options, model: model, tokenizer: tokenizer) : nil
    let transformer: Transformer
    let generator: Generator
    do {
        transformer = try model.makeTransformer(threads: options.threads ?? ModelLoader.physicalCoreCount(),
                                                maxRows: min(options.batchSize, capacity), cacheCapacity: capacity)
        generator = try Generator(transformer: transformer, tokenizer: tokenizer)
    } catch let error as AllocationError {
        throw InputError("\(error); a smaller -c makes the KV cache smaller")
    }
    let stderr = OutputStream.standardError, stdout = OutputStream.standardOutput
    let terminal = isatty(0) == 1
    if options.verbose {
        stderr.write(String(format: "load: %.1f ms (%@, %d threads, KV cache %d positions, %@)%@\n",
                            seconds(since: start) * 1000, model.formatDescription, transformer.threads, capacity,
                            kvCacheDescription(transformer), chat.map { ", chat template \($0.template.rawValue)" } ?? ""))
    }
    if terminal {
        stderr.write("quill: one turn a line; /clear starts over, /bye or Ctrl-D ends, Ctrl-C stops a reply\n")
    }

    // The prompt on the command line, when given, is the first turn; stdin gives the rest.
    var pending: String?
    switch options.prompt {
    case .text(let text)?: pending = options.escape ? processEscapes(text) : text
    case .file?: pending = try readPrompt(options.prompt, limit: promptByteLimit(contextLength: config.contextLength))
    case .standardInput?, nil: pending = nil
    }
    var reader = LineReader(maximumLineBytes: promptByteLimit(contextLength: config.contextLength), read: { buffer throws(InputError) in
        while true {
            let n = read(0, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { if interrupted() { return 0 } else { continue } }
            if errno == EBADF { return 0 }  // a closed stdin reads as empty
            throw InputError("stdin: cannot read: \(String(cString: strerror(errno)))")
        }
    }, readable: { true }, shouldStop: interrupted)

    let system = options.systemPrompt.map { [ChatMessage(.system, $0)] } ?? []
    var messages = system  // the conversation so far (chat only)
    var failed = false
    while stdout.isOpen {
        let line: String
        if let first = pending {
            line = first
            pending = nil
        } else {
            if terminal { stderr.write("> ") }
            switch try reader.next(canWait: true) {
            case .line(let bytes, _):
                guard let text = String(validating: bytes, as: UTF8.self) else {
                    printError("the turn is not valid UTF-8 text; it was skipped")
                    failed = true
                    continue
                }
                line = text
            case .tooLong(let number):
                printError("turn \(number) is longer than \(reader.maximumLineBytes) bytes; it was skipped")
                failed = true
                continue
            case .end, .notReady:
                if interrupted() { return .interrupted }
                if terminal { stderr.write("\n") }
                return failed ? .failure : .success
            }
        }
        switch line {
        case "/bye": return failed ? .failure : .success
        case "/clear":
            generator.clear()
            messages = system
            if terminal { stderr.write("quill: the conversation is cleared\n") }
            continue
        case "": continue
        default: break
        }

        let continuing = !generator.cached.isEmpty
        let turn: [Int]
        if let chat {
            turn = continuing ? try chat.encodeTurn(after: messages, user: line)
                : try chat.encode(messages + [ChatMessage(.user, line)], addBOS: model.addBOS)
        } else {
            turn = try tokenizer.encode(line, addBOS: !continuing && model.addBOS)
        }
        let request = GenerationRequest(
            prompt: turn, maxNewTokens: options.maxNewTokens, sampling: sampling, ignoreEOS: options.ignoreEOS,
            stopStrings: options.stopStrings, contextShift: shift,
            logprobs: options.jsonStream ? options.logprobs ?? 0 : options.logprobs,
            endTokens: chat.map { [$0.endOfTurnID] } ?? [])
        var text: [UInt8] = []
        let stats: GenerationStats
        do {
            stats = try generator.generate(request, continuing: true, shouldStop: interrupted, onToken: { token in
                if options.jsonStream { writeStreamLine(token, options: options, tokenizer: tokenizer) }
            }) { bytes in
                if interrupted() || !stdout.isOpen { return .interrupted }
                text += bytes
                if !options.json && !options.jsonStream && !bytes.isEmpty && !stdout.write(bytes) { return .interrupted }
                return nil
            }
        } catch {
            printError("\(error)")
            failed = true
            continue
        }
        messages += [ChatMessage(.user, line), ChatMessage(.assistant, String(decoding: text, as: UTF8.self))]
        if options.json || options.jsonStream {
            guard case .object(var fields) = resultJSON(id: nil, text: text, stats: stats,
                                                        tokenizer: options.logprobs == nil ? nil : tokenizer) else { continue }
            // The ids this turn fed (the template's and the user's), after the earlier turns in the cache.
            fields.insert(("prompt_token_ids", .array(turn.map { .int($0) })), at: 2)
            fields.insert(("tokens_cached", .int(generator.cached.count)), at: 3)
            stdout.write(JSON.object(fields).encoded + "\n")
        } else if text.last != 0x0A {
            stdout.write([0x0A])  // the next prompt starts on its own line; a pipe gets one reply a line
        }
        if options.verbose { printStatistics(stats) }
        if stats.stopReason == .interrupted && interrupted() {
            // On a terminal Ctrl-C only stops the reply; a script's SIGINT or SIGTERM ends the run.
            guard terminal else { return .interrupted }
            interruptRequested.store(false, ordering: .relaxed)
        }
    }
    return failed ? .failure : .success
}

/// The chat template of `--chat`: `--chat-template NAME`, else the one the model file names in
/// `tokenizer.chat_template`, recognised by its markers; an unknown name, an unrecognised
/// template or a model without one is an error naming the choices.
func chatTokenizer(_ options: GenerateOptions, model: LoadedModel, tokenizer: Tokenizer) throws -> ChatTokenizer {
    let template: ChatTemplate
    if let name = options.chatTemplate {
        guard let chosen = ChatTemplate(rawValue: name) else {
            throw UsageError("--chat-template '\(name)' is not one Quill knows: \(ChatTemplate.names)")
        }
        template = chosen
    } else {
        guard let text = try model.gguf?.stringIfPresent("tokenizer.chat_template") else {
            throw InputError("\(model.path) has no chat template (tokenizer.chat_template): "
                             + "choose one with --chat-template (\(ChatTemplate.names))")
        }
        guard let recognised = ChatTemplate.detect(text) else {
            throw InputError("the chat template of \(model.path) is not one Quill recognises: "
                             + "choose one with --chat-template (\(ChatTemplate.names))")
        }
        template = recognised
    }
    return try ChatTokenizer(template: template, tokenizer: tokenizer)
}
