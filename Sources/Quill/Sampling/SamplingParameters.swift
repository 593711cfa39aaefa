/// How the next token is chosen from the logits. Steps run in this fixed order (llama.cpp's):
/// repetition penalty → top-k → top-p → min-p → temperature → draw. `temperature == 0` means
/// greedy: the highest logit after the penalty, with no randomness. The defaults, the values that
/// disable each step and the checks are those of `RequestParameter.all`, the one table of them.
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

    /// Checks every field with the table's checks; the error names the parameter by its key
    /// (`"top_p"`), which the command line turns into its flag.
    public func validate() throws(ParameterError) {
        let request = GenerationRequest(prompt: [], sampling: self)
        for parameter in RequestParameter.all {
            if let problem = parameter.check(request) { throw ParameterError(parameter: parameter.key, problem: problem) }
        }
    }
}

/// A parameter outside its allowed range. `parameter` is its key in `RequestParameter.all`
/// (the batch file's JSON key); `problem` says what it must be and shows the value.
public struct ParameterError: Error, CustomStringConvertible, Sendable {
    public let parameter: String
    public let problem: String
    public init(parameter: String, problem: String) {
        self.parameter = parameter
        self.problem = problem
    }
    /// As a batch line names it: `"top_p" must be in (0, 1], got 1.7`.
    public var description: String { "\"\(parameter)\" \(problem)" }
}
