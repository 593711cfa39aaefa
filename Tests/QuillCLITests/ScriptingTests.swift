import Foundation
import XCTest

/// Batch mode, JSON output, stop strings and the inspection subcommands, end to end.
final class ScriptingTests: XCTestCase {
    private func json(_ line: Substring) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
    }

    private func lines(_ run: QuillRun) -> [Substring] { run.text.split(separator: "\n") }

    private func writeTemporary(_ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("quill-batch-\(UUID()).txt")
        try Data(text.utf8).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    func testBatchEqualsSinglePromptRunsGreedyAndSeeded() throws {
        let flags = try CLI.storiesFlags()
        let requests = [
            (#"{"id": "a", "prompt": "Once upon a time", "n_predict": 40, "temp": 0}"#, ["-p", "Once upon a time", "-n", "40", "--temp", "0"]),
            (#"{"id": 7, "prompt": "The dog", "n_predict": 30, "temp": 0.9, "seed": 11}"#, ["-p", "The dog", "-n", "30", "--temp", "0.9", "-s", "11"]),
            (#"{"prompt": "Lily and Ben", "n_predict": 50, "temp": 1.0, "top_k": 0, "top_p": 0.9, "seed": 3}"#,
             ["-p", "Lily and Ben", "-n", "50", "--temp", "1.0", "--top-k", "0", "--top-p", "0.9", "-s", "3"]),
            (#"{"prompt": "", "n_predict": 25, "temp": 0}"#, ["-p", "", "-n", "25", "--temp", "0"]),
            (#"{"prompt": "A bird", "n_predict": 35, "temp": 0.8, "seed": 99, "stop": [" the"]}"#,
             ["-p", "A bird", "-n", "35", "-s", "99", "--stop", " the"]),
        ]
        let singles = try requests.map { try json(lines(try CLI.run(flags + $0.1 + ["--json"]))[0]) }
        let input = try writeTemporary(requests.map(\.0).joined(separator: "\n") + "\n")
        for parallel in ["1", "2", "5"] {
            let batch = try CLI.run(flags + ["--batch", input, "--parallel", parallel])
            XCTAssertEqual(batch.status, 0, batch.stderr)
            let objects = try lines(batch).map { try json($0) }
            XCTAssertEqual(objects.count, requests.count)
            XCTAssertEqual(objects[0]["id"] as? String, "a")
            XCTAssertEqual(objects[1]["id"] as? Int, 7)
            XCTAssertEqual(objects[2]["id"] as? Int, 2, "a request without an id gets its line index")
            for (single, batched) in zip(singles, objects) {
                XCTAssertEqual(batched["text"] as? String, single["text"] as? String, "parallel \(parallel)")
                XCTAssertEqual(batched["token_ids"] as? [Int], single["token_ids"] as? [Int])
                XCTAssertEqual(batched["stop_reason"] as? String, single["stop_reason"] as? String)
                XCTAssertEqual(batched["tokens_prompt"] as? Int, single["tokens_prompt"] as? Int)
                for key in ["tokens_generated", "ms_prompt", "ms_generate"] { XCTAssertNotNil(batched[key], key) }
            }
        }
    }

    func testBadLinesGetErrorsAndTheBatchGoesOn() throws {
        let input = try writeTemporary([
            "Once upon a time",
            #"{"prompt": "x", "colour": "red"}"#,
            #"{"prompt": "unterminated"#,
            #"{"id": "t", "prompt": "hi", "top_p": 1.7}"#,
            #"{"prompt": "\#(String(repeating: "once upon a time ", count: 200))"}"#,
            "The end",
        ].joined(separator: "\n"))
        // --no-context-shift: line 5's prompt is refused (with a shift it would keep its head and tail).
        let run = try CLI.run(try CLI.storiesFlags() + ["--batch", input, "-n", "5", "--temp", "0", "--no-context-shift"])
        XCTAssertEqual(run.status, 1, "a failed line makes the exit status 1")
        let objects = try lines(run).map { try json($0) }
        XCTAssertEqual(objects.count, 6)
        XCTAssertNotNil(objects[0]["text"])
        XCTAssertEqual(objects[1]["error"] as? String, #"line 2: unknown key "colour""#)
        XCTAssertEqual(objects[2]["error"] as? String, "line 3: not a valid JSON object: unterminated string at byte 24")
        XCTAssertEqual(objects[3]["id"] as? String, "t")
        XCTAssertEqual(objects[3]["error"] as? String, #"line 4: "top_p" must be in (0, 1], got 1.7"#)
        XCTAssertEqual(objects[4]["error"] as? String, "line 5: prompt is 1001 tokens but the context window is 512")
        XCTAssertNotNil(objects[5]["text"], "lines after errors still run")
    }

    func testShardsCoverEveryLineExactlyOnce() throws {
        let prompts = (0..<11).map { "Story number \($0)" }
        let input = try writeTemporary(prompts.joined(separator: "\n"))
        var seen: [Int] = []
        for k in 0..<3 {
            let run = try CLI.run(try CLI.storiesFlags() + ["--batch", input, "--shard", "\(k)/3", "-n", "2", "--temp", "0"])
            XCTAssertEqual(run.status, 0, run.stderr)
            let ids = try lines(run).map { try json($0)["id"] as! Int }
            XCTAssertTrue(ids.allSatisfy { $0 % 3 == k })
            seen += ids
        }
        XCTAssertEqual(seen.sorted(), Array(0..<11))
    }

    func testStopStringSpanningTokensIsCutAndReported() throws {
        let flags = try CLI.storiesFlags() + ["--temp", "0", "-n", "60"]
        let full = try CLI.run(flags).text
        // "ttle girl na" starts inside "▁little" and ends inside "▁named": it spans several tokens.
        let stop = "ttle girl na"
        let cut = try XCTUnwrap(full.range(of: stop))
        let stopped = try CLI.run(flags + ["-r", stop])
        XCTAssertEqual(stopped.text, String(full[..<cut.lowerBound]) + "\n")
        let object = try json(lines(try CLI.run(flags + ["--stop", stop, "--json"]))[0])
        XCTAssertEqual(object["stop_reason"] as? String, "stop")
        XCTAssertEqual(object["text"] as? String, String(full[..<cut.lowerBound]))
    }

    func testEscapeEchoIgnoreEOSAndRepeatPenalty() throws {
        let flags = try CLI.storiesFlags() + ["--temp", "0", "-n", "10"]
        let escaped = try CLI.run(flags + ["-e", "--echo", "-p", #"Tom\tran.\nHe"#])
        XCTAssertTrue(escaped.text.hasPrefix("Tom\tran.\nHe"), escaped.text)
        let raw = try CLI.run(flags + ["--echo", "-p", #"Tom\tran"#])
        XCTAssertTrue(raw.text.hasPrefix(#"Tom\tran"#), "without -e the backslashes stay")
        // stories260K ends a story with BOS; --ignore-eos keeps going to -n.
        let untilEOS = try json(lines(try CLI.run(try CLI.storiesFlags() + ["--temp", "0", "-n", "400", "--json"]))[0])
        XCTAssertEqual(untilEOS["stop_reason"] as? String, "eos")
        let ignoring = try json(lines(try CLI.run(try CLI.storiesFlags() + ["--temp", "0", "-n", "400", "--json", "--ignore-eos"]))[0])
        XCTAssertEqual(ignoring["tokens_generated"] as? Int, 400)
        let bigSeed = try json(lines(try CLI.run(flags + ["-s", "18446744073709551615", "--json"]))[0])
        XCTAssertEqual((bigSeed["seed"] as? NSNumber)?.uint64Value, UInt64.max, "seeds above Int64.max are reported as given")
        let penalised = try CLI.run(flags + ["-n", "60", "--repeat-penalty", "1.5"])
        XCTAssertNotEqual(penalised.text, try CLI.run(flags + ["-n", "60"]).text)
    }

    func testTokenizeDetokenizeInfoAndPerplexity() throws {
        let tokenizer = try CLI.sharedFile("tok512.model")
        XCTAssertEqual(try CLI.run(["tokenize", "-z", tokenizer, "Once upon a time"]).text, "1 403 407 261 378\n")
        let pieces = try CLI.run(["tokenize", "-z", tokenizer, "--pieces", "--no-bos", "Once"]).text
        XCTAssertEqual(pieces, "403\t▁Once\n")
        let tokenized = try json(lines(try CLI.run(["tokenize", "-z", tokenizer, "--json"], stdin: Data("héllo wörld 🦙".utf8)))[0])
        let ids = try XCTUnwrap(tokenized["ids"] as? [Int])
        XCTAssertEqual((tokenized["pieces"] as? [String])?.count, ids.count)
        XCTAssertTrue(ids.contains(3 + 0xF0), "the emoji falls back to bytes")
        let idList = ids.map(String.init).joined(separator: " ")
        XCTAssertEqual(try CLI.run(["detokenize", "-z", tokenizer, idList]).text, "héllo wörld 🦙")
        XCTAssertEqual(try CLI.run(["detokenize", "-z", tokenizer, "1,403,407,261,378"]).text, "Once upon a time")

        let info = try json(lines(try CLI.run(["info", "-m", try CLI.sharedFile("stories260K.bin"), "--json"]))[0])
        XCTAssertEqual(info["version"] as? Int, 0)
        // Per layer 2·64 + 64·64·2 + 32·64·2 + 3·64·172 = 45,440; ×5 layers + 512·64 + 64 = 260,032,
        // which with the 7 × int32 header and 2·512·4 RoPE floats gives the file's 1,056,540 bytes.
        XCTAssertEqual(info["parameters"] as? Int, 260_032)
        XCTAssertEqual(info["bytes"] as? Int, 28 + 4 * (260_032 + 2 * 512 * 4))
        XCTAssertEqual(info["shared_classifier"] as? Bool, true)
        XCTAssertEqual(info["context_length"] as? Int, 512)

        let text = try writeTemporary("Once upon a time, there was a little girl named Lily.")
        let perplexity = try json(lines(try CLI.run(["perplexity", "-m", try CLI.sharedFile("stories260K.bin"),
                                                      "-z", tokenizer, "-f", text, "--json", "--per-token"]))[0])
        let perToken = try XCTUnwrap(perplexity["per_token"] as? [[String: Any]])
        let logProbabilities = perToken.map { $0["logprob"] as! Double }
        XCTAssertEqual(perplexity["scored"] as? Int, logProbabilities.count)
        XCTAssertEqual(perplexity["nll_mean"] as! Double, -logProbabilities.reduce(0, +) / Double(logProbabilities.count), accuracy: 1e-5)
        XCTAssertEqual(perplexity["bytes"] as? Int, 53)
        let byIDs = try json(lines(try CLI.run(["perplexity", "-m", try CLI.sharedFile("stories260K.bin"),
                                                 "--ids", "1,403,407,261,378", "--json"]))[0])
        XCTAssertEqual(byIDs["scored"] as? Int, 4)
        XCTAssertTrue(byIDs["bits_per_byte"] is NSNull, "no text, no bytes")
        let idsFile = try writeTemporary("1 403\n407, 261 378\n")
        let byFile = try json(lines(try CLI.run(["perplexity", "-m", try CLI.sharedFile("stories260K.bin"),
                                                  "--ids-file", idsFile, "--json"]))[0])
        XCTAssertEqual(byFile["nll_mean"] as! Double, byIDs["nll_mean"] as! Double, accuracy: 1e-9)
    }

    func testQuantizedModelRunsAndInfoSaysSo() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("quill-q8-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let output = folder.appendingPathComponent("q8.bin").path
        let run = try CLI.run(["quantize", try CLI.sharedFile("stories260K.bin"), output])
        XCTAssertEqual(run.status, 0, run.stderr)
        let info = try json(lines(try CLI.run(["info", "-m", output, "--json"]))[0])
        XCTAssertEqual(info["quantization"] as? String, "Q8_0 (int8, group size 4)", "hidden_dim 172 allows groups of 4")
        let text = try CLI.run(["-m", output, "-z", try CLI.sharedFile("tok512.model"), "--temp", "0", "-n", "20"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.text.hasPrefix("Once upon a time"), text.text)
        let bad = try CLI.run(["quantize", try CLI.sharedFile("stories260K.bin"), output, "--group-size", "48"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("--group-size 48 does not divide dim 64 and hidden_dim 172"), bad.stderr)
    }
}
