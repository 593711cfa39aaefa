import Quill
import XCTest

/// LineReader against the lines as the bytes hold them (split on "\n", "\r\n" accepted, a BOM
/// dropped from the file's first line only).
final class LineReaderTests: XCTestCase {
    /// Every item the reader gives for `bytes`, read `readSize` bytes at a time.
    private func items(_ bytes: [UInt8], limit: Int, readSize: Int = 5) throws -> [String] {
        var offset = 0
        var reader = LineReader(maximumLineBytes: limit, read: { buffer in
            let n = min(readSize, buffer.count, bytes.count - offset)
            if n > 0 { bytes[offset..<offset + n].withUnsafeBytes { buffer.copyMemory(from: $0) } }
            offset += n
            return n
        }, readable: { true })
        var out: [String] = []
        while true {
            switch try reader.next(canWait: true) {
            case .end: return out
            case .notReady: continue
            case .tooLong(let number): out.append("\(number): too long")
            case .line(let line, let number): out.append("\(number): \(line.map { String(format: "%02x", $0) }.joined())")
            }
        }
    }

    private func hex(_ s: String) -> String { Array(s.utf8).map { String(format: "%02x", $0) }.joined() }

    func testByteOrderMarkIsDroppedFromTheFirstLineOnly() throws {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let bytes = bom + Array("a\r\n".utf8) + bom + Array("b\n".utf8)
        XCTAssertEqual(try items(bytes, limit: 16), ["1: \(hex("a"))", "2: \(bytes[6..<9].map { String(format: "%02x", $0) }.joined())\(hex("b"))"])
    }

    func testAByteOrderMarkAfterATooLongFirstLineIsPartOfTheSecondLine() throws {
        // The first line is reported as too long; the BOM that starts the second line is data,
        // not the file's mark (it was dropped as if the second line were the first).
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        let bytes = Array("a line longer than the limit\n".utf8) + bom + Array("x\n".utf8)
        XCTAssertEqual(try items(bytes, limit: 8), ["1: too long", "2: efbbbf\(hex("x"))"])
    }
}
