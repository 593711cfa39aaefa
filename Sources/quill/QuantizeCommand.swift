import Foundation
import Quill
import QuillCommandLine

/// `quill quantize IN OUT [TYPE]`: writes OUT through a temporary file in OUT's folder, renamed
/// into place only when complete and loadable (see ReplacementFile for what OUT may be). With a
/// type, OUT is GGUF of that type from any model Quill reads; without one, OUT is an int8
/// llama2.c version 2 copy of a float32 llama2.c checkpoint.
func runQuantize(_ o: QuantizeOptions) throws -> ExitStatus {
    guard let typeName = o.type else { return try quantizeToLlama2c(o) }
    let start = DispatchTime.now()
    let stderr = OutputStream.standardError
    let fileType = GGUFFileType(name: typeName)!
    let model = try loadModel(modelFlag: o.input, tokenizerFlag: o.tokenizerPath, tokenizer: .required, showProgress: !o.noProgress)
    // OUT is checked (and its temporary file made) before anything is said about the work.
    let output = try ReplacementFile(replacing: o.output, input: o.input)
    let completed = try output.replace { temporary in
        let (tokenizer, warnings) = try Quantizer.tokenizerMetadata(for: model, tokenizerPath: o.tokenizerPath)
        for warning in warnings { stderr.write("quantize: warning: \(warning)\n") }
        let job = Quantizer.ggufJob(model.weights, fileType: fileType)
        for line in job.plan.fallbackSummary { stderr.write("quantize: \(line)\n") }
        if !job.requantized.isEmpty {
            stderr.write("quantize: requantizing \(job.requantized.joined(separator: ", ")): the input's blocks are decoded "
                         + "exactly and quantized again, so the error of both quantizations adds up\n")
        }
        if !job.copied.isEmpty {
            stderr.write("quantize: \(job.copied.joined(separator: ", ")) tensors are already of the type asked for and are "
                         + "copied unchanged\n")
        }
        let name = try model.gguf?.stringIfPresent("general.name")
            ?? URL(fileURLWithPath: o.input).deletingPathExtension().lastPathComponent
        // The library checks `shouldStop` before each tensor: the progress line counts them.
        let progress = ProgressLine(disabled: o.noProgress)
        var tensors = 0
        try Quantizer.writeGGUF(model.weights, job: job, tokenizer: tokenizer, name: name, to: temporary, shouldStop: {
            progress.update("quantize: \(tensors) tensors written")
            tensors += 1
            return interrupted()
        })
        progress.finish()
        // The written file must load, vocabulary included, before it replaces anything.
        _ = try ModelLoader.load(modelPath: temporary, tokenizerPath: nil, tokenizer: .required)
    }
    guard completed else { return .interrupted }
    let written = try GGUFFile(path: output.destination)
    stderr.write(String(
        format: "quantized %@ (%@ bytes) → %@ (%@ bytes, GGUF %@) in %.1f s\n", o.input, groupedDigits(model.byteCount),
        o.output, groupedDigits(written.byteCount), fileType.rawValue, seconds(since: start)))
    return .success
}

/// No type: the int8 llama2.c version 2 copy of a float32 llama2.c checkpoint, as before GGUF.
private func quantizeToLlama2c(_ o: QuantizeOptions) throws -> ExitStatus {
    let start = DispatchTime.now()
    let model = try loadModel(modelFlag: o.input, tokenizerFlag: nil, tokenizer: .none, showProgress: !o.noProgress)
    guard let checkpoint = model.checkpoint else {
        throw ModelLoadError("\(o.input) is \(model.formatDescription); without a type quantize writes llama2.c int8 "
                             + "from llama2.c checkpoints only: give a GGUF type (\(quantizeTypes.joined(separator: ", ")))")
    }
    let groupSize = o.groupSize ?? Quantizer.defaultGroupSize(for: checkpoint.config)
    let config = checkpoint.config
    // Checked here to name the flag (the library names the group size only).
    if config.dim % groupSize != 0 || config.hiddenDim % groupSize != 0 {
        throw InputError("--group-size \(groupSize) does not divide dim \(config.dim) and hidden_dim \(config.hiddenDim)")
    }
    // A llama2.c file holds no vocabulary: the input's tokenizer goes beside OUT with OUT's stem
    // (OUT.bin → OUT.model, as scripts/export.py does), so that `-m OUT` finds it at once.
    let tokenizerCopy = (o.output as NSString).deletingPathExtension + ".model"
    let tokenizerSource = Tokenizer.defaultPath(forCheckpoint: o.input)
    if tokenizerSource != nil && tokenizerCopy == o.output {
        throw UsageError("quantize: OUT \(o.output) would be overwritten by the tokenizer copy; give OUT a .bin name")
    }
    let output = try ReplacementFile(replacing: o.output, input: o.input)
    let progress = ProgressLine(disabled: o.noProgress)
    var tensors = 0
    let completed = try output.replace { temporary in
        try Quantizer.quantize(checkpoint, groupSize: groupSize, to: temporary, shouldStop: {
            progress.update("quantize: \(tensors) tensors written")
            tensors += 1
            return interrupted()
        })
        progress.finish()
        _ = try Checkpoint(path: temporary)  // the written file must load
    }
    guard completed else { return .interrupted }
    if let tokenizerPath = tokenizerSource, URL(fileURLWithPath: tokenizerPath).standardized.path
        != URL(fileURLWithPath: tokenizerCopy).standardized.path {
        let copy = try ReplacementFile(replacing: tokenizerCopy, input: tokenizerPath)
        _ = try copy.replace { temporary in
            try? FileManager.default.removeItem(atPath: temporary)
            try FileManager.default.copyItem(atPath: tokenizerPath, toPath: temporary)
        }
        OutputStream.standardError.write("quantize: copied the tokenizer \(tokenizerPath) to \(tokenizerCopy)\n")
    }
    let written = try Checkpoint(path: output.destination)
    OutputStream.standardError.write(String(
        format: "quantized %@ (%@ bytes) → %@ (%@ bytes, Q8_0 group %d) in %.1f s\n", o.input,
        groupedDigits(checkpoint.byteCount), o.output, groupedDigits(written.byteCount), groupSize, seconds(since: start)))
    return .success
}
