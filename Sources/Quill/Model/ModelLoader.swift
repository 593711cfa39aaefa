import Foundation
import QuillKernels

/// A checkpoint with its tokenizer and a forward pass ready to run.
public struct LoadedModel {
    public let checkpoint: Checkpoint
    public let tokenizer: Tokenizer
    public let transformer: Transformer
    /// Seconds spent mapping, validating and preparing.
    public let loadSeconds: Double
}

/// A model and tokenizer that do not belong together, or no model to be found.
public struct ModelLoadError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum ModelLoader {
    /// The file name of the model that ships in the repository's `models/` folder.
    public static let defaultModelName = "tinystories.bin"

    /// Where to look for the shipped model when neither `-m` nor `QUILL_MODEL` names one:
    /// `models/` under the working directory, then beside the source tree or install prefix of
    /// the executable (`.build/release/quill` → `models/`, `bin/quill` → `share/quill/`).
    public static func defaultModelCandidates(executablePath: String) -> [String] {
        let executable = URL(fileURLWithPath: executablePath).resolvingSymlinksInPath()
        let binFolder = executable.deletingLastPathComponent()
        return [
            "models/" + defaultModelName,
            binFolder.appendingPathComponent("../../models/" + defaultModelName).standardized.path,
            binFolder.appendingPathComponent("../../../models/" + defaultModelName).standardized.path,
            binFolder.appendingPathComponent("../share/quill/" + defaultModelName).standardized.path,
        ]
    }

    /// Loads a checkpoint and its tokenizer (`tokenizerPath`, or the one found beside the
    /// checkpoint), and checks that their vocabularies agree. `parallel` is how many sequences
    /// will be decoded together.
    public static func load(
        modelPath: String, tokenizerPath: String?, threads: Int, batchSize: Int, parallel: Int = 1
    ) throws -> LoadedModel {
        let start = DispatchTime.now()
        try BLAS.load()
        let checkpoint = try Checkpoint(path: modelPath)
        guard let tokenizerPath = tokenizerPath ?? Tokenizer.defaultPath(forCheckpoint: modelPath) else {
            let stem = URL(fileURLWithPath: modelPath).deletingPathExtension().lastPathComponent
            throw ModelLoadError("no tokenizer for \(modelPath): expected \(stem).model or tokenizer.model "
                                 + "beside it (give one with -z)")
        }
        let tokenizer = try Tokenizer(path: tokenizerPath)
        guard tokenizer.vocabSize == checkpoint.config.vocabSize else {
            throw ModelLoadError("tokenizer \(tokenizerPath) has \(tokenizer.vocabSize) pieces but model "
                                 + "\(modelPath) has a vocabulary of \(checkpoint.config.vocabSize)")
        }
        let transformer = Transformer(checkpoint: checkpoint, maxRows: max(batchSize, parallel), threads: threads,
                                      maxLogitRows: max(parallel, 1))
        return LoadedModel(checkpoint: checkpoint, tokenizer: tokenizer, transformer: transformer,
                           loadSeconds: seconds(since: start))
    }

    /// Physical cores of this machine (hyperthread siblings counted once), the default thread count.
    public static func physicalCoreCount() -> Int {
        let logical = ProcessInfo.processInfo.activeProcessorCount
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return logical }
        var cores = Set<String>()
        var physical = ""
        for line in info.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            if parts[0] == "physical id" { physical = parts[1] }
            if parts[0] == "core id" { cores.insert(physical + "/" + parts[1]) }
        }
        return cores.isEmpty ? logical : min(cores.count, logical)
    }
}
