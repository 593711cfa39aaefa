import Foundation
import Quill

/// `quill bench`: a llama-bench style table of prompt and generation speed.
func runBench(_ o: BenchOptions) throws -> ExitStatus {
    let threads = o.threads ?? ModelLoader.physicalCoreCount()
    let stderr = OutputStream.standardError
    if o.modelPath == nil {
        return try benchRandomShape(o, threads: threads)
    }
    let modelPath = o.modelPath!
    let label = o.label ?? URL(fileURLWithPath: modelPath).lastPathComponent
    var temporary: String?
    defer { if let temporary { try? FileManager.default.removeItem(atPath: temporary) } }
    var checkpoint = try Checkpoint(path: modelPath)
    if o.quantize && checkpoint.format.version != 2 {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("quill-bench-q8-\(getpid()).bin").path
        try Quantizer.quantize(checkpoint, groupSize: Quantizer.defaultGroupSize(for: checkpoint.config), to: path)
        temporary = path
        checkpoint = try Checkpoint(path: path)
    }
    let transformer = Transformer(checkpoint: checkpoint, maxRows: max(o.batchSize, o.parallel, 1), threads: threads,
                                  maxLogitRows: max(1, o.parallel))
    let ttft = Benchmark.timeToFirstToken(checkpoint, threads: threads)

    struct Row { let test: String; let values: [Double]; let bytesPerToken: Int? }
    var rows: [Row] = []
    if o.promptTokens > 0 {
        let tokens = min(o.promptTokens, checkpoint.config.contextLength)
        rows.append(Row(test: "pp\(tokens)", values: Benchmark.promptSpeed(transformer, tokens: tokens, repetitions: o.repetitions), bytesPerToken: nil))
    }
    if o.generateTokens > 0 {
        let tokens = min(o.generateTokens, checkpoint.config.contextLength)
        let bytes = Benchmark.bytesReadPerToken(checkpoint, position: tokens / 2)
        rows.append(Row(test: "tg\(tokens)", values: Benchmark.generationSpeed(transformer, tokens: tokens, repetitions: o.repetitions), bytesPerToken: bytes))
        if o.parallel > 1 {
            let speeds = Benchmark.parallelSpeed(transformer, sequences: o.parallel, tokens: tokens, repetitions: o.repetitions)
            rows.append(Row(test: "tg\(tokens) x\(o.parallel)", values: speeds, bytesPerToken: nil))
        }
    }
    // Peak RSS is read before the bandwidth test, whose 512 MB buffer is not the model's.
    let rss = Benchmark.peakResidentBytes()
    stderr.write("measuring memory bandwidth...\n")
    let bandwidth = Benchmark.memoryBandwidth(threads: threads)
    let c = checkpoint.config
    let quantization = checkpoint.format.version == 2 ? "Q8_0" : "F32"
    if o.json {
        let json = JSON.object([
            ("model", .string(label)), ("format", .string(quantization)), ("bytes", .int(checkpoint.byteCount)),
            ("parameters", .int(c.parameterCount)), ("threads", .int(threads)), ("batch", .int(o.batchSize)), ("blas_core", .string(Benchmark.blasCore)),
            ("bandwidth_gb_s", .number(bandwidth / 1e9, decimals: 2)), ("peak_rss_bytes", .int(rss)),
            ("ttft_ms", .number(ttft * 1000, decimals: 2)),
            ("tests", .array(rows.map { row in
                var fields: [(String, JSON)] = [
                    ("test", .string(row.test)), ("tokens_per_second_median", .number(row.values.median, decimals: 2)),
                    ("tokens_per_second_min", .number(row.values.min()!, decimals: 2)),
                    ("tokens_per_second_max", .number(row.values.max()!, decimals: 2)),
                    ("repetitions", .array(row.values.map { .number($0, decimals: 2) })),
                ]
                if let bytes = row.bytesPerToken {
                    fields.append(("bytes_per_token", .int(bytes)))
                    fields.append(("bandwidth_share", .number(Double(bytes) * row.values.median / bandwidth, decimals: 4)))
                }
                return .object(fields)
            })),
        ])
        OutputStream.standardOutput.write(json.encoded + "\n")
        return .success
    }
    var out = String(format: "model %@, %@, %.1f MB, %.1fM parameters; %d threads, batch %d; BLAS core %@; memory bandwidth %.1f GB/s; peak RSS %.1f MB; time to first token %.1f ms\n",
                     label, quantization, Double(checkpoint.byteCount) / 1e6, Double(c.parameterCount) / 1e6, threads,
                     o.batchSize, Benchmark.blasCore.isEmpty ? "unknown" : Benchmark.blasCore, bandwidth / 1e9, Double(rss) / 1e6, ttft * 1000)
    out += "| test | tokens/s (median) | min | max | reps | bytes/token | bandwidth |\n"
    out += "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    for row in rows {
        let bytes = row.bytesPerToken.map { String(format: "%.1f MB", Double($0) / 1e6) } ?? ""
        let share = row.bytesPerToken.map { String(format: "%.0f%%", Double($0) * row.values.median / bandwidth * 100) } ?? ""
        out += String(format: "| %@ | %.2f | %.2f | %.2f | %d | %@ | %@ |\n", row.test, row.values.median,
                      row.values.min()!, row.values.max()!, row.values.count, bytes, share)
    }
    OutputStream.standardOutput.write(out)
    return .success
}

/// `--shape`: writes a random-weight checkpoint, then measures it in a fresh process so that
/// peak RSS counts inference only, not the arrays used to write the file.
private func benchRandomShape(_ o: BenchOptions, threads: Int) throws -> ExitStatus {
    let shape = o.shape ?? "15m"
    let config = Benchmark.shape(named: shape)!
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("quill-bench-\(shape)-\(getpid()).bin").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    OutputStream.standardError.write("writing a random-weight \(shape) checkpoint (\(o.quantize ? "Q8_0" : "float32")) to \(path)\n")
    try Benchmark.writeRandomCheckpoint(config: config, format: o.quantize ? .version2(groupSize: 64) : .version1, to: path)
    let child = Process()
    child.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var arguments = ["bench", "-m", path, "--label", "random \(shape)", "-p", "\(o.promptTokens)", "-n", "\(o.generateTokens)",
                     "-r", "\(o.repetitions)", "-t", "\(threads)", "-b", "\(o.batchSize)", "--parallel", "\(o.parallel)"]
    if o.json { arguments.append("--json") }
    child.arguments = arguments
    try child.run()
    child.waitUntilExit()
    return child.terminationStatus == 0 ? .success : .failure
}
