import Foundation
import XCTest

/// Runs the built `quill` executable as a user would.
struct QuillRun {
    let status: Int32
    let stdout: Data
    let stderr: String
    var text: String { String(decoding: stdout, as: UTF8.self) }
}

enum CLI {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let shared = root.deletingLastPathComponent().appendingPathComponent("shared/models")

    /// The executable built beside this test bundle.
    static var executable: URL {
        let beside = Bundle.main.bundleURL.appendingPathComponent("quill")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("quill")
    }

    static func sharedFile(_ name: String) throws -> String {
        let path = shared.appendingPathComponent(name).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("../shared/models/\(name) not found: skipping the test that needs it")
        }
        return path
    }

    /// The stories260K model and tokenizer flags.
    static func storiesFlags() throws -> [String] {
        ["-m", try sharedFile("stories260K.bin"), "-z", try sharedFile("tok512.model")]
    }

    static func run(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:],
                    directory: URL? = nil) throws -> QuillRun {
        let process = Process()
        if let directory { process.currentDirectoryURL = directory }
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["QUILL_MODEL"] = nil
        for (key, value) in environment { env[key] = value }
        process.environment = env
        // stderr goes to a file so that neither pipe can fill up while the other is read.
        let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent("quill-stderr-\(UUID())")
        FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errorFile) }
        let errors = try FileHandle(forWritingTo: errorFile)
        let output = Pipe(), input = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
        }
        let outData = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try errors.close()
        let errorData = try Data(contentsOf: errorFile)
        return QuillRun(status: process.terminationStatus, stdout: outData,
                        stderr: String(decoding: errorData, as: UTF8.self))
    }

    /// Runs a shell pipeline; returns (stdout, stderr, exit status of each stage).
    static func shell(_ script: String) throws -> (out: String, err: String, status: Int32) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script]
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self), process.terminationStatus)
    }
}

final class CLITests: XCTestCase {
    /// llama2.c's documented greedy sample of stories260K (doc/stories260K.md), 565 characters.
    static let publishedGreedySample = """
        Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
        Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."
        Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."
        Lily didn't want to help her mom, so she said, "I'm sorry, mom. I didn't know what to do." Her mom said, "Don't worry, Lily. We can help you.
        """

