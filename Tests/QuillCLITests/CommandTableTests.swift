import Foundation
import XCTest

/// The command table against everything made from it or bound to it: the parser, `--help`, the
/// man page, the completions, the README, and `make install`.
final class CommandTableTests: XCTestCase {
    /// (command, flag) for every flag of the table; command "" is generation.
    private func tableFlags() throws -> [(command: String, flag: String)] {
        let run = try CLI.run(["_docs", "flags"])
        XCTAssertEqual(run.status, 0, run.stderr)
        return run.text.split(separator: "\n").map { line in
            let parts = line.split(separator: "\t", omittingEmptySubsequences: false)
            return (String(parts[0]), String(parts[1]))
        }
    }

    private func file(_ relative: String) throws -> String {
        try String(contentsOf: CLI.root.appendingPathComponent(relative), encoding: .utf8)
    }

    func testGeneratedFilesAreWhatTheTablePrints() throws {
        for (kind, path) in [("man", "docs/quill.1"), ("bash", "docs/completions/quill.bash"),
                             ("zsh", "docs/completions/_quill"), ("fish", "docs/completions/quill.fish")] {
            let run = try CLI.run(["_docs", kind])
            XCTAssertEqual(run.status, 0)
            XCTAssertEqual(run.text, try file(path), "\(path) differs from `quill _docs \(kind)`: run `make docs`")
        }
        let tables = try CLI.run(["_docs", "readme"]).text
        XCTAssertTrue(try file("README.md").contains(tables), "README's flag tables differ from `quill _docs readme`: run `make docs`")
    }

    func testEveryFlagIsInHelpManPageCompletionsAndReadme() throws {
        let flags = try tableFlags()
        XCTAssertGreaterThan(flags.count, 80)
        let man = try file("docs/quill.1"), bash = try file("docs/completions/quill.bash")
        let zsh = try file("docs/completions/_quill"), fish = try file("docs/completions/quill.fish")
        let readme = try file("README.md")
        var help: [String: String] = [:]
        for (command, flag) in flags {
            if help[command] == nil {
                help[command] = try CLI.run(command.isEmpty ? ["--help"] : [command, "--help"]).text
            }
            let where_ = command.isEmpty ? "generation" : command
            XCTAssertTrue(help[command]!.contains(flag), "\(flag) of \(where_) is missing from its --help")
            // mdoc writes --model as "Fl -model".
            XCTAssertTrue(man.contains("Fl " + flag.dropFirst()), "\(flag) of \(where_) is missing from the man page")
            XCTAssertTrue(bash.contains(flag), "\(flag) of \(where_) is missing from the bash completion")
            XCTAssertTrue(zsh.contains("'\(flag)["), "\(flag) of \(where_) is missing from the zsh completion")
            // fish: -l long, -s one letter, -o a single-dash word.
            let fishFlag = flag.hasPrefix("--") ? "-l \(flag.dropFirst(2))" : (flag.count == 2 ? "-s " : "-o ") + flag.dropFirst()
            XCTAssertTrue(fish.contains(fishFlag), "\(flag) of \(where_) is missing from the fish completion")
            XCTAssertTrue(readme.contains("`\(flag)") || readme.contains(", \(flag)"), "\(flag) of \(where_) is missing from the README")
        }
    }

    /// Every flag literal in a `case` of the parser must be a row of the table (the parser
    /// refuses the others as unknown, so a flag added to the parser alone would never work).
    func testEveryFlagTheParserNamesIsInTheTable() throws {
        let source = try file("Sources/QuillCommandLine/Arguments.swift")
        let known = Set(try tableFlags().map(\.flag))
        let literal = try NSRegularExpression(pattern: #""(--?[A-Za-z][A-Za-z0-9-]*)""#)
        var missing: [String] = []
        for line in source.split(separator: "\n") where line.trimmingCharacters(in: .whitespaces).hasPrefix("case \"") {
            let text = String(line)
            for match in literal.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                let flag = String(text[Range(match.range(at: 1), in: text)!])
                if !known.contains(flag) { missing.append(flag) }
            }
        }
        XCTAssertEqual(missing, [], "flags parsed in Arguments.swift without a row in CommandTable.swift")
    }

    /// Every flag of the table is accepted by its command's parser: followed by a flag no one
    /// has, the error must be about that one, not about the flag under test.
    func testEveryTableFlagIsAcceptedByItsParser() throws {
        for (command, flag) in try tableFlags() where flag != "-h" && flag != "--help" && flag != "--version" {
            var arguments = command.isEmpty ? [] : [command]
            arguments += [flag, "1", "--no-such-flag"]
            let run = try CLI.run(arguments)
            XCTAssertEqual(run.status, 2, "\(command) \(flag)")
            XCTAssertFalse(run.stderr.contains("unknown option '\(flag)'"), "\(command) \(flag): \(run.stderr)")
        }
    }

