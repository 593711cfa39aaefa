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
    }
} catch let error as UsageError {
    OutputStream.standardError.write("quill: \(error.message)\ntry 'quill --help'\n")
    status = .usage
} catch {
    printError("\(error)")
    status = .failure
}
exit(status.rawValue)
