#if canImport(Glibc)
import Glibc
#endif
import Quill

/// Exit statuses: 0 success, 1 failure, 2 usage error, 130 interrupted by Ctrl-C.
enum ExitStatus: Int32 {
    case success = 0, failure = 1, usage = 2, interrupted = 130
}

installSignalHandlers()
let status: ExitStatus
do {
    switch try parseInvocation(Array(CommandLine.arguments.dropFirst())) {
    case .help:
        OutputStream.standardOutput.write(usageText)
        status = .success
    case .version:
        OutputStream.standardOutput.write("quill \(quillVersion)\n")
        status = .success
    case .generate(let options):
        status = try runGenerate(options)
    case .logits(let options):
        status = try runLogits(options)
    case .perplexity(let options):
        status = try runPerplexity(options)
    case .tokenize(let options):
        status = try runTokenize(options)
    case .detokenize(let options):
        status = try runDetokenize(options)
    case .info(let options):
        status = try runInfo(options)
    case .quantize(let options):
        status = try runQuantize(options)
    case .bench(let options):
        status = try runBench(options)
    }
} catch let error as UsageError {
    OutputStream.standardError.write("quill: \(error.message)\ntry 'quill --help'\n")
    status = .usage
} catch {
    printError("\(error)")
    status = .failure
}
exit(status.rawValue)
