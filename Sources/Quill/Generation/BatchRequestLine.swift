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

    /// The keys a JSON line may have: "id", "prompt" or "messages", and the keys of `RequestParameter.all`.
    public static let keys: Set<String> = Set(["id", "prompt", "messages"] + RequestParameter.all.map(\.key))

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

        // Every other key is a row of the parameter table, which reads and checks it.
        for (key, value) in members where key != "id" && key != "prompt" && key != "messages" {
            let parameter = RequestParameter.named(key)!  // unknown keys were refused above
            let given: ParameterValue
            switch value {
            case .number(let text): given = .number(text)
            case .bool(let flag): given = .bool(flag)
            case .string(let text): given = .string(text)
            case .array(let items):
                let strings = items.compactMap { item -> String? in if case .string(let s) = item { s } else { nil } }
                given = strings.count == items.count ? .strings(strings) : .other
            default: given = .other
            }
            do { try parameter.apply(given, to: &request) } catch { throw fail(error.description) }
        }
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
