import Foundation
import QuillKernels

/// A model file's weights with its tokenizer (when one was asked for), from which every command
/// builds its forward pass: the one assembly path, so checks and error handling are the same
/// for all.
public struct LoadedModel {
    /// What the forward pass runs on.
    public let weights: ModelWeights
    /// The llama2.c checkpoint, when the file is one (`quantize` and `bench --q8` work on these).
    public let checkpoint: Checkpoint?
    /// The GGUF container, when the file is one.
    public let gguf: GGUFFile?
    /// The file as given.
    public let path: String
    /// Size of the file in bytes.
    public let byteCount: Int
    /// What kind of file it is, for messages and statistics.
    public let formatDescription: String
    /// Whether prompts start with BOS (a GGUF vocabulary's `add_bos_token`; always for llama2.c).
    public let addBOS: Bool
    /// The tokenizer: `-z`, or the one found beside the checkpoint; nil when not asked for, or
    /// optional and not found.
    public let tokenizer: Tokenizer?
    /// Seconds spent mapping and validating the checkpoint and loading the tokenizer.
    public let loadSeconds: Double

    /// The llama2.c checkpoint, or an error saying that `command` reads only those.
    public func requireCheckpoint(for command: String) throws(ModelLoadError) -> Checkpoint {
        guard let checkpoint else {
            throw ModelLoadError("\(path): \(command) reads llama2.c checkpoints only; this file is \(formatDescription)")
        }
        return checkpoint
    }

    /// The tokenizer, or an error that says how to give one.
    public func requireTokenizer() throws(ModelLoadError) -> Tokenizer {
        guard let tokenizer else {
            let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            throw ModelLoadError("no tokenizer for \(path): expected \(stem).model or tokenizer.model beside it",
                                 wantsTokenizerFile: true)
        }
        return tokenizer
    }

    /// Whether a full KV cache can drop positions and go on (see `Transformer.canShift`).
    public var canShift: Bool { [.rope, .none].contains(weights.config.architecture.positions) }

    /// A forward pass over this model: `maxRows` rows per block, `maxLogitRows` logit rows at
    /// once (sequences decoded together), KV caches of `cacheCapacity` positions (default: the
    /// whole context). Throws when BLAS is missing or the buffers cannot be allocated.
    public func makeTransformer(threads: Int, maxRows: Int, maxLogitRows: Int = 1, cacheCapacity: Int? = nil) throws -> Transformer {
        let capacity = min(max(1, cacheCapacity ?? weights.config.contextLength), weights.config.contextLength)
        return try Transformer(weights: weights, maxRows: max(1, maxRows), threads: threads,
                               maxLogitRows: max(1, maxLogitRows), cacheCapacity: capacity)
    }
}

/// A model and tokenizer that do not belong together, or no model to be found.
public struct ModelLoadError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// Whether giving a tokenizer file would get past it (no tokenizer found, or a GGUF vocabulary
    /// Quill does not read): the command line then says how, in its own terms.
    public let wantsTokenizerFile: Bool
    public init(_ description: String, wantsTokenizerFile: Bool = false) {
        self.description = description
        self.wantsTokenizerFile = wantsTokenizerFile
    }
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

    /// Whether a command needs a tokenizer.
    public enum TokenizerNeed {
        /// Load it (`-z` or beside the checkpoint); its absence is an error.
        case required
        /// Load it when given or found beside the checkpoint (or in a GGUF file); one that
        /// cannot be loaded is left out rather than an error (`info` describes the model anyway).
        case optional
        /// Do not load one.
        case none
    }

    /// Maps and validates a checkpoint and loads its tokenizer (`tokenizerPath`, or the one
    /// found beside the checkpoint), checking that their vocabularies agree.
    public static func load(modelPath: String, tokenizerPath: String?, tokenizer need: TokenizerNeed) throws -> LoadedModel {
        let start = DispatchTime.now()
        if need != .none { BLAS.startLoading() }  // for the forward pass, meanwhile
        let file = try MappedFile.checkpoint(path: modelPath)
        // The format is told by the first four bytes: "GGUF", else a llama2.c header.
        let isGGUF = file.byteCount >= 4 && file.uint32(at: 0) == GGUFFile.magic
        let checkpoint = isGGUF ? nil : try Checkpoint(file: file)
        let gguf = isGGUF ? try GGUFFile(file: file) : nil
        let weights = try checkpoint?.weights ?? GGUFModel.weights(from: gguf!)
        let format = checkpoint.map(\.format.description) ?? "GGUF version \(gguf!.version)"
        var tokenizer: Tokenizer?
        var addBOS = true
        func checked(_ loaded: Tokenizer, _ name: String) throws(ModelLoadError) -> Tokenizer {
            guard loaded.vocabSize == weights.config.vocabSize else {
                throw ModelLoadError("tokenizer \(name) has \(loaded.vocabSize) pieces but model "
                                     + "\(modelPath) has a vocabulary of \(weights.config.vocabSize)")
            }
            return loaded
        }
        if need != .none, tokenizerPath == nil, let gguf {
            // A GGUF file carries its vocabulary; -z overrides it.
            func fromFile() throws -> (Tokenizer, Bool) {
                let vocabulary: GGUFVocabulary
                do { vocabulary = try GGUFVocabulary(gguf: gguf) } catch {
                    throw ModelLoadError(error.description, wantsTokenizerFile: true)
                }
                return (try checked(try Tokenizer(vocabulary: vocabulary, name: modelPath), "of \(modelPath)"), vocabulary.addBOS)
            }
            if need == .required {
                (tokenizer, addBOS) = try fromFile()
            } else if let found = try? fromFile() {
                (tokenizer, addBOS) = found  // optional (info): a file without a usable vocabulary still describes its model
            }
        } else if need != .none, let path = tokenizerPath ?? Tokenizer.defaultPath(forCheckpoint: modelPath) {
            if need == .required {
                tokenizer = try checked(try Tokenizer(path: path), path)
            } else {
                tokenizer = try? checked(try Tokenizer(path: path), path)
            }
        }
        let model = LoadedModel(weights: weights, checkpoint: checkpoint, gguf: gguf, path: modelPath, byteCount: file.byteCount,
                                formatDescription: format, addBOS: addBOS, tokenizer: tokenizer, loadSeconds: seconds(since: start))
        if need == .required { _ = try model.requireTokenizer() }
        return model
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
