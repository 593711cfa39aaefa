#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest

/// The reliability issue, end to end: each test states the expected behaviour for one defect
/// (its number in the issue is in the test's comment). They use the shipped tiny model, copies
/// of it in temporary folders, and `Child` to signal a running quill once it says it is ready.
final class ReliabilityTests: XCTestCase {
    static let model = CLI.root.appendingPathComponent("models/tinystories.bin").path
    static let tokenizer = CLI.root.appendingPathComponent("models/tinystories.model").path

    // MARK: helpers

    /// A fresh folder under the temporary directory, removed after the test.
    private func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("quill-reliability-\(UUID())")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// A model without a tokenizer beside it: the library says where it looked, and the CLI
    /// (only it knows its flags) adds how to give one.
    func testMissingTokenizerNamesTheFlag() throws {
        let folder = try temporaryFolder()
        let model = try copyModel(into: folder)
        try FileManager.default.removeItem(atPath: folder.appendingPathComponent("model.model").path)
        let run = try quill(["-m", model, "-n", "1", "Once"])
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run, containing: ["no tokenizer for", "model.model or tokenizer.model beside it", "-z"])
    }

    /// A copy of the shipped model (and its tokenizer beside it, as NAME.model) in `folder`,
    /// with the header's int32 seq_len (byte offset 32) replaced when `contextLength` is given.
    private func copyModel(into folder: URL, name: String = "model", contextLength: Int32? = nil) throws -> String {
        var data = try Data(contentsOf: URL(fileURLWithPath: Self.model))
        if let contextLength { patch(&data, at: 32, contextLength) }
        let path = folder.appendingPathComponent("\(name).bin").path
        try data.write(to: URL(fileURLWithPath: path))
        try FileManager.default.copyItem(atPath: Self.tokenizer, toPath: folder.appendingPathComponent("\(name).model").path)
        return path
    }

    private func patch<T>(_ data: inout Data, at offset: Int, _ value: T) {
        withUnsafeBytes(of: value) { data.replaceSubrange(offset..<offset + $0.count, with: $0) }
    }

    private func writeFile(_ folder: URL, _ name: String, _ bytes: [UInt8]) throws -> String {
        let path = folder.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Runs quill to the end (hang detection at 120 s).
    private func quill(_ arguments: [String], stdin: Child.Input = .null, stdout: Child.Output = .collect,
                     environment: [String: String] = [:], directory: String? = nil, memoryLimitMB: Int? = nil) throws -> Finished {
        let child = try Child(arguments, stdin: stdin, stdout: stdout, environment: environment, directory: directory,
                              memoryLimitMB: memoryLimitMB)
        let finished = child.finish()
        XCTAssertFalse(finished.hung, "quill \(arguments.prefix(4)) did not end within 120 s")
        return finished
    }

    /// stderr is exactly one line `quill: error: ...\n` without control characters inside.
    private func assertOneLineError(_ run: Finished, containing fragments: [String] = [], _ context: String = "",
                                    file: StaticString = #filePath, line: UInt = #line) {
        let text = run.errorText
        let message = "\(context) \(run.summary)"
        XCTAssertTrue(text.hasPrefix("quill: error: "), "one-line error: starts with 'quill: error: ' — \(message)", file: file, line: line)
        XCTAssertTrue(text.hasSuffix("\n"), "one-line error: ends in a newline — \(message)", file: file, line: line)
        let body = text.hasSuffix("\n") ? text.unicodeScalars.dropLast() : text.unicodeScalars[...]
        let controls = Set(body.filter { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }.map(\.value))
        XCTAssertTrue(controls.isEmpty, "one-line error: no control characters (\(controls.sorted().map { "0x" + String($0, radix: 16) })) — \(message)",
                      file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(text.contains(fragment), "the error contains '\(fragment)' — \(message)", file: file, line: line)
        }
    }

    private func jsonLines(_ run: Finished) -> [[String: Any]] {
        run.text.split(separator: "\n").map {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? ["unparsed": String($0)]
        }
    }

    private func folderContents(_ folder: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted()
    }

    // MARK: [1] quantize never destroys what OUT names

    func testQuantizeRefusesADirectoryAsOutput() throws {
        let folder = try temporaryFolder()
        let input = try copyModel(into: folder)
        let out = folder.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false)
        _ = try writeFile(out, "keep.txt", Array("keep me\n".utf8))
        let before = folderContents(folder)
        let run = try quill(["quantize", input, out.path])
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run)
        XCTAssertEqual(folderContents(out), ["keep.txt"], "the directory and its file are still there")
        XCTAssertEqual(folderContents(folder), before, "nothing else created beside it")
    }

    func testQuantizeRefusesToOverwriteItsInput() throws {
        let folder = try temporaryFolder()
        let input = try copyModel(into: folder)
        let original = try Data(contentsOf: URL(fileURLWithPath: input))
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("link.bin").path, withDestinationPath: input)
        for output in [folder.path + "/./model.bin", folder.appendingPathComponent("link.bin").path] {
            try original.write(to: URL(fileURLWithPath: input))  // each case starts from the float32 input
            let run = try quill(["quantize", input, output])
            XCTAssertEqual(run.status, 1, "\(output): \(run.summary)")
            assertOneLineError(run, containing: ["same file"], output)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: input)), original, "\(output): IN is unchanged")
        }
    }

    func testQuantizeToDotIsAPlainError() throws {
        let folder = try temporaryFolder()
        let input = try copyModel(into: folder)
        let run = try quill(["quantize", input, "."], directory: folder.path)
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run)
        XCTAssertFalse(run.errorText.contains("NSCocoaErrorDomain"), run.errorText)
    }

    /// A guard: replacing an existing regular file works and leaves nothing behind.
    func testQuantizeReplacesAnExistingFile() throws {
        let folder = try temporaryFolder()
        let input = try copyModel(into: folder)
        let outFolder = folder.appendingPathComponent("q8")
        try FileManager.default.createDirectory(at: outFolder, withIntermediateDirectories: false)
        let output = try writeFile(outFolder, "out.bin", Array("old contents".utf8))
        let run = try quill(["quantize", input, output])
        XCTAssertEqual(run.status, 0, run.summary)
        let info = try quill(["info", "-m", output, "-z", Self.tokenizer, "--json"])
        XCTAssertEqual(info.status, 0, info.summary)
        let object = (try? JSONSerialization.jsonObject(with: info.stdout)) as? [String: Any]
        XCTAssertEqual(object?["version"] as? Int, 2, info.text)
        // OUT and the tokenizer copied beside it (OUT's stem + .model), nothing else.
        XCTAssertEqual(folderContents(outFolder), ["out.bin", "out.model"], "no temporary file left beside OUT")
    }

    /// OUT is a character device. /dev/null itself is not used: today's quill would replace the
    /// machine's /dev/null with a regular file. A device node with the same numbers (1, 3) in a
    /// temporary folder is the same case without that risk.
    func testQuantizeRefusesADevice() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to create a character device") }
        let folder = try temporaryFolder()
        let input = try copyModel(into: folder)
        let device = folder.appendingPathComponent("null").path
        guard mknod(device, S_IFCHR | 0o666, 0x103 /* makedev(1, 3) */) == 0 else { throw XCTSkip("mknod failed: cannot create a device here") }
        let run = try quill(["quantize", input, device])
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run)
        var info = stat()
        XCTAssertEqual(lstat(device, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFCHR, "still a character device")
        XCTAssertEqual(folderContents(folder).sorted(), ["model.bin", "model.model", "null"], "nothing else left beside it")
    }

    // MARK: [2] CRLF batch files

    func testCRLFBatchFilesMatchLF() throws {
        let folder = try temporaryFolder()
        let prompts = ["Once upon a time", "The dog", "The cat"]
        let plain = prompts
        let jsonl = prompts.map { #"{"prompt": "\#($0)"}"# }
        for (kind, lines) in [("text", plain), ("jsonl", jsonl)] {
            let lf = try writeFile(folder, "\(kind)-lf.txt", Array((lines.joined(separator: "\n") + "\n").utf8))
            let crlf = try writeFile(folder, "\(kind)-crlf.txt", Array((lines.joined(separator: "\r\n") + "\r\n").utf8))
            let flags = ["-m", Self.model, "--temp", "0", "-n", "5", "--batch"]
            let expected = try quill(flags + [lf])
            XCTAssertEqual(expected.status, 0, expected.summary)
            let run = try quill(flags + [crlf])
            XCTAssertEqual(run.status, 0, "\(kind): \(run.summary)")
            let objects = jsonLines(run)
            XCTAssertEqual(objects.count, 3, "\(kind): \(run.text)")
            XCTAssertEqual(objects.map { $0["id"] as? Int }, [0, 1, 2], kind)
            XCTAssertEqual(objects.map { $0["text"] as? String }, jsonLines(expected).map { $0["text"] as? String }, kind)
        }
    }

    // MARK: [3] write errors

    func testWriteErrorsOnStdoutAreReported() throws {
        let folder = try temporaryFolder()
        let batch = try writeFile(folder, "batch.txt", Array("Once upon a time\nThe dog\n".utf8))
        let cases: [[String]] = [
            ["-m", Self.model, "--temp", "0", "-n", "8", "Once upon a time"],
            ["-m", Self.model, "--temp", "0", "-n", "8", "--json", "Once upon a time"],
            ["-m", Self.model, "--temp", "0", "-n", "4", "--batch", batch],
            ["tokenize", "-m", Self.model, "Once upon a time"],
            ["info", "-m", Self.model],
            ["perplexity", "-m", Self.model, "--ids", "1,2,3"],
            ["--help"],
        ]
        let full = open("/dev/full", O_WRONLY | O_CLOEXEC)
        guard full >= 0 else { throw XCTSkip("/dev/full is not available") }
        defer { close(full) }
        for arguments in cases {
            let run = try quill(arguments, stdout: .fd(full))
            XCTAssertEqual(run.status, 1, "\(arguments.prefix(3)) to /dev/full: \(run.summary)")
            assertOneLineError(run, containing: ["cannot write output"], "\(arguments.prefix(3)) to /dev/full")
        }
        for arguments in cases {
            let run = try quill(arguments, stdout: .closed)
            XCTAssertEqual(run.status, 1, "\(arguments.prefix(3)) with stdout closed: \(run.summary)")
        }
    }

    /// A guard: a reader that goes away still ends generation quietly.
    func testClosedPipeStillEndsQuietly() throws {
        let child = try Child(["-m", Self.model, "--temp", "0", "--ignore-eos", "-n", "2000", "Once upon a time"], stdout: .raw)
        var byte: UInt8 = 0
        var pollFD = pollfd(fd: child.rawOutput, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&pollFD, 1, 120_000), 1, "some output within the hang timeout")
        XCTAssertEqual(read(child.rawOutput, &byte, 1), 1)
        child.closeRawOutput()
        let run = child.finish()
        XCTAssertEqual(run.status, 0, run.summary)
        XCTAssertEqual(run.errorText, "")
    }

    // MARK: [4] [5] huge context lengths in the header

    func testHugeContextLengthIsAnErrorNotACrash() throws {
        let folder = try temporaryFolder()
        for length: Int32 in [2_147_483_647, 200_000_000] {
            let model = try copyModel(into: folder, name: "ctx\(length)", contextLength: length)
            let run = try quill(["-m", model, "--temp", "0", "-n", "8", "Once upon a time"], memoryLimitMB: 8192)
            XCTAssertNil(run.signal, "seq_len \(length): \(run.summary)")
            XCTAssertEqual(run.status, 1, "seq_len \(length): \(run.summary)")
            assertOneLineError(run, containing: [], "seq_len \(length)")
            XCTAssertLessThan(run.peakRSS, 500_000_000, "seq_len \(length): \(run.summary)")
        }
    }

    func testLargeContextLengthSizesTheCacheForTheRequest() throws {
        let folder = try temporaryFolder()
        let model = try copyModel(into: folder, contextLength: 10_000_000)
        let run = try quill(["-m", model, "--temp", "0", "-n", "8", "Once upon a time"], memoryLimitMB: 8192)
        XCTAssertEqual(run.status, 0, run.summary)
        XCTAssertFalse(run.text.isEmpty)
        XCTAssertLessThan(run.peakRSS, 500_000_000, run.summary)
    }

    func testManyThreadsAndABigBlockOnALongContext() throws {
        let folder = try temporaryFolder()
        let model = try copyModel(into: folder, contextLength: 30_000)
        let run = try quill(["-m", model, "--temp", "0", "-t", "64", "-b", "4096", "-n", "4", "Once upon a time"],
                          memoryLimitMB: 8192)
        XCTAssertEqual(run.status, 0, run.summary)
        XCTAssertFalse(run.text.isEmpty)
    }

    // MARK: [6] one bad line in a batch file

    func testInvalidUTF8LineFailsOnlyThatLine() throws {
        let folder = try temporaryFolder()
        let batch = try writeFile(folder, "batch.txt", Array("good\nbad ".utf8) + [0xFF] + Array("\nok\n".utf8))
        let run = try quill(["-m", Self.model, "--temp", "0", "-n", "4", "--batch", batch])
        XCTAssertEqual(run.status, 1, run.summary)
        let objects = jsonLines(run)
        XCTAssertEqual(objects.count, 3, run.text + run.summary)
        guard objects.count == 3 else { return }
        XCTAssertEqual(objects.map { $0["id"] as? Int }, [0, 1, 2])
        XCTAssertNotNil(objects[0]["text"])
        XCTAssertNotNil(objects[1]["error"])
        XCTAssertNil(objects[1]["text"])
        XCTAssertNotNil(objects[2]["text"])
    }

    // MARK: [8] interrupts

    /// About 300 KB of TinyStories-like text: many seconds of scoring in the debug build.
    private func bigText(in folder: URL) throws -> String {
        let paragraph = """
            Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her \
            friends. One day, she saw a big red ball under a tree. She ran to get it, but a dog took the ball first. \
            Lily was sad, but her mom said, "Let us share with the dog." They played together and were happy.

            """
        return try writeFile(folder, "big.txt", Array(String(repeating: paragraph, count: 300_000 / paragraph.utf8.count).utf8))
    }

    func testInterruptedPerplexityPrintsAPartialResult() throws {
        let folder = try temporaryFolder()
        let text = try bigText(in: folder)
        for (name, signalNumber) in [("SIGINT", SIGINT), ("SIGTERM", SIGTERM)] {
            let child = try Child(["perplexity", "-m", Self.model, "-f", text, "--json", "--verbose"])
            let ready = child.firstErrorLine()
            XCTAssertNotNil(ready, "\(name): a first stderr line")
            child.send(signalNumber)
            let run = child.finish()
            XCTAssertEqual(run.status, 130, "\(name): \(run.summary)")
            let objects = jsonLines(run)
            XCTAssertEqual(objects.count, 1, "\(name): one JSON object: \(run.text)")
            let object = objects.first ?? [:]
            XCTAssertEqual(object["partial"] as? Bool, true, "\(name): \(run.text)")
            let tokens = object["tokens"] as? Int ?? 0, scored = object["scored"] as? Int ?? .max
            XCTAssertLessThan(scored, tokens - 1, "\(name): \(run.text)")
        }
    }

    func testInterruptedBenchExits130() throws {
        let child = try Child(["bench", "-m", Self.model, "-p", "256", "-n", "128", "-r", "1000"])
        XCTAssertNotNil(child.firstErrorLine(), "a first stderr line")
        child.send(SIGINT)
        let run = child.finish()
        XCTAssertFalse(run.hung)
        XCTAssertEqual(run.status, 130, run.summary)
    }

    func testInterruptStopsALongPromptWithinItsPrefill() throws {
        let folder = try temporaryFolder()
        let model = try copyModel(into: folder, contextLength: 30_000)
        let prompt = try writeFile(folder, "prompt.txt", Array(String(repeating: "Once upon a time there was a cat. ", count: 2200).utf8))
        let count = try quill(["tokenize", "-m", model, "-f", prompt])
        let tokens = count.text.split(whereSeparator: \.isWhitespace).count
        XCTAssertTrue((15_000..<30_000).contains(tokens), "the prompt is \(tokens) tokens")
        let child = try Child(["-m", model, "--temp", "0", "--verbose", "-n", "1", "-f", prompt])
        XCTAssertNotNil(child.firstErrorLine(), "a first stderr line")
        child.send(SIGINT)
        let run = child.finish()
        XCTAssertEqual(run.status, 130, run.summary)
        let regex = try NSRegularExpression(pattern: #"prompt: (\d+)/(\d+) tokens"#)
        let text = run.errorText
        let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text))
        XCTAssertNotNil(match, "a 'prompt: K/N tokens' statistic: \(text)")
        if let match, let k = Int(text[Range(match.range(at: 1), in: text)!]), let n = Int(text[Range(match.range(at: 2), in: text)!]) {
            XCTAssertLessThan(k, n, "prefill stopped part way: \(text)")
        }
    }

    func testSecondInterruptStillExits130() throws {
        let folder = try temporaryFolder()
        let model = try copyModel(into: folder, contextLength: 30_000)
        let child = try Child(["-m", model, "--temp", "0", "--ignore-eos", "-n", "100000", "Once upon a time"])
        XCTAssertTrue(child.output!.wait { !$0.isEmpty }.ready, "generated text arrives")
        child.send(SIGINT)
        // Two signals sent back to back merge into one while the first is pending: wait until the
        // first has been delivered (its handler has run) before sending the second.
        let deadline = Date(timeIntervalSinceNow: 120)
        while child.isPending(SIGINT) && Date() < deadline { sched_yield() }
        child.send(SIGINT)
        let run = child.finish()
        XCTAssertNil(run.signal, run.summary)
        XCTAssertEqual(run.status, 130, run.summary)
    }

    // MARK: [9] bounded input

    func testHugeStdinPromptIsRefusedWithoutReadingItAll() throws {
        // Without a context shift (with one, the head and tail are kept: Tests/python/test_context_cli.py).
        let child = try Child(["-m", Self.model, "--temp", "0", "-n", "2", "--no-context-shift"], stdin: .pipe, memoryLimitMB: 2048)
        child.feedAndClose(Data(count: 1_000_000), times: 50)
        let run = child.finish()
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run)
        XCTAssertTrue(run.errorText.contains("too large") || run.errorText.contains("bytes"), run.summary)
        XCTAssertLessThan(run.peakRSS, 200_000_000, run.summary)
    }

    func testHugeStdinToTokenizeIsRefused() throws {
        let child = try Child(["tokenize", "-m", Self.model], stdin: .pipe, memoryLimitMB: 2048)
        child.feedAndClose(Data(repeating: UInt8(ascii: "a"), count: 1_000_000), times: 100)
        let run = child.finish()
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run)
        XCTAssertLessThan(run.peakRSS, 200_000_000, "not read into memory first: \(run.summary)")
    }

    func testHugeBatchLineIsAnErrorLine() throws {
        let child = try Child(["-m", Self.model, "--temp", "0", "-n", "2", "--batch", "-"], stdin: .pipe, memoryLimitMB: 2048)
        child.feedAndClose(Data(count: 1_000_000), times: 50)
        let run = child.finish()
        XCTAssertEqual(run.status, 1, run.summary)
        let objects = jsonLines(run)
        XCTAssertEqual(objects.count, 1, run.text.prefix(500) + " " + run.summary)
        XCTAssertEqual(objects.first?["id"] as? Int, 0)
        XCTAssertNotNil(objects.first?["error"])
        XCTAssertLessThan(run.peakRSS, 200_000_000, run.summary)
    }

    func testBatchFromStdinAnswersEachLineWhileStdinIsOpen() throws {
        let child = try Child(["-m", Self.model, "--temp", "0", "-n", "3", "--parallel", "2", "--batch", "-"], stdin: .pipe)
        child.write(Data("Once upon a time\n".utf8))
        let first = child.output!.wait { $0.contains(0x0A) }
        XCTAssertTrue(first.ready, "the first result arrives while stdin is still open")
        guard first.ready else {
            child.closeInput()
            XCTAssertFalse(child.finish().hung)
            return
        }
        child.write(Data("The dog\n".utf8))
        let second = child.output!.wait { $0.filter { $0 == 0x0A }.count >= 2 }
        XCTAssertTrue(second.ready, "the second result arrives while stdin is still open")
        child.closeInput()
        let run = child.finish()
        XCTAssertEqual(run.status, 0, run.summary)
        XCTAssertEqual(jsonLines(run).map { $0["id"] as? Int }, [0, 1], run.text)
    }

    // MARK: [10] batch details

    private func batchRun(_ folder: URL, _ bytes: [UInt8]) throws -> Finished {
        let file = try writeFile(folder, "batch-\(UUID()).txt", bytes)
        return try quill(["-m", Self.model, "--temp", "0", "-n", "2", "--batch", file])
    }

    func testBatchByteOrderMarkBeforeAJSONLine() throws {
        let run = try batchRun(try temporaryFolder(), [0xEF, 0xBB, 0xBF] + Array(#"{"prompt": "Hi", "id": "a"}"#.utf8) + [0x0A])
        XCTAssertEqual(run.status, 0, run.summary)
        XCTAssertEqual(jsonLines(run).first?["id"] as? String, "a", run.text)
    }

    func testBatchErrorsNameTheFileLine() throws {
        let run = try batchRun(try temporaryFolder(), Array("Once upon a time\n\n{\"prompt\": \"unterminated\n".utf8))
        XCTAssertEqual(run.status, 1, run.summary)
        let error = jsonLines(run).compactMap { $0["error"] as? String }.first
        XCTAssertTrue(error?.contains("line 3") == true, "the bad JSON is on file line 3: \(run.text)")
    }

    func testBatchErrorsNameTheJSONKey() throws {
        let run = try batchRun(try temporaryFolder(), Array(#"{"prompt": "x", "temp": -1}"#.utf8) + [0x0A])
        XCTAssertEqual(run.status, 1, run.summary)
        let error = jsonLines(run).first?["error"] as? String ?? ""
        XCTAssertTrue(error.contains("temp"), error)
        XCTAssertFalse(error.contains("--temp"), "a JSON line's error names its key, not the flag: \(error)")
    }

    func testBatchEmptyStopStringIsAnError() throws {
        let run = try batchRun(try temporaryFolder(), Array(#"{"prompt": "x", "stop": ""}"#.utf8) + [0x0A])
        XCTAssertEqual(run.status, 1, run.summary)
        XCTAssertNotNil(jsonLines(run).first?["error"], run.text)
    }

    func testBatchAcceptsTheLargestSeed() throws {
        let run = try batchRun(try temporaryFolder(),
                               Array(#"{"prompt": "x", "seed": 18446744073709551615, "n_predict": 2}"#.utf8) + [0x0A])
        XCTAssertEqual(run.status, 0, run.summary)
        XCTAssertNil(jsonLines(run).first?["error"], run.text)
        XCTAssertNotNil(run.text.range(of: #""seed"\s*:\s*18446744073709551615\s*[,}]"#, options: .regularExpression),
                        "the seed is echoed exactly: \(run.text)")
    }

    // MARK: [11] FIFOs and devices as inputs

    /// Opens `fifo` for writing on a thread (blocking until a reader opens it), writes, closes.
    /// Teardown opens the read end without blocking, so that a writer nobody read from ends too.
    private func writeToFIFO(_ fifo: String, _ text: String) {
        Thread.detachNewThread {
            let fd = open(fifo, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
            close(fd)
        }
        addTeardownBlock {
            let fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 { close(fd) }
        }
    }

    func testFIFOAsModelOrTokenizerIsRefusedWithoutOpeningIt() throws {
        let folder = try temporaryFolder()
        let fifo = folder.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        for arguments in [["-m", fifo, "-z", Self.tokenizer], ["-m", Self.model, "-z", fifo]] {
            let run = try quill(arguments + ["--temp", "0", "-n", "2", "Once"])
            XCTAssertFalse(run.hung, "\(arguments): returns without anyone opening the FIFO's other end")
            XCTAssertEqual(run.status, 1, "\(arguments): \(run.summary)")
            assertOneLineError(run, containing: ["not a regular file"], "\(arguments)")
        }
    }

    func testDevZeroAsTokenizerIsRefused() throws {
        let run = try quill(["-m", Self.model, "-z", "/dev/zero", "--temp", "0", "-n", "2", "Once"], memoryLimitMB: 2048)
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run)
        XCTAssertLessThan(run.peakRSS, 200_000_000, "refused without reading the device: \(run.summary)")
    }

    func testFIFOAsPromptFileAndBatchFileWorks() throws {
        let folder = try temporaryFolder()
        let promptFIFO = folder.appendingPathComponent("prompt").path
        XCTAssertEqual(mkfifo(promptFIFO, 0o600), 0)
        writeToFIFO(promptFIFO, "Once upon a time")
        let prompt = try quill(["-m", Self.model, "--temp", "0", "-n", "4", "-f", promptFIFO])
        XCTAssertEqual(prompt.status, 0, prompt.summary)
        XCTAssertFalse(prompt.text.isEmpty)

        let batchFIFO = folder.appendingPathComponent("batch").path
        XCTAssertEqual(mkfifo(batchFIFO, 0o600), 0)
        writeToFIFO(batchFIFO, "Once upon a time\nThe dog\n")
        let batch = try quill(["-m", Self.model, "--temp", "0", "-n", "4", "--batch", batchFIFO])
        XCTAssertEqual(batch.status, 0, batch.summary)
        XCTAssertEqual(jsonLines(batch).map { $0["id"] as? Int }, [0, 1], batch.text)
    }

    // MARK: [12] non-finite weights

    func testNaNNormWeightIsRefused() throws {
        let folder = try temporaryFolder()
        var data = try Data(contentsOf: URL(fileURLWithPath: Self.model))
        patch(&data, at: 256, Float.nan)  // rms_att[0][0]: the first float after the 256-byte header
        let model = folder.appendingPathComponent("nan-norm.bin").path
        try data.write(to: URL(fileURLWithPath: model))
        let run = try quill(["-m", model, "-z", Self.tokenizer, "--temp", "0", "-n", "4", "Once"])
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run, containing: ["norm"])
    }

    func testNaNInsideAProjectionIsRefused() throws {
        let folder = try temporaryFolder()
        var data = try Data(contentsOf: URL(fileURLWithPath: Self.model))
        let (dim, layers, vocab) = (128, 4, 2048)
        // v1: rms_att (layers, dim), rms_ffn (layers, dim), rms_final (dim), embedding (vocab, dim), then wq.
        let wq = 256 + 4 * (layers * dim * 2 + dim + vocab * dim)
        patch(&data, at: wq + 4 * 1000, Float.nan)  // inside layer 0's wq (dim × dim)
        let model = folder.appendingPathComponent("nan-wq.bin").path
        try data.write(to: URL(fileURLWithPath: model))
        let run = try quill(["-m", model, "-z", Self.tokenizer, "--temp", "0", "-n", "4", "Once"])
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run)
        let named = ["wq", "query", "attention"].contains { run.errorText.lowercased().contains($0) }
        XCTAssertTrue(named, "the error names the tensor: \(run.errorText)")
    }

    func testNaNScaleInAnInt8ModelIsRefused() throws {
        let folder = try temporaryFolder()
        let input = try copyModel(into: folder)
        let quantized = folder.appendingPathComponent("q8.bin").path
        let quantize = try quill(["quantize", input, quantized])
        XCTAssertEqual(quantize.status, 0, quantize.summary)
        var data = try Data(contentsOf: URL(fileURLWithPath: quantized))
        let groupSize = Int(data[37..<41].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) })
        let (dim, hidden, layers, vocab) = (128, 352, 4, 2048)
        // v2 (Quill's layout): float32 norms, then every quantized tensor's int8 values, then their
        // float32 scales in the same order: embedding's first, then wq's.
        let norms = 4 * (layers * dim * 2 + dim)
        let values = vocab * dim + layers * (4 * dim * dim + 3 * dim * hidden)
        guard groupSize > 0, data.count == 256 + norms + values + 4 * values / groupSize else {
            throw XCTSkip("the int8 file does not have the expected layout (group size \(groupSize), \(data.count) bytes)")
        }
        let firstWQScale = 256 + norms + values + 4 * (vocab * dim / groupSize)
        patch(&data, at: firstWQScale, Float.nan)
        try data.write(to: URL(fileURLWithPath: quantized))
        let run = try quill(["-m", quantized, "-z", Self.tokenizer, "--temp", "0", "-n", "4", "Once"])
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run)
    }

    // MARK: [13] what reaches the terminal, and strict arguments

    func testControlCharactersInAPathAreEscaped() throws {
        let folder = try temporaryFolder()
        let model = try writeFile(folder, "bad\nname\u{1B}[31m.bin", Array(repeating: 0x5A, count: 1000))
        let run = try quill(["-m", model, "-z", Self.tokenizer, "Once"])
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run)
        XCTAssertFalse(run.stderr.contains(0x1B), "no ESC byte reaches the terminal")
    }

    func testInvalidUTF8ArgumentIsAUsageError() throws {
        let child = try Child(bytes: [Array("-m".utf8), Array(Self.model.utf8), Array("-n".utf8), Array("2".utf8), [0x41, 0xFF, 0x42]])
        let run = child.finish()
        XCTAssertEqual(run.status, 2, run.summary)
    }

    func testHexadecimalNumberIsAUsageError() throws {
        let run = try quill(["-m", Self.model, "--temp", "0x10", "-n", "2", "Once"])
        XCTAssertEqual(run.status, 2, run.summary)
    }

    // MARK: [14] bench cleans up and checks its arguments

    func testBenchShapeLeavesTheTemporaryFolderEmpty() throws {
        let scratch = try temporaryFolder()
        let flags = ["bench", "--shape", "15m", "-p", "16", "-n", "4", "-r", "1", "--parallel", "2"]
        let run = try quill(flags, environment: ["TMPDIR": scratch.path])
        XCTAssertEqual(run.status, 0, run.summary)
        XCTAssertEqual(folderContents(scratch), [], "nothing left in TMPDIR")

        let child = try Child(flags, environment: ["TMPDIR": scratch.path])
        XCTAssertNotNil(child.firstErrorLine(), "a first stderr line")
        child.send(SIGINT)
        let interrupted = child.finish()
        XCTAssertEqual(interrupted.status, 130, interrupted.summary)
        XCTAssertEqual(folderContents(scratch), [], "nothing left in TMPDIR after Ctrl-C")
    }

    func testBenchRejectsAbsurdParallelism() throws {
        let scratch = try temporaryFolder()
        let run = try quill(["bench", "--parallel", "100000"], environment: ["TMPDIR": scratch.path], memoryLimitMB: 2048)
        XCTAssertEqual(run.status, 2, run.summary)
        XCTAssertLessThan(run.peakRSS, 200_000_000, "rejected before allocating: \(run.summary)")
    }

    func testBenchPromptLongerThanTheContextIsAnError() throws {
        let run = try quill(["bench", "-m", Self.model, "-p", "1000", "-n", "4", "-r", "1"])
        XCTAssertTrue(run.status == 1 || run.status == 2, run.summary)
        if run.status == 1 {
            assertOneLineError(run)
        } else {
            // A usage error: one message line, then the usual hint.
            let lines = run.errorText.split(separator: "\n", omittingEmptySubsequences: false)
            XCTAssertEqual(lines.count, 3, run.errorText)
            XCTAssertTrue(lines.first?.hasPrefix("quill: ") == true, run.errorText)
        }
    }

    // MARK: [15] the model file changes under the mapping

    func testTruncatedModelWhileRunningIsAnError() throws {
        let folder = try temporaryFolder()
        let model = try copyModel(into: folder, contextLength: 30_000)
        let child = try Child(["-m", model, "--ignore-eos", "-n", "100000", "--temp", "0", "Once"])
        XCTAssertTrue(child.output!.wait { !$0.isEmpty }.ready, "generated text arrives")
        XCTAssertEqual(truncate(model, 0), 0)
        let run = child.finish()
        XCTAssertNil(run.signal, run.summary)
        XCTAssertEqual(run.status, 1, run.summary)
        assertOneLineError(run, containing: ["changed or was truncated"])
    }

    // MARK: [16] the tokenizer beside a symlinked model

    func testTokenizerIsFoundBesideASymlinksTarget() throws {
        let folder = try temporaryFolder()
        let a = folder.appendingPathComponent("A"), b = folder.appendingPathComponent("B")
        try FileManager.default.createDirectory(at: a, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(at: b, withIntermediateDirectories: false)
        let real = try copyModel(into: b, name: "real")
        let link = a.appendingPathComponent("link.bin").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: real)
        let run = try quill(["-m", link, "-n", "4", "--temp", "0", "Once"])
        XCTAssertEqual(run.status, 0, run.summary)
        XCTAssertFalse(run.text.isEmpty)
    }
}
