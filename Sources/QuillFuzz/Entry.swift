import Foundation

/// The target named by $QUILL_FUZZ_TARGET (libFuzzer passes only bytes to the entry point).
private let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["QUILL_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("quill-fuzz: set QUILL_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    return target
}()

#if QUILL_FUZZING
/// libFuzzer's driver (in the runtime that `-sanitize=fuzzer` links): it parses libFuzzer's
/// flags and calls `callback` with each input. Called from our own main because SwiftPM gives
/// an executable's entry point its own name, which libFuzzer's main would not be.
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@main
struct Fuzz {
    static func main() {
        _ = selectedTarget
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv) { data, size in
            selectedTarget.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
            return 0
        })
    }
}
#else
/// Without libFuzzer: runs the selected target once on each file named on the command line
/// (folders: every file in them), to replay a corpus or a crash in an ordinary build.
@main
struct Replay {
    static func main() {
        var files: [String] = []
        for argument in CommandLine.arguments.dropFirst() {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: argument, isDirectory: &isFolder), isFolder.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: argument)) ?? []
                files += names.sorted().map { argument + "/" + $0 }
            } else {
                files.append(argument)
            }
        }
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            selectedTarget.run(Array(data))
        }
        print("quill-fuzz \(selectedTarget.rawValue): \(files.count) inputs replayed")
    }
}
#endif
