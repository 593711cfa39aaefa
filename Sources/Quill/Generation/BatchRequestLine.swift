/// One line of a batch file: a plain-text prompt, or a JSON object with "prompt" and options
/// that override the command line's (see README, "Batch generation").
public struct BatchRequestLine: Sendable {
    /// The request's own "id" value, echoed in its result.
    public var id: JSONValue?
    /// The prompt text, to be tokenized.
    public var promptText: String
    /// The request with every option applied (its prompt ids are still empty).
    public var request: GenerationRequest
    /// `"messages"`: a conversation to render with the chat template instead of `promptText`
    /// (which is then empty).
    public var messages: [ChatMessage]?

    /// The keys a JSON line may have.
    public static let keys: Set<String> = [
        "id", "prompt", "n_predict", "temp", "top_p", "top_k", "min_p", "seed", "stop", "repeat_penalty",
        "repeat_last_n", "ignore_eos", "messages", "logprobs",
    ]

    /// Parses `line` (without its line ending). `defaults` carries the command line's options.
    /// Errors carry the line's "id" when it could be read, and name the JSON key at fault.
    public static func parse<C: Collection<UInt8>>(_ line: C, defaults: GenerationRequest) throws(BatchLineError) -> BatchRequestLine {
        guard let text = String(validating: line, as: UTF8.self) else {
            throw BatchLineError(id: nil, message: "not valid UTF-8 text")
        }
        var result = BatchRequestLine(id: nil, promptText: text, request: defaults, messages: nil)
        guard line.first == UInt8(ascii: "{") else { return result }
        let members: [(key: String, value: JSONValue)]
        do {
            guard case .object(let object) = try JSONParser.parse(line) else { preconditionFailure("'{' starts an object") }
            members = object
        } catch {
            throw BatchLineError(id: nil, message: "not a valid JSON object: \(error)")
        }
        let object = Dictionary(members.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        result.id = object["id"]
        func fail(_ message: String) -> BatchLineError { BatchLineError(id: result.id, message: message) }
        if let unknown = members.map(\.key).first(where: { !keys.contains($0) }) {
            throw fail("unknown key \(JSONValue.quote(unknown))")
        }
        switch (object["prompt"], object["messages"]) {
        case (.string(let prompt)?, nil): result.promptText = prompt
        case (nil, let messages?):
            result.promptText = ""
            result.messages = try chatMessages(messages, fail: fail)
        case (_?, _?): throw fail("give \"prompt\" or \"messages\", not both")
        default: throw fail("\"prompt\" must be a string")
        }
        var request = defaults

        func number(_ key: String) throws(BatchLineError) -> Double? {
            guard let value = object[key] else { return nil }
            guard case .number(let text) = value, let number = Double(text), number.isFinite else {
                throw fail("\"\(key)\" must be a number")
            }
            return number
        }
        func integer(_ key: String) throws(BatchLineError) -> Int? {
            guard let value = object[key] else { return nil }
            guard case .number(let text) = value else { throw fail("\"\(key)\" must be an integer") }
            if let exact = Int(text) { return exact }
            // 5.0 and 1e2 are integers too; beyond 2^53 a Double is not exact, so refuse.
            guard let number = Double(text), number == number.rounded(), abs(number) <= 9_007_199_254_740_992 else {
                throw fail("\"\(key)\" must be an integer, got \(text)")
            }
            return Int(number)
        }

        if let n = try integer("n_predict") {
            guard n >= -1 else { throw fail("\"n_predict\" must be ≥ -1, got \(n)") }
            request.maxNewTokens = n
        }
        if let v = try number("temp") { request.sampling.temperature = Float(v) }
        if let v = try number("top_p") { request.sampling.topP = Float(v) }
        if let v = try integer("top_k") { request.sampling.topK = v }
        if let v = try number("min_p") { request.sampling.minP = Float(v) }
        if let v = try number("repeat_penalty") { request.sampling.repeatPenalty = Float(v) }
        if let v = try integer("repeat_last_n") { request.sampling.repeatLastN = v }
        if let v = try integer("logprobs") {
            guard v >= 0 && v <= 100 else { throw fail("\"logprobs\" must be between 0 and 100 (alternatives per token), got \(v)") }
            request.logprobs = v
        }
        if let value = object["seed"] {
            // Seeds are 64-bit: read the digits exactly (a Double would round them).
            guard case .number(let text) = value else { throw fail("\"seed\" must be an integer") }
            if text == "-1" {
                request.sampling.seed = nil
            } else if let seed = UInt64(text) {
                request.sampling.seed = seed
            } else {
                throw fail("\"seed\" must be an integer from 0 to \(UInt64.max) (or -1 for random), got \(text)")
            }
        }
        if let value = object["ignore_eos"] {
            guard case .bool(let flag) = value else { throw fail("\"ignore_eos\" must be true or false") }
            request.ignoreEOS = flag
        }
        if let value = object["stop"] {
            var strings: [String] = []
            switch value {
            case .string(let single): strings = [single]
            case .array(let items):
                for item in items {
                    guard case .string(let s) = item else { throw fail("\"stop\" must be a string or a list of strings") }
                    strings.append(s)
                }
            default: throw fail("\"stop\" must be a string or a list of strings")
            }
            guard !strings.contains("") else { throw fail("\"stop\" strings must not be empty") }
            request.stopStrings = strings
        }
        do { try request.sampling.validate(naming: .jsonKeys) } catch { throw fail(error.description) }
        result.request = request
        return result
    }
}

/// `"messages": [{"role": "system"|"user"|"assistant", "content": "…"}, …]`, ending with a user
/// message (the reply is generated after it).
private func chatMessages(_ value: JSONValue, fail: (String) -> BatchLineError) throws(BatchLineError) -> [ChatMessage] {
    let shape = "\"messages\" must be a list of {\"role\", \"content\"} objects"
    guard case .array(let items) = value, !items.isEmpty else { throw fail(shape) }
    var messages: [ChatMessage] = []
    for item in items {
        guard case .object(let members) = item, members.count == 2,
              case .string(let roleName)? = members.first(where: { $0.key == "role" })?.value,
              case .string(let content)? = members.first(where: { $0.key == "content" })?.value else { throw fail(shape) }
        guard let role = ChatMessage.Role(rawValue: roleName) else {
            throw fail("\"messages\": role \(JSONValue.quote(roleName)) is not system, user or assistant")
        }
        messages.append(ChatMessage(role, content))
    }
    guard messages.last?.role == .user else { throw fail("\"messages\" must end with a user message (the reply comes after it)") }
    return messages
}

/// Why a batch line cannot be run; `id` is the line's own "id" when it could be read.
public struct BatchLineError: Error, CustomStringConvertible, Sendable {
    public let id: JSONValue?
    public let message: String
    public var description: String { message }
}
