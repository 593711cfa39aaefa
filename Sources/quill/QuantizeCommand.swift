import Foundation
import Quill

/// `quill quantize IN OUT`.
func runQuantize(_ o: QuantizeOptions) throws -> ExitStatus {
    let start = DispatchTime.now()
    let checkpoint = try Checkpoint(path: o.input)
    let groupSize = o.groupSize ?? Quantizer.defaultGroupSize(for: checkpoint.config)
    let temporary = o.output + ".partial"
    do {
        try Quantizer.quantize(checkpoint, groupSize: groupSize, to: temporary)
        if FileManager.default.fileExists(atPath: o.output) { try FileManager.default.removeItem(atPath: o.output) }
        try FileManager.default.moveItem(atPath: temporary, toPath: o.output)
    } catch {
        try? FileManager.default.removeItem(atPath: temporary)
        throw error
    }
    let written = try Checkpoint(path: o.output)  // re-read: the file must load
    OutputStream.standardError.write(String(
        format: "quantized %@ (%@ bytes) → %@ (%@ bytes, Q8_0 group %d) in %.1f s\n", o.input,
        groupedDigits(checkpoint.byteCount), o.output, groupedDigits(written.byteCount), groupSize, seconds(since: start)))
    return .success
}
