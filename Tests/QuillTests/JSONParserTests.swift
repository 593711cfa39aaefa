import Foundation
import Quill
import XCTest

final class JSONParserTests: XCTestCase {
    /// Foundation's JSONSerialization is the independent reader: on texts both should accept or
    /// refuse alike, they must agree, and accepted values must match.
    func testAgreesWithFoundationOnAcceptAndReject() throws {
        let texts = [
            "{}", "[]", "0", "-0", "1.5e+3", "-2E-2", "\"a\"", "true", "false", "null", #"{"a": [1, {"b": null}]}"#,
            #"["\u00e9\ud83d\ude00", "\n\t\\\/\""]"#, " [1 , 2 ] ", "01", "1.", ".5", "1e", "+1",
            "[1 2]", "{\"a\" 1}", "\"\u{01}\"", "tru", "nul", "[", "{", "\"abc", #""\x""#, #""\u12""#, "1 2", "",
            "[-]", "-01", "1e+", "0x10", "NaN", "Infinity", "[\"a\"]]", "{\"a\":{\"b\":[true,false,null,1e9]}}",
        ]
        for text in texts {
            let ours = try? JSONParser.parse(Array(text.utf8))
            let theirs = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
            XCTAssertEqual(ours != nil, theirs != nil, "accept/reject of \(text.debugDescription)")
            if let ours, let theirs {
                XCTAssertTrue(matches(ours, theirs), "value of \(text.debugDescription)")
            }
        }
    }

    private func matches(_ value: JSONValue, _ object: Any) -> Bool {
        switch value {
        case .string(let s): return (object as? String) == s
        case .number(let text): return (object as? NSNumber).map { $0.doubleValue == Double(text)! } ?? false
        case .bool(let b): return (object as? NSNumber).map { $0.boolValue == b } ?? false
        case .null: return object is NSNull
        case .array(let items):
            guard let array = object as? [Any], array.count == items.count else { return false }
            return zip(items, array).allSatisfy { matches($0, $1) }
        case .object(let members):
            guard let dictionary = object as? [String: Any], dictionary.count == members.count else { return false }
            return members.allSatisfy { member in dictionary[member.key].map { matches(member.value, $0) } ?? false }
        }
    }

    /// What a strict reader of untrusted lines must refuse even where other readers (Foundation
    /// takes trailing commas) are lenient.
    func testRefusesDuplicateKeysLoneSurrogatesAndDeepNesting() {
        for text in ["[1,]", #"{"a":1,}"#, #"{"a": 1, "a": 2}"#, #""\ud800""#, #""\udc00x""#, #""\ud800\u0041""#,
                     String(repeating: "[", count: 65) + String(repeating: "]", count: 65)] {
            XCTAssertThrowsError(try JSONParser.parse(Array(text.utf8)), text)
        }
        let deepest = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNoThrow(try JSONParser.parse(Array(deepest.utf8)))
    }

    func testNumbersKeepTheirTextSoSeedsAreExact() throws {
        let line = try BatchRequestLine.parse(Array(#"{"prompt": "x", "seed": 18446744073709551615}"#.utf8),
                                              defaults: GenerationRequest(prompt: []))
        XCTAssertEqual(line.request.sampling.seed, UInt64.max)
        let random = try BatchRequestLine.parse(Array(#"{"prompt": "x", "seed": -1}"#.utf8),
                                                defaults: GenerationRequest(prompt: [], sampling: {
                                                    var s = SamplingParameters(); s.seed = 7; return s }()))
        XCTAssertNil(random.request.sampling.seed)
        XCTAssertThrowsError(try BatchRequestLine.parse(Array(#"{"prompt": "x", "seed": 18446744073709551616}"#.utf8),
                                                        defaults: GenerationRequest(prompt: [])))
    }

    func testBatchLineErrorsNameTheJSONKey() {
        let cases: [(String, String)] = [
            (#"{"prompt": "x", "temp": -1}"#, #""temp" must be a finite number ≥ 0, got -1.0"#),
            (#"{"prompt": "x", "stop": ""}"#, #""stop" strings must not be empty"#),
            (#"{"prompt": "x", "stop": ["a", ""]}"#, #""stop" strings must not be empty"#),
            (#"{"prompt": "x", "top_k": 1.5}"#, #""top_k" must be an integer, got 1.5"#),
            (#"{"prompt": "x", "n_predict": -2}"#, #""n_predict" must be ≥ -1 (-1 = until end of story), got -2"#),
            (#"{"prompt": "x", "ignore_eos": 1}"#, #""ignore_eos" must be true or false"#),
            (#"{"prompt": 3}"#, #""prompt" must be a string"#),
            (#"{"prompt": "x", "colour": 1}"#, #"unknown key "colour""#),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try BatchRequestLine.parse(Array(text.utf8), defaults: GenerationRequest(prompt: [])), text) {
                XCTAssertEqual(($0 as? BatchLineError)?.message, message)
            }
        }
    }
}
