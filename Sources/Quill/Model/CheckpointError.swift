import QuillKernels

/// Why a checkpoint cannot be used. Each message names the file and the problem.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let problem: String
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }
    public var description: String { "\(path): \(problem)" }
}

/// 1048576 → "1,048,576": byte counts in messages are read by people.
public func groupedDigits(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var result = ""
    for (index, character) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
        result.append(character)
    }
    return value < 0 ? "-" + result : result
}

extension MappedFile {
    /// The file at `path`, mapped, or a CheckpointError naming it (what every format reader needs).
    static func checkpoint(path: String) throws(CheckpointError) -> MappedFile {
        do { return try MappedFile(path: path) } catch { throw CheckpointError(path: path, problem: error.reason) }
    }

    /// `bytes` held like a mapped file named `path` (for tests and fuzzing), or a CheckpointError.
    static func checkpoint(bytes: [UInt8], path: String) throws(CheckpointError) -> MappedFile {
        do { return try MappedFile(bytes: bytes, path: path) } catch { throw CheckpointError(path: path, problem: error.reason) }
    }
}
