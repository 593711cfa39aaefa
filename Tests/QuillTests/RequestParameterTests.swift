import XCTest
@testable import Quill

/// The table of request parameters against the request it describes.
final class RequestParameterTests: XCTestCase {
    /// Every field a row can set, as text, in a fixed order.
    private func fields(_ r: GenerationRequest) -> [String] {
        let s = r.sampling
        return ["\(r.maxNewTokens)", "\(s.temperature)", "\(s.topK)", "\(s.topP)", "\(s.minP)", "\(s.repeatPenalty)",
                "\(s.repeatLastN)", "\(String(describing: s.seed))", "\(r.stopStrings)", "\(r.ignoreEOS)",
                "\(String(describing: r.logprobs))"]
    }

    func testEachDefaultIsTheRequestsOwn() throws {
        let fresh = GenerationRequest(prompt: [])
        for parameter in RequestParameter.all {
            var request = fresh
            try parameter.apply(parameter.defaultValue, to: &request)
            XCTAssertEqual(fields(request), fields(fresh), "the table's default of \(parameter.key) is not the request's")
        }
    }

    /// Each row sets one field, and no two rows set the same one.
    func testEachRowSetsItsOwnField() throws {
        let fresh = GenerationRequest(prompt: [])
        var changed: [Int] = []
        for parameter in RequestParameter.all {
            let value: ParameterValue
            switch parameter.kind {
            case .integer, .count: value = .number("3")
            case .decimal: value = .number("0.5")
            case .seed: value = .number("7")
            case .flag: value = .bool(true)
            case .strings: value = .strings(["x"])
            }
            var request = fresh
            try parameter.apply(value, to: &request)
            let differing = zip(fields(request), fields(fresh)).enumerated().filter { $0.element.0 != $0.element.1 }.map(\.offset)
            XCTAssertEqual(differing.count, 1, "\(parameter.key) changed fields \(differing)")
            changed += differing
        }
        XCTAssertEqual(Set(changed).count, RequestParameter.all.count)
        XCTAssertEqual(Set(changed).count, fields(fresh).count, "a request field has no row in the table")
    }

    func testChecksNameTheKeyAndShowTheValue() {
        let bad: [(String, ParameterValue, String)] = [
            ("n_predict", .number("-2"), "must be ≥ -1 (-1 = until end of story), got -2"),
            ("temp", .number("-1"), "must be a finite number ≥ 0, got -1.0"),
            ("top_k", .number("-1"), "must be ≥ 0, got -1"),
            ("top_p", .number("0"), "must be in (0, 1], got 0.0"),
            ("min_p", .number("1.5"), "must be in [0, 1], got 1.5"),
            ("repeat_penalty", .number("0"), "must be a finite number > 0, got 0.0"),
            ("repeat_last_n", .number("-2"), "must be ≥ -1, got -2"),
            ("seed", .number("18446744073709551616"), "must be an integer from 0 to 18446744073709551615 (or -1 for random), got 18446744073709551616"),
            ("stop", .strings(["a", ""]), "strings must not be empty"),
            ("ignore_eos", .number("1"), "must be true or false"),
            ("top_k", .number("1.5"), "must be an integer, got 1.5"),
            ("temp", .string("hot"), "must be a number"),
            ("logprobs", .number("101"), "must be between 0 and 100 (alternatives per token), got 101"),
            ("logprobs", .number("-1"), "must be between 0 and 100 (alternatives per token), got -1"),
            ("logprobs", .bool(true), "must be an integer"),
        ]
        for (key, value, problem) in bad {
            var request = GenerationRequest(prompt: [])
            XCTAssertThrowsError(try RequestParameter.named(key)!.apply(value, to: &request), key) {
                XCTAssertEqual(($0 as? ParameterError)?.parameter, key)
                XCTAssertEqual(($0 as? ParameterError)?.problem, problem)
            }
        }
    }

    /// Keys and flags name one row each.
    func testKeysAndFlagsAreUnique() {
        let keys = RequestParameter.all.map(\.key), flags = RequestParameter.all.flatMap(\.flags)
        XCTAssertEqual(Set(keys).count, keys.count)
        XCTAssertEqual(Set(flags).count, flags.count)
    }
}
