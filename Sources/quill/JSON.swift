import Foundation
import Quill

/// A JSON value written with its keys in the order given (JSONSerialization would sort or
/// shuffle them, and readers of Quill's output look at it).
indirect enum JSON {
    case string(String)
    case int(Int)
    case number(Double, decimals: Int)
    case bool(Bool)
    case null
    case array([JSON])
    case object([(String, JSON)])
    /// Already-encoded JSON (a request's own "id" value, passed through unchanged).
    case raw(String)

    var encoded: String {
        switch self {
        case .string(let s): return JSON.quote(s)
        case .int(let i): return String(i)
        case .number(let d, let decimals):
            return d.isFinite ? String(format: "%.\(decimals)f", d) : "null"
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .array(let items): return "[" + items.map(\.encoded).joined(separator: ",") + "]"
        case .object(let fields):
            return "{" + fields.map { JSON.quote($0.0) + ":" + $0.1.encoded }.joined(separator: ",") + "}"
        case .raw(let text): return text
        }
    }

    /// `s` as a JSON string literal (the library's quoting, shared with the batch reader).
    static func quote(_ s: String) -> String { JSONValue.quote(s) }
}