    func testGreedyOutputMatchesPublishedSample() throws {
        let run = try CLI.run(try CLI.storiesFlags() + ["--temp", "0", "-n", "256"])
        XCTAssertEqual(Self.publishedGreedySample.count, 565)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.text, Self.publishedGreedySample + "\n")
        XCTAssertEqual(run.stderr, "", "nothing on stderr without --verbose")
    }

    func testPromptFromArgumentFlagFileAndStdinAgree() throws {
        let flags = try CLI.storiesFlags() + ["--temp", "0", "-n", "30"]
        let prompt = "Once upon a time, a cat"
        let positional = try CLI.run(flags + [prompt])
        XCTAssertEqual(positional.status, 0, positional.stderr)
        XCTAssertTrue(positional.text.hasPrefix(" "), "the continuation of a prompt keeps its leading space")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("quill-prompt-\(UUID()).txt")
        try Data((prompt + "\n").utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let runs = [
            try CLI.run(flags + ["-p", prompt]),
            try CLI.run(flags + ["-f", file.path]),
            try CLI.run(flags, stdin: Data((prompt + "\n").utf8)),
            try CLI.run(flags + ["-p", "-"], stdin: Data(prompt.utf8)),
            try CLI.run(flags + ["-f", "-"], stdin: Data(prompt.utf8)),
        ]
        for run in runs {
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(run.text, positional.text)
        }
    }

    func testSeedReproducesAndVerboseReportsStatistics() throws {
        let flags = try CLI.storiesFlags() + ["--temp", "1", "-n", "40", "-s", "1234", "--verbose"]
        let a = try CLI.run(flags), b = try CLI.run(flags)
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(a.text, b.text)
        XCTAssertTrue(a.stderr.contains("seed: 1234"), a.stderr)
        XCTAssertTrue(a.stderr.contains("tokens/s"), a.stderr)
        XCTAssertTrue(a.stderr.contains("stop: "), a.stderr)
        let random = try CLI.run(try CLI.storiesFlags() + ["-n", "5", "--verbose"])
        XCTAssertNotNil(random.stderr.range(of: #"seed: \d+"#, options: .regularExpression), "a random seed is reported")
    }

    func testUsageErrorsExitTwoWithOneLineAndHint() throws {
        let cases: [([String], String)] = [
            (["--bogus"], "quill: unknown option '--bogus'"),
            (["-n"], "quill: -n needs a value"),
            (["-n", "abc"], "quill: -n expects an integer, got 'abc'"),
            (["-n", "-5"], "quill: -n must be ≥ -1 (-1 = until end of story), got -5"),
            (["--top-p", "1.7"], "quill: --top-p must be in (0, 1], got 1.7"),
            (["--temp", "nan"], "quill: --temp expects a finite decimal number, got 'nan'"),
            (["--temp", "0x10"], "quill: --temp expects a finite decimal number, got '0x10'"),
            (["--temp", "-1"], "quill: --temp must be a finite number ≥ 0, got -1.0"),
            (["--top-k", "-3"], "quill: --top-k must be ≥ 0, got -3"),
            (["--min-p", "2"], "quill: --min-p must be in [0, 1], got 2.0"),
            (["-t", "0"], "quill: -t must be between 1 and 1024, got 0"),
            (["-s", "x"], "quill: -s expects an integer from 0 to 18446744073709551615 (or -1 for random), got 'x'"),
            (["one", "two"], "quill: expected at most one prompt argument, got 2 (quote the prompt)"),
            (["-p", "a", "-f", "b"], "quill: give the prompt once: as an argument, -p, -f or stdin"),
            (["--verbose=yes"], "quill: --verbose takes no value"),
            (["--parallel", "4"], "quill: --parallel needs --batch"),
            (["--batch", "x", "--shard", "3/3"], "quill: --shard expects K/N with 0 ≤ K < N, got '3/3'"),
            (["perplexity", "-m", "m.bin"], "quill: perplexity: give exactly one of -f FILE, --ids or --ids-file"),
            (["perplexity", "--ids", "1,x"], "quill: --ids expects comma-separated token ids ≥ 0, got 'x'"),
            (["bench", "--shape", "7b"], "quill: --shape must be one of 15m, 42m, 110m, tinyllama, gpt2, qwen2-0.5b, gemma-2b, gemma2-2b, phi3-mini, got '7b'"),
            (["quantize", "in.bin"], "quill: quantize: expected IN and OUT paths, got 1 arguments"),
            (["tokenize", "--frobnicate"], "quill: tokenize: unknown option '--frobnicate'"),
        ]
        for (arguments, message) in cases {
            let run = try CLI.run(arguments)
            XCTAssertEqual(run.status, 2, "\(arguments)")
            XCTAssertEqual(run.stderr, message + "\ntry 'quill --help'\n", "\(arguments)")
            XCTAssertEqual(run.stdout.count, 0)
        }
    }

    func testBadInputsExitOneWithAClearMessage() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("quill-cli-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let truncated = folder.appendingPathComponent("model.bin")
        let real = try Data(contentsOf: URL(fileURLWithPath: try CLI.sharedFile("stories260K.bin")))
        try real.prefix(1_048_576).write(to: truncated)
        let tokenizer = try CLI.sharedFile("tok512.model")
        let badText = folder.appendingPathComponent("bad.txt")
        try Data([0x41, 0x42, 0xFF, 0x43]).write(to: badText)
        let cases: [([String], String)] = [
            (["-m", truncated.path, "-z", tokenizer],
             "quill: error: \(truncated.path): file is 1,048,576 bytes but its header (dim 64, 5 layers, vocab 512) needs 1,056,540"),
            (["-m", folder.appendingPathComponent("missing.bin").path],
             "quill: error: \(folder.path)/missing.bin: No such file or directory"),
            (try CLI.storiesFlags() + ["-f", folder.appendingPathComponent("nope.txt").path],
             "quill: error: \(folder.path)/nope.txt: cannot open: No such file or directory"),
            (try CLI.storiesFlags() + ["-f", badText.path],
             "quill: error: \(badText.path): not valid UTF-8 text (byte 0xFF at offset 2)"),
            (["-m", try CLI.sharedFile("stories260K.bin"), "-z", try CLI.sharedFile("llama2-tokenizer.model")],
             "quill: error: tokenizer \(try CLI.sharedFile("llama2-tokenizer.model")) has 32000 pieces but model "
             + "\(try CLI.sharedFile("stories260K.bin")) has a vocabulary of 512"),
            (try CLI.storiesFlags() + ["--no-context-shift", String(repeating: "once upon a time ", count: 200)],
             "quill: error: prompt is 1001 tokens but the context window is 512"),
        ]
        for (arguments, message) in cases {
            let run = try CLI.run(arguments)
            XCTAssertEqual(run.status, 1, "\(arguments.prefix(3))")
            XCTAssertEqual(run.stderr, message + "\n")
            XCTAssertEqual(run.stdout.count, 0)
        }
    }

    func testPipingIntoHeadEndsQuietly() throws {
        let flags = try CLI.storiesFlags().map { "'\($0)'" }.joined(separator: " ")
        let script = "'\(CLI.executable.path)' \(flags) --temp 0 -n 256 | head -c 20; echo \" status=${PIPESTATUS[0]}\""
        let result = try CLI.shell(script)
        XCTAssertEqual(result.out, "Once upon a time, th status=0\n")
        XCTAssertEqual(result.err, "")
    }

    func testHelpAndVersion() throws {
        let help = try CLI.run(["--help"])
        XCTAssertEqual(help.status, 0)
        for flag in ["-m, --model", "-z, --tokenizer", "-p, --prompt", "-f, --file", "-n, --n-predict", "--temp",
                     "--top-k", "--top-p", "--min-p", "-s, --seed", "-t, --threads", "--verbose", "--version"] {
            XCTAssertTrue(help.text.contains(flag), "help mentions \(flag)")
        }
        let version = try CLI.run(["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertTrue(version.text.hasPrefix("quill "))
    }

    /// Without -m or $QUILL_MODEL, the model shipped in models/ is found from any directory.
    func testDefaultModelIsFoundFromAnyDirectory() throws {
        let run = try CLI.run(["--temp", "0", "-n", "30", "--json", "Once upon a time"], directory: FileManager.default.temporaryDirectory)
        XCTAssertEqual(run.status, 0, run.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: run.stdout) as? [String: Any])
        XCTAssertGreaterThan(object["tokens_generated"] as? Int ?? 0, 0)
    }

    /// Found through PATH (argv[0] is then just "quill"), the shipped model is still found.
    func testDefaultModelIsFoundWhenRunThroughPath() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("quill-path-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("quill").path,
                                                   withDestinationPath: CLI.executable.path)
        let result = try CLI.shell("cd / && env -u QUILL_MODEL PATH='\(folder.path)':\"$PATH\" quill --temp 0 -n 5 'Once upon a time'")
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertFalse(result.out.isEmpty)
    }

    func testModelFromEnvironment() throws {
        let run = try CLI.run(["-z", try CLI.sharedFile("tok512.model"), "--temp", "0", "-n", "5"],
                              environment: ["QUILL_MODEL": try CLI.sharedFile("stories260K.bin")])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.text, "Once upon a time,\n")
    }
}
