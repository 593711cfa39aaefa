import Foundation
import XCTest

/// Every command that runs the model loads BLAS through the one assembly path, so a missing
/// library is a one-line error with exit 1 (it used to be a trap in perplexity, logits and bench).
final class BLASLoadingTests: XCTestCase {
    func testMissingBLASIsAClearErrorForEveryCommand() throws {
        let model = CLI.root.appendingPathComponent("models/tinystories.bin").path
        let commands: [[String]] = [
            ["-m", model, "-n", "4", "Once"],
            ["perplexity", "-m", model, "--ids", "1,2,3"],
            ["logits", "-m", model, "--ids", "1,2"],
            ["bench", "-m", model, "-p", "8", "-n", "4", "-r", "1", "--parallel", "0"],
        ]
        for arguments in commands {
            let run = try CLI.run(arguments, environment: ["QUILL_BLAS_LIBRARY": "/nonexistent/libblas.so"])
            XCTAssertEqual(run.status, 1, "\(arguments.prefix(2))")
            let errors = run.stderr.split(separator: "\n").filter { $0.hasPrefix("quill: error:") }
            XCTAssertEqual(errors.count, 1, run.stderr)
            XCTAssertTrue(errors.first?.contains("cannot load the BLAS library /nonexistent/libblas.so") ?? false, run.stderr)
        }
    }
}
