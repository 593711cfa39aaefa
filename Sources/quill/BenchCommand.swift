#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Quill
import QuillCommandLine

/// `quill bench`: a llama-bench style table of prompt and generation speed. Ctrl-C stops within
/// one forward block and prints the repetitions measured so far, with exit status 130.
func runBench(_ o: BenchOptions) throws -> ExitStatus {
    let threads = o.threads ?? ModelLoader.physicalCoreCount()
    let stderr = OutputStream.standardError
    guard let modelPath = o.modelPath else { return try benchRandomShape(o, threads: threads) }
    let label = o.label ?? URL(fileURLWithPath: modelPath).lastPathComponent
    var model = try loadModel(modelFlag: modelPath, tokenizerFlag: nil, tokenizer: .none)
    let context = model.weights.config.contextLength
    for (flag, tokens) in [("-p", o.promptTokens), ("-n", o.generateTokens)] where tokens > context {
        throw InputError("bench: \(flag) \(tokens) is beyond the context window of \(label) (\(context) tokens)")
    }
    let positions = max(o.promptTokens, o.generateTokens, 1)
    if let size = try contextSize(o.ctxSize, model: model), size < positions {
        throw UsageError("bench: -c \(size) is smaller than the \(positions) positions of -p/-n")
    }
    stderr.write("bench: \(label), \(model.formatDescription), \(threads) threads\n")
    if o.quantize && model.checkpoint?.format.version != 2 {
        let checkpoint = try model.requireCheckpoint(for: "bench --q8")
        // The int8 copy lives in an unlinked temporary file: nothing is left behind, whatever ends the run.
        let (handle, path) = try unlinkedTemporaryFile()
        defer { try? handle.close() }
        try Quantizer.quantize(checkpoint, groupSize: Quantizer.defaultGroupSize(for: checkpoint.config),
                               to: path, shouldStop: interrupted)
        model = try loadModel(modelFlag: path, tokenizerFlag: nil, tokenizer: .none)
    }
    let weights = model.weights
    let transformer = try model.makeTransformer(threads: threads, maxRows: max(o.batchSize, o.parallel, 1),
                                                maxLogitRows: max(1, o.parallel), cacheCapacity: o.ctxSize ?? positions)
    let kvBytes = KVCache.byteCount(config: weights.config, capacity: transformer.cacheCapacity, blockRows: transformer.maxRows)
    let ttft = try Benchmark.timeToFirstToken(weights, threads: threads)

    struct Row { let test: String; let values: [Double]; let bytesPerToken: Int? }
    var rows: [Row] = []
    if o.promptTokens > 0 {
        let speeds = try Benchmark.promptSpeed(transformer, tokens: o.promptTokens, repetitions: o.repetitions, shouldStop: interrupted)
        rows.append(Row(test: "pp\(o.promptTokens)", values: speeds, bytesPerToken: nil))
    }
    if o.generateTokens > 0 && !interrupted() {
        let tokens = o.generateTokens
        let bytes = Benchmark.bytesReadPerToken(weights, position: tokens / 2)
        let speeds = try Benchmark.generationSpeed(transformer, tokens: tokens, repetitions: o.repetitions, shouldStop: interrupted)
        rows.append(Row(test: "tg\(tokens)", values: speeds, bytesPerToken: bytes))
        if o.parallel > 1 && !interrupted() {
            let speeds = try Benchmark.parallelSpeed(transformer, sequences: o.parallel, tokens: tokens,
                                                     repetitions: o.repetitions, shouldStop: interrupted)
            rows.append(Row(test: "tg\(tokens) x\(o.parallel)", values: speeds, bytesPerToken: nil))
        }
    }
    rows.removeAll { $0.values.isEmpty }
    // Peak RSS is read before the bandwidth test, whose 512 MB buffer is not the model's.
    let rss = Benchmark.peakResidentBytes()
    var bandwidth = Double.nan
    if !interrupted() {
        stderr.write("measuring memory bandwidth...\n")
        bandwidth = Benchmark.memoryBandwidth(threads: threads)
    }
    let c = weights.config
    let quantization = weights.storageSummary
    if o.json {
        let json = JSON.object([
            ("model", .string(label)), ("format", .string(quantization)), ("bytes", .int(model.byteCount)),
            ("parameters", .int(c.parameterCount)), ("threads", .int(threads)), ("batch", .int(o.batchSize)), ("blas_core", .string(Benchmark.blasCore)),
            ("bandwidth_gb_s", .number(bandwidth / 1e9, decimals: 2)), ("peak_rss_bytes", .int(rss)),
            ("kv_cache_positions", .int(transformer.cacheCapacity)), ("kv_cache_bytes", .int(kvBytes)),
            ("ttft_ms", .number(ttft * 1000, decimals: 2)), ("partial", .bool(interrupted())),
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
        return interrupted() ? .interrupted : .success
    }
    var out = String(format: "model %@, %@, %.1f MB, %.1fM parameters; %d threads, batch %d; BLAS core %@; memory bandwidth %.1f GB/s; peak RSS %.1f MB; time to first token %.1f ms\n",
                     label, quantization, Double(model.byteCount) / 1e6, Double(c.parameterCount) / 1e6, threads,
                     o.batchSize, Benchmark.blasCore.isEmpty ? "unknown" : Benchmark.blasCore, bandwidth / 1e9, Double(rss) / 1e6, ttft * 1000)
    out += "| test | tokens/s (median) | min | max | reps | bytes/token | bandwidth |\n"
    out += "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    for row in rows {
        let bytes = row.bytesPerToken.map { String(format: "%.1f MB", Double($0) / 1e6) } ?? ""
        let share = row.bytesPerToken.map { String(format: "%.0f%%", Double($0) * row.values.median / bandwidth * 100) } ?? ""
        out += String(format: "| %@ | %.2f | %.2f | %.2f | %d | %@ | %@ |\n", row.test, row.values.median,
                      row.values.min()!, row.values.max()!, row.values.count, bytes, share)
    }
    out += String(format: "KV cache: %d positions, %d bytes (%.1f MB) a sequence\n", transformer.cacheCapacity, kvBytes,
                  Double(kvBytes) / 1e6)
    if interrupted() { out += "(interrupted: the repetitions measured so far)\n" }
    OutputStream.standardOutput.write(out)
    return interrupted() ? .interrupted : .success
}

/// A new file in the temporary folder, created with mkstemp (an unpredictable name, opened
/// exclusively) and unlinked at once: it lives only while the returned handle (or a mapping,
/// or a child process that inherited it) keeps it open. The path stays usable as /dev/fd/N.
private func unlinkedTemporaryFile() throws(InputError) -> (FileHandle, String) {
    let folder = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    var template = Array("\(folder)/quill-bench-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw InputError("\(folder): cannot create a temporary file: \(String(cString: strerror(errno)))") }
    unlink(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
    return (FileHandle(fileDescriptor: fd, closeOnDealloc: true), "/dev/fd/\(fd)")
}

/// `--shape`: writes a random-weight checkpoint, then measures it in a fresh process so that
/// peak RSS counts inference only, not the arrays used to write the file. The child inherits
/// the unlinked file as a descriptor; Ctrl-C reaches it through the terminal, and SIGTERM is
/// passed on to it.
private func benchRandomShape(_ o: BenchOptions, threads: Int) throws -> ExitStatus {
    let shape = o.shape ?? "15m"
    let config = Benchmark.shape(named: shape)!
    for (flag, tokens) in [("-p", o.promptTokens), ("-n", o.generateTokens)] where tokens > config.contextLength {
        throw UsageError("bench: \(flag) \(tokens) is beyond the context window of the \(shape) shape (\(config.contextLength) tokens)")
    }
    let stderr = OutputStream.standardError
    let (handle, path) = try unlinkedTemporaryFile()
    defer { try? handle.close() }
    var label = "random \(shape)"
    do {
        if let typeName = o.type {
            guard let fileType = GGUFFileType(name: typeName) else { throw UsageError("bench: unknown --type '\(typeName)'") }
            stderr.write("writing a random-weight \(shape) GGUF (\(fileType.rawValue))\n")
            label += " \(fileType.rawValue)"
            let plan = try Benchmark.writeRandomGGUF(config: config, fileType: fileType, name: label, to: handle, path: path,
                                                     shouldStop: interrupted)
            for line in plan.fallbackSummary { stderr.write("bench: \(line)\n") }
        } else {
            stderr.write("writing a random-weight \(shape) checkpoint (\(o.quantize ? "Q8_0" : "float32"))\n")
            let format: CheckpointFormat = o.quantize ? .version2(groupSize: Quantizer.defaultGroupSize(for: config)) : .version1
            try Benchmark.writeRandomCheckpoint(config: config, format: format, to: handle, shouldStop: interrupted)
        }
    } catch is CancellationError {
        return .interrupted
    }
    var arguments = ["quill", "bench", "-m", path, "--label", label, "-p", "\(o.promptTokens)",
                     "-n", "\(o.generateTokens)", "-r", "\(o.repetitions)", "-t", "\(threads)", "-b", "\(o.batchSize)",
                     "--parallel", "\(o.parallel)"]
    if let size = o.ctxSize { arguments += ["-c", "\(size)"] }
    if o.json { arguments.append("--json") }
    var pid: pid_t = 0
    var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let spawned = posix_spawn(&pid, "/proc/self/exe", nil, nil, &argv, environ)
    guard spawned == 0 else { throw InputError("cannot start the benchmark process: \(String(cString: strerror(spawned)))") }
    var status: Int32 = 0
    var forwarded = false
    while waitpid(pid, &status, 0) < 0 {
        guard errno == EINTR else { throw InputError("waiting for the benchmark process: \(String(cString: strerror(errno)))") }
        if interrupted() && !forwarded {
            kill(pid, SIGTERM)
            forwarded = true
        }
    }
    // Exit status of the child (WIFEXITED / WEXITSTATUS), or 1 when a signal ended it.
    if status & 0x7F == 0 {
        switch (status >> 8) & 0xFF {
        case 0: return .success
        case 130: return .interrupted
        case 2: return .usage
        default: return .failure
        }
    }
    return interrupted() ? .interrupted : .failure
}