    func testSubcommandHelpIsItsOwn() throws {
        let global = try CLI.run(["--help"])
        XCTAssertTrue(global.text.hasPrefix("usage: quill [options] [PROMPT]"))
        for command in ["perplexity", "tokenize", "detokenize", "info", "quantize", "bench", "logits"] {
            let run = try CLI.run([command, "--help"])
            XCTAssertEqual(run.status, 0)
            XCTAssertTrue(run.text.hasPrefix("usage: quill \(command) "), run.text)
            XCTAssertNotEqual(run.text, global.text)
        }
    }

    func testAWordOneEditFromASubcommandIsAUsageError() throws {
        for (word, meant) in [("infoo", "info"), ("tokenise", "tokenize"), ("bnech", "bench"), ("perplexty", "perplexity")] {
            let run = try CLI.run([word])
            XCTAssertEqual(run.status, 2, word)
            XCTAssertTrue(run.stderr.contains("did you mean '\(meant)'?"), run.stderr)
            XCTAssertEqual(run.stdout.count, 0)
        }
        // Real one-word prompts, and a near word given with -p, still generate.
        for arguments in [["Once"], ["Lily"], ["-p", "infoo"]] {
            let run = try CLI.run(try CLI.storiesFlags() + ["-n", "3", "--temp", "0"] + arguments)
            XCTAssertEqual(run.status, 0, "\(arguments): \(run.stderr)")
            XCTAssertFalse(run.text.isEmpty)
        }
    }

