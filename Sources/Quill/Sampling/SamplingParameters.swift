/// How the next token is chosen from the logits. Steps run in this fixed order (llama.cpp's):
/// repetition penalty → top-k → top-p → min-p → temperature → draw. `temperature == 0` means
/// greedy: the highest logit after the penalty, with no randomness.
public struct SamplingParameters: Equatable, Sendable {
    /// Softmax temperature; 0 is greedy argmax. Default 0.8.
    public var temperature: Float = 0.8
    /// Keep only the k most likely tokens; 0 disables. Default 40.
    public var topK: Int = 40
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 disables. Default 0.95.
    public var topP: Float = 0.95
    /// Drop tokens less likely than minP × the most likely one; 0 disables. Default 0.05.
    public var minP: Float = 0.05
    /// Divide positive (multiply negative) logits of recently seen tokens; 1 disables. Default 1.
    public var repeatPenalty: Float = 1
    /// How many of the last tokens (prompt included) the penalty looks at; 0 disables, -1 = the context. Default 64.
    public var repeatLastN: Int = 64
    /// Seed of the random generator; nil draws one at random (reported with the statistics).
    public var seed: UInt64? = nil

    public init() {}

    /// How messages name a parameter: by its command-line flag or by its batch-file JSON key.
    public enum Naming: Sendable {
        case flags, jsonKeys

        /// (flag, JSON key) of each field.
        func name(_ field: PartialKeyPath<SamplingParameters>) -> String {
            let names: [PartialKeyPath<SamplingParameters>: (String, String)] = [
                \.temperature: ("--temp", "temp"), \.topK: ("--top-k", "top_k"), \.topP: ("--top-p", "top_p"),
                \.minP: ("--min-p", "min_p"), \.repeatPenalty: ("--repeat-penalty", "repeat_penalty"),
                \.repeatLastN: ("--repeat-last-n", "repeat_last_n"), \.seed: ("--seed", "seed"),
            ]
            let (flag, key) = names[field]!
            return self == .flags ? flag : "\"" + key + "\""
        }
    }

    /// Checks every field, naming the flag (or JSON key) and showing the bad value.
    public func validate(naming: Naming = .flags) throws(ParameterError) {
        guard temperature.isFinite && temperature >= 0 else {
            throw ParameterError("\(naming.name(\Self.temperature)) must be a finite number ≥ 0, got \(temperature)")
        }
        guard topK >= 0 else { throw ParameterError("\(naming.name(\Self.topK)) must be ≥ 0, got \(topK)") }
        guard topP.isFinite && topP > 0 && topP <= 1 else {
            throw ParameterError("\(naming.name(\Self.topP)) must be in (0, 1], got \(topP)")
        }
        guard minP.isFinite && minP >= 0 && minP <= 1 else {
            throw ParameterError("\(naming.name(\Self.minP)) must be in [0, 1], got \(minP)")
        }
        guard repeatPenalty.isFinite && repeatPenalty > 0 else {
            throw ParameterError("\(naming.name(\Self.repeatPenalty)) must be a finite number > 0, got \(repeatPenalty)")
        }
        guard repeatLastN >= -1 else {
            throw ParameterError("\(naming.name(\Self.repeatLastN)) must be ≥ -1, got \(repeatLastN)")
        }
    }
}

/// A parameter outside its allowed range; the message names it and shows the value.
public struct ParameterError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
