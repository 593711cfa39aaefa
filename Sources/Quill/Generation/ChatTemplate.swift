/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    /// Who speaks: the three roles every supported template knows.
    public enum Role: String, Sendable, CaseIterable {
        case system, user, assistant
    }

    /// Who says it.
    public var role: Role
    /// What is said, as typed (templates that trim it do so when rendering).
    public var content: String

    /// A message of `role` saying `content`.
    public init(_ role: Role, _ content: String) {
        self.role = role
        self.content = content
    }
}

/// A chat model's conversation format, each written out as the text its Jinja template renders
/// (`tokenizer.chat_template`), without the leading BOS that the tokenizer adds. Quill runs no
/// Jinja: it recognises the common templates by their markers and formats them itself.
public enum ChatTemplate: String, Sendable, CaseIterable {
    /// `<|im_start|>role\n…<|im_end|>\n` (OpenHermes, Qwen, many fine-tunes).
    case chatml
    /// Meta's Llama 2 chat: `[INST] <<SYS>>\n…\n<</SYS>>\n\n… [/INST] reply </s><s>[INST] …`.
    case llama2
    /// Llama 3 instruct: `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`.
    case llama3
    /// HuggingFaceH4 Zephyr: `<|role|>\n…</s>\n`.
    case zephyr
    /// Gemma instruct: `<start_of_turn>user|model\n…<end_of_turn>\n`.
    case gemma
    /// Phi-3: `<|role|>\n…<|end|>\n`.
    case phi3

    /// The names `--chat-template` accepts, for messages.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The template whose markers `template` (a model's Jinja text) carries, nil when none does.
    /// Checked from the most specific markers down, since Zephyr's and Phi-3's share `<|user|>`.
    /// `[INST]` alone is Mistral's format, which spaces and separates turns unlike Llama 2's:
    /// only a template with Llama 2's `<<SYS>>` is taken for it (Mistral's is refused, not
    /// rendered slightly wrong).
    public static func detect(_ template: String) -> ChatTemplate? {
        if template.contains("<|im_start|>") { return .chatml }
        if template.contains("<|start_header_id|>") && template.contains("<|end_header_id|>") { return .llama3 }
        if template.contains("<start_of_turn>") { return .gemma }
        if template.contains("<|user|>") && template.contains("<|end|>") { return .phi3 }
        if template.contains("<|user|>") { return .zephyr }
        if template.contains("[INST]") && template.contains("<<SYS>>") { return .llama2 }
        return nil
    }

    /// The markers that must be the vocabulary's own pieces, never spelled as text: `bos` and
    /// `eos` are the vocabulary's BOS and EOS piece texts (`<s>`, `</s>` in Llama's).
    /// Zephyr's `<|user|>` and the like are ordinary text in its vocabulary, so not listed.
    public func specialPieces(bos: String, eos: String) -> [String] {
        switch self {
        case .chatml: ["<|im_start|>", "<|im_end|>"]
        case .llama2: [bos, eos]
        case .llama3: ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        case .zephyr: [eos]
        case .gemma: ["<start_of_turn>", "<end_of_turn>"]
        case .phi3: ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
        }
    }

    /// The piece that ends a reply (generation stops there, as at EOS).
    public func endOfTurn(eos: String) -> String {
        switch self {
        case .chatml: "<|im_end|>"
        case .llama2, .zephyr: eos
        case .llama3: "<|eot_id|>"
        case .gemma: "<end_of_turn>"
        case .phi3: "<|end|>"
        }
    }

    /// `messages` as the template renders them, then the opening of the assistant's reply when
    /// `addGenerationPrompt`. Llama 2 and Gemma have no system turn: the system text goes before
    /// the first user message (Llama 2 in `<<SYS>>`, Gemma followed by a blank line).
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, bos: String = "<s>",
                       eos: String = "</s>") -> String {
        var out = ""
        switch self {
        case .chatml:
            for m in messages { out += "<|im_start|>\(m.role.rawValue)\n\(m.content)<|im_end|>\n" }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        case .llama3:
            for m in messages {
                out += "<|start_header_id|>\(m.role.rawValue)<|end_header_id|>\n\n\(trimmed(m.content))<|eot_id|>"
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .zephyr, .phi3:
            let end = self == .zephyr ? eos : "<|end|>"
            for m in messages { out += "<|\(m.role.rawValue)|>\n\(m.content)\(end)\n" }
            if addGenerationPrompt { out += "<|assistant|>\n" }
        case .gemma:
            for m in foldingSystem(messages, { "\($0)\n\n\($1)" }) {
                out += "<start_of_turn>\(m.role == .assistant ? "model" : "user")\n\(trimmed(m.content))<end_of_turn>\n"
            }
            if addGenerationPrompt { out += "<start_of_turn>model\n" }
        case .llama2:
            // Each user turn after the first opens with BOS; each reply ends with EOS. Nothing
            // opens the reply: the model writes it straight after "[/INST]".
            var first = true
            for m in foldingSystem(messages, { "<<SYS>>\n\($0)\n<</SYS>>\n\n\($1)" }) {
                if m.role == .assistant {
                    out += " \(trimmed(m.content)) \(eos)"
                } else {
                    out += (first ? "" : bos) + "[INST] \(trimmed(m.content)) [/INST]"
                    first = false
                }
            }
        }
        return out
    }

    /// `messages` with each system message's text joined (by `join(system, user)`) to the user
    /// message after it, for templates without a system turn.
    private func foldingSystem(_ messages: [ChatMessage], _ join: (String, String) -> String) -> [ChatMessage] {
        var out: [ChatMessage] = []
        var pending: String?
        for m in messages {
            switch m.role {
            case .system: pending = m.content
            case .user:
                out.append(ChatMessage(.user, pending.map { join($0, m.content) } ?? m.content))
                pending = nil
            case .assistant: out.append(m)
            }
        }
        if let pending { out.append(ChatMessage(.user, join(pending, ""))) }
        return out
    }

    /// Jinja's `trim` / Python's `strip()`: whitespace off both ends.
    private func trimmed(_ text: String) -> String {
        var slice = Substring(text)
        while let c = slice.first, c.isWhitespace { slice.removeFirst() }
        while let c = slice.last, c.isWhitespace { slice.removeLast() }
        return String(slice)
    }
}