    func testManPageLints() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mandoc") else {
            throw XCTSkip("mandoc is not installed (make test installs it)")
        }
        let run = try runTool("/usr/bin/mandoc", ["-T", "lint", "-W", "warning", CLI.root.appendingPathComponent("docs/quill.1").path])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertEqual(run.output, "")
    }

    func testCompletionScriptsParseAndBashCompletes() throws {
        let bash = CLI.root.appendingPathComponent("docs/completions/quill.bash").path
        XCTAssertEqual(try runTool("/bin/bash", ["-n", bash]).status, 0)
        let script = """
            source '\(bash)'
            complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _quill; echo "${COMPREPLY[*]}"; }
            complete_words quill --top
            complete_words quill tok
            complete_words quill quantize in.bin out.gguf --type Q
            complete_words quill perplexity --per
            complete_words quill bench --shape gemma
            """
        let run = try runTool("/bin/bash", ["-c", script])
        XCTAssertEqual(run.output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init),
                       ["--top-k --top-p", "tokenize", "Q8_0 Q4_0 Q5_0", "--per-token", "gemma-2b gemma2-2b", ""])
        for (shell, arguments) in [("/usr/bin/zsh", ["-n"]), ("/usr/bin/fish", ["--no-execute"])] {
            guard FileManager.default.isExecutableFile(atPath: shell) else {
                throw XCTSkip("\(shell) is not installed (make test installs it)")
            }
            let path = CLI.root.appendingPathComponent(shell.hasSuffix("zsh") ? "docs/completions/_quill" : "docs/completions/quill.fish").path
            let check = try runTool(shell, arguments + [path])
            XCTAssertEqual(check.status, 0, "\(shell): \(check.output)")
        }
    }

    /// `make install` into a temporary DESTDIR, the installed binary run from another folder
    /// without -m (it finds its model under PREFIX/share/quill), then `make uninstall`.
    func testInstallIntoDestdirAndRunFromElsewhere() throws {
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent("quill-install-\(UUID())")
        defer { try? FileManager.default.removeItem(at: stage) }
        let make = ["-C", CLI.root.path, "DESTDIR=\(stage.path)", "PREFIX=/opt/q", "INSTALL_BINARY=\(CLI.executable.path)"]
        let install = try runTool("/usr/bin/make", make + ["install"])
        XCTAssertEqual(install.status, 0, install.output)
        let prefix = stage.appendingPathComponent("opt/q")
        let expected = ["bin/quill", "share/quill/tinystories.bin", "share/quill/tinystories.model", "share/man/man1/quill.1",
                        "share/bash-completion/completions/quill", "share/zsh/site-functions/_quill",
                        "share/fish/vendor_completions.d/quill.fish"]
        XCTAssertEqual(try installedFiles(prefix), expected.sorted())

        let elsewhere = stage.appendingPathComponent("elsewhere")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        let installed = prefix.appendingPathComponent("bin/quill").path
        let run = try runTool(installed, ["-n", "5", "--temp", "0", "Once upon a time"], directory: elsewhere)
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertFalse(run.output.isEmpty)

        // Without the model, the error names every place it looked, the install prefix among them.
        try FileManager.default.removeItem(at: prefix.appendingPathComponent("share/quill/tinystories.bin"))
        let missing = try runTool(installed, ["Once"], directory: elsewhere)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.output.contains(prefix.appendingPathComponent("share/quill/tinystories.bin").path), missing.output)
        XCTAssertTrue(missing.output.contains(elsewhere.appendingPathComponent("models/tinystories.bin").path), missing.output)

        let uninstall = try runTool("/usr/bin/make", make + ["uninstall"])
        XCTAssertEqual(uninstall.status, 0, uninstall.output)
        XCTAssertEqual(try installedFiles(prefix), [])
    }

    func testSafetensorsFileAndHuggingFaceFolderAreNamed() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("quill-hf-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // A safetensors file: 8-byte little-endian header length, the JSON header, the data.
        let header = Array(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.utf8)
        var bytes = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header
        bytes += [UInt8](repeating: 0, count: 8)
        let safetensors = folder.appendingPathComponent("model.safetensors")
        try Data(bytes).write(to: safetensors)
        try Data("{}".utf8).write(to: folder.appendingPathComponent("config.json"))
        for (arguments, what) in [(["-m", safetensors.path, "x"], "is a safetensors file"), (["info", safetensors.path], "is a safetensors file"),
                                  (["-m", folder.path, "x"], "is a Hugging Face model folder")] {
            let run = try CLI.run(arguments)
            XCTAssertEqual(run.status, 1)
            XCTAssertTrue(run.stderr.contains(what) && run.stderr.contains("scripts/export.py"), run.stderr)
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        }
    }

    /// quantize without a type writes OUT.model beside OUT, so `-m OUT` works at once; the
    /// group size it picks is the README's stated default (stories260K: dim 64, hidden_dim 172,
    /// so 64, 32, 16 and 8 do not divide both and 4 does).
    func testQuantizeWritesTheTokenizerBesideItsOutput() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("quill-q-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let input = folder.appendingPathComponent("stories.bin")
        try FileManager.default.copyItem(atPath: try CLI.sharedFile("stories260K.bin"), toPath: input.path)
        try FileManager.default.copyItem(atPath: try CLI.sharedFile("tok512.model"), toPath: folder.appendingPathComponent("stories.model").path)
        let output = folder.appendingPathComponent("small-q8.bin")
        let quantize = try CLI.run(["quantize", input.path, output.path])
        XCTAssertEqual(quantize.status, 0, quantize.stderr)
        XCTAssertTrue(quantize.stderr.contains("Q8_0 group 4"), quantize.stderr)
        XCTAssertEqual(try Data(contentsOf: folder.appendingPathComponent("small-q8.model")),
                       try Data(contentsOf: URL(fileURLWithPath: try CLI.sharedFile("tok512.model"))))
        let run = try CLI.run(["-m", output.path, "-n", "4", "--temp", "0", "Once"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(try file("README.md").contains("`--group-size N` | llama2.c int8 only: weights per scale (default: 64, or the "
                                                     + "largest power of two below it that divides dim and hidden_dim)"))
    }

    /// Progress lines are for terminals: with stderr a file, perplexity and quantize write none.
    func testNoProgressBytesWhenStderrIsNotATerminal() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("quill-p-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let text = folder.appendingPathComponent("text.txt")
        try Data(String(repeating: "Once upon a time there was a cat. ", count: 40).utf8).write(to: text)
        let model = try CLI.sharedFile("stories260K.bin")
        for arguments in [["perplexity", "-m", model, "-z", try CLI.sharedFile("tok512.model"), "-f", text.path, "-b", "8"],
                          ["quantize", model, folder.appendingPathComponent("q.gguf").path, "Q8_0", "-z", try CLI.sharedFile("tok512.model")],
                          ["quantize", model, folder.appendingPathComponent("q.bin").path]] {
            let run = try CLI.run(arguments)
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertFalse(run.stderr.contains("\r") || run.stderr.contains("\u{1B}"), "\(arguments[0]): \(run.stderr.debugDescription)")
        }
    }

    // MARK: - Helpers

    private func installedFiles(_ prefix: URL) throws -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: prefix.path) else { return [] }
        var files: [String] = []
        while let path = walker.nextObject() as? String {
            var folder: ObjCBool = false
            if FileManager.default.fileExists(atPath: prefix.appendingPathComponent(path).path, isDirectory: &folder), !folder.boolValue {
                files.append(path)
            }
        }
        return files.sorted()
    }

    /// Runs a tool with stdout and stderr together; QUILL_MODEL unset.
    private func runTool(_ path: String, _ arguments: [String], directory: URL? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        var environment = ProcessInfo.processInfo.environment
        environment["QUILL_MODEL"] = nil
        process.environment = environment
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("quill-tool-\(UUID())")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try handle.close()
        return (process.terminationStatus, try String(contentsOf: output, encoding: .utf8))
    }
}
