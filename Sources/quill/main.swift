#if canImport(Glibc)
import Glibc
#endif
import Quill
import QuillCommandLine

/// Exit statuses: 0 success, 1 failure, 2 usage error, 130 interrupted by Ctrl-C.
enum ExitStatus: Int32 {
    case success = 0, failure = 1, usage = 2, interrupted = 130
}

/// The arguments as given, refusing any that is not valid UTF-8 (Swift's CommandLine.arguments
/// would silently turn bad bytes into U+FFFD, while stdin and -f refuse them).
func validatedArguments() throws(UsageError) -> [String] {
    var arguments: [String] = []
    for index in 1..<Int(CommandLine.argc) {
        guard let pointer = CommandLine.unsafeArgv[index] else { continue }
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self),
                                        count: strlen(pointer))
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let offset = firstInvalidUTF8Offset(bytes) ?? 0
            throw UsageError("argument \(index) is not valid UTF-8 text (byte 0x"
                             + String(bytes[offset], radix: 16, uppercase: true) + " at offset \(offset))")
        }
        arguments.append(text)
    }
    return arguments
}

installSignalHandlers()
var status: ExitStatus
do {
    switch try parseInvocation(validatedArguments()) {
    case .help:
        OutputStream.standardOutput.write(usageText)
        status = .success
    case .commandHelp(let command):
        OutputStream.standardOutput.write(commandUsage(command))
        status = .success
    case .documentation(let kind):
        OutputStream.standardOutput.write(documentation(kind, version: quillVersion))
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
    OutputStream.standardError.write("quill: \(printable(error.message))\ntry 'quill --help'\n")
    status = .usage
} catch {
    printError("\(error)")
    status = .failure
}
// A full disk or a closed stdout is an error, whatever the command thought of its run; a
// reader that went away (EPIPE) is not.
if let failure = OutputStream.standardOutput.failure {
    printError("cannot write output: \(failure)")
    if status != .usage { status = .failure }
}
exit(status.rawValue)