/// Turns rendered chat text into token ids: the template's markers become the vocabulary's
/// own pieces, the text between them is encoded as text (each run with SentencePiece's usual
/// leading space, as llama.cpp encodes text after a special token).
public struct ChatTokenizer {
    /// The format written.
    public let template: ChatTemplate
    /// The vocabulary the markers are looked up in and the text is encoded with.
    public let tokenizer: Tokenizer
    /// Marker text → its piece id.
    private let specials: [(text: String, id: Int)]
    /// The id that ends a reply.
    public let endOfTurnID: Int
    /// The vocabulary's BOS and EOS piece texts, which Llama 2's and Zephyr's templates write.
    private let bosText: String
    private let eosText: String

    /// Throws when the vocabulary lacks one of the template's pieces: spelling such a marker as
    /// text would give the model a prompt it was never trained on.
    public init(template: ChatTemplate, tokenizer: Tokenizer) throws(TokenizerError) {
        self.template = template
        self.tokenizer = tokenizer
        var ids: [String: Int] = [:]
        for id in 0..<tokenizer.vocabSize {
            if let piece = tokenizer.piece(id), ids[piece] == nil { ids[piece] = id }
        }
        let bos = tokenizer.bosID >= 0 ? tokenizer.piece(tokenizer.bosID) ?? "<s>" : "<s>"
        let eos = tokenizer.eosID >= 0 ? tokenizer.piece(tokenizer.eosID) ?? "</s>" : "</s>"
        var specials: [(String, Int)] = []
        for marker in template.specialPieces(bos: bos, eos: eos) {
            guard let id = ids[marker] else {
                throw TokenizerError(path: tokenizer.path, problem: "the \(template.rawValue) chat template needs the piece "
                                     + "\(marker), which this vocabulary lacks (choose another --chat-template)")
            }
            specials.append((marker, id))
        }
        self.specials = specials
        let end = template.endOfTurn(eos: eos)
        endOfTurnID = specials.first { $0.0 == end }?.1 ?? tokenizer.eosID
        bosText = bos
        eosText = eos
    }

    /// `messages` rendered (with the reply's opening) and tokenized; BOS first when `addBOS`.
    public func encode(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, addBOS: Bool) throws(TokenizerError) -> [Int] {
        try encode(text: template.render(messages, addGenerationPrompt: addGenerationPrompt, bos: bosText, eos: eosText),
                   addBOS: addBOS)
    }

    /// What follows a reply in the cache when the user says `next`: the end of the reply, the
    /// user's turn and the opening of the next reply. The reply's own tokens are already in the
    /// cache, so only the template's text after them is encoded.
    public func encodeTurn(after history: [ChatMessage], user next: String) throws(TokenizerError) -> [Int] {
        // A stand-in reply marks where the reply's own tokens end: its last occurrence in the
        // conversation up to it (a message may contain the same text; the stand-in comes last).
        let placeholder = "\u{F8FF}reply\u{F8FF}"
        let before = history + [ChatMessage(.assistant, placeholder)]
        let head = template.render(before, addGenerationPrompt: false, bos: bosText, eos: eosText)
        guard let range = head.range(of: placeholder, options: .backwards) else {
            preconditionFailure("every template writes the assistant's text")
        }
        let kept = head[..<range.upperBound]
        let text = template.render(before + [ChatMessage(.user, next)], bos: bosText, eos: eosText)
        precondition(text.hasPrefix(kept), "a template renders a conversation message by message")
        return try encode(text: String(text.dropFirst(kept.count)), addBOS: false)
    }

    /// `text` split at the markers: markers become their ids, the runs between are encoded.
    public func encode(text: String, addBOS: Bool) throws(TokenizerError) -> [Int] {
        var ids: [Int] = addBOS && tokenizer.bosID >= 0 ? [tokenizer.bosID] : []
        var rest = Substring(text)
        while !rest.isEmpty {
            // The earliest marker in what is left (the longest when two start at one place).
            var best: (range: Range<Substring.Index>, id: Int)?
            for (marker, id) in specials {
                guard let range = rest.range(of: marker) else { continue }
                if best == nil || range.lowerBound < best!.range.lowerBound
                    || (range.lowerBound == best!.range.lowerBound && range.upperBound > best!.range.upperBound) {
                    best = (range, id)
                }
            }
            let textEnd = best?.range.lowerBound ?? rest.endIndex
            if textEnd > rest.startIndex { ids += try tokenizer.encode(String(rest[..<textEnd]), addBOS: false) }
            guard let best else { break }
            ids.append(best.id)
            rest = rest[best.range.upperBound...]
        }
        return ids
    }
}
