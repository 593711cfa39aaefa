import Foundation
import Quill
import QuillCommandLine

/// `quill quantize IN OUT`: writes OUT through a temporary file in OUT's folder, renamed into
/// place only when complete (see ReplacementFile for what OUT may be).
func runQuantize(_ o: QuantizeOptions) throws -> ExitStatus {
    let start = DispatchTime.now()
    let checkpoint = try loadModel(modelFlag: o.input, tokenizerFlag: nil, tokenizer: .none).requireCheckpoint(for: "quantize")
    let groupSize = o.groupSize ?? Quantizer.defaultGroupSize(for: checkpoint.config)
    let output = try ReplacementFile(replacing: o.output, input: o.input)
    do {
        try Quantizer.quantize(checkpoint, groupSize: groupSize, to: output.temporary, shouldStop: interrupted)
        _ = try Checkpoint(path: output.temporary)  // the written file must load
        try output.commit()
    } catch is CancellationError {
        output.discard()
        return .interrupted
    } catch {
        output.discard()
        throw error
    }
    let written = try Checkpoint(path: output.destination)
    OutputStream.standardError.write(String(
        format: "quantized %@ (%@ bytes) → %@ (%@ bytes, Q8_0 group %d) in %.1f s\n", o.input,
        groupedDigits(checkpoint.byteCount), o.output, groupedDigits(written.byteCount), groupSize, seconds(since: start)))
    return .success
}
