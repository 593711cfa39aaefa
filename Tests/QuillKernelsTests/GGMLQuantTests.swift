import Foundation
import QuillKernels
import XCTest

/// The fixtures of `scripts/make_ggml_quant_fixtures.py`: per type, rows of packed blocks and the
/// float32 values the PyPI `gguf` package (gguf-py) dequantises them to.
struct GGMLFixture {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/ggml")

    let name: String
    let id: Int
    let valuesPerRow: Int
    let bytesPerRow: Int
    let rows: [String]
    let packed: [UInt8]
    let expected: [Float]

    /// Every type in the manifest, in the manifest's order.
    static func all() throws -> [GGMLFixture] {
        let manifest = try Data(contentsOf: folder.appendingPathComponent("manifest.json"))
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: manifest) as? [String: Any])
        let types = try XCTUnwrap(root["types"] as? [String: Any])
        return try types.keys.sorted().map { name in
            let entry = try XCTUnwrap(types[name] as? [String: Any])
            let packed = [UInt8](try Data(contentsOf: folder.appendingPathComponent("\(name).bin")))
            let floats = try Data(contentsOf: folder.appendingPathComponent("\(name).f32"))
            let expected = floats.withUnsafeBytes { raw in
                (0..<floats.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
            return GGMLFixture(name: name, id: try XCTUnwrap(entry["id"] as? Int),
                               valuesPerRow: try XCTUnwrap(entry["values_per_row"] as? Int),
                               bytesPerRow: try XCTUnwrap(entry["bytes_per_row"] as? Int),
                               rows: try XCTUnwrap(entry["rows"] as? [String]), packed: packed, expected: expected)
        }
    }

    /// Row r's bytes, placed `misalignment` bytes past a 64-byte boundary.
    func row(_ r: Int, misalignment: Int) -> ByteView {
        let row = Array(packed[r * bytesPerRow ..< (r + 1) * bytesPerRow])
        return ByteBuffer([UInt8](repeating: 0xA5, count: misalignment) + row).view
            .slice(offset: misalignment, count: bytesPerRow)
    }

    func expectedRow(_ r: Int) -> [Float] { Array(expected[r * valuesPerRow ..< (r + 1) * valuesPerRow]) }
}

/// The bits F16 → F32 must give: the exact value (Swift's own Float16 conversion) for every
/// non-NaN half; for a NaN, its sign and payload with the quiet bit set (what F16C's vcvtph2ps
/// does, and what Quill's portable path does to match it).
func expectedHalfBits(_ h: UInt16) -> UInt32 {
    let half = Float16(bitPattern: h)
    if !half.isNaN { return Float(half).bitPattern }
    return UInt32(h & 0x8000) << 16 | 0x7F80_0000 | UInt32(h & 0x3FF) << 13 | 0x0040_0000
}

/// The dot product's documented order, in Swift (which never fuses a multiply and an add):
/// lane i mod 8 accumulates w[i]·x[i] in index order; lanes summed ((0+4)+(2+6))+((1+5)+(3+7)).
func documentedOrderDot(_ w: [Float], _ x: [Float]) -> Float {
    var lanes = [Float](repeating: 0, count: 8)
    for i in w.indices { lanes[i % 8] += w[i] * x[i] }
    return ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
}

final class GGMLQuantTests: XCTestCase {
    func testTypeTablesMatchTheGGUFPackage() throws {
        let fixtures = try GGMLFixture.all()
        XCTAssertEqual(Set(fixtures.map(\.name)), Set(GGMLType.allCases.filter { $0 != .f32 }.map(\.name)))
        for fixture in fixtures {
            let type = try XCTUnwrap(GGMLType(rawValue: fixture.id), fixture.name)
            XCTAssertEqual(type.name, fixture.name)
            XCTAssertEqual(type.rowBytes(count: fixture.valuesPerRow), fixture.bytesPerRow, fixture.name)
        }
        // Block sizes and bytes from ggml-common.h (and gguf-py's GGML_QUANT_SIZES).
        let table: [(GGMLType, Int, Int)] = [(.f32, 1, 4), (.f16, 1, 2), (.bf16, 1, 2), (.q8_0, 32, 34),
                                             (.q4_0, 32, 18), (.q5_0, 32, 22), (.q4_K, 256, 144),
                                             (.q5_K, 256, 176), (.q6_K, 256, 210)]
        for (type, blockSize, bytes) in table {
            XCTAssertEqual(type.blockSize, blockSize, type.name)
            XCTAssertEqual(type.bytesPerBlock, bytes, type.name)
        }
        // Types Quill does not decode have no case (the GGUF reader names them).
        for id in [3, 4, 10, 16, 23, 39, 999] { XCTAssertNil(GGMLType(rawValue: id)) }
    }

    func testDequantisationEqualsTheGGUFPackageBitForBit() throws {
        for fixture in try GGMLFixture.all() {
            let type = try XCTUnwrap(GGMLType(rawValue: fixture.id))
            // Each row at every misalignment within a 4-byte word, then all rows as one long row.
            for r in fixture.rows.indices {
                for misalignment in [0, 1, 2, 3] {
                    let got = GGMLQuants.dequantize(type, bytes: fixture.row(r, misalignment: misalignment),
                                                    count: fixture.valuesPerRow)
                    assertSameBits(got, fixture.expectedRow(r), type: type,
                                   "\(fixture.name) row \(r) (\(fixture.rows[r])), misaligned by \(misalignment)")
                }
            }
            let all = GGMLQuants.dequantize(type, bytes: ByteBuffer(fixture.packed).view, count: fixture.expected.count)
            assertSameBits(all, fixture.expected, type: type, "\(fixture.name), all rows as one")
        }
    }

    /// Equal bits, except that an F16 NaN comes back quieted (see expectedHalfBits); gguf-py
    /// keeps a signalling NaN's pattern, which neither F16C nor Quill's portable path does.
    private func assertSameBits(_ got: [Float], _ expected: [Float], type: GGMLType, _ message: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, expected.count, message, file: file, line: line)
        var differences = 0, first = ""
        for (i, (a, b)) in zip(got, expected).enumerated() {
            var want = b.bitPattern
            if type == .f16 && b.isNaN { want |= 0x0040_0000 }
            if a.bitPattern != want {
                if differences == 0 { first = "first at \(i): \(a) (0x\(String(a.bitPattern, radix: 16))) vs \(b) (0x\(String(want, radix: 16)))" }
                differences += 1
            }
        }
        XCTAssertEqual(differences, 0, "\(message): \(differences) values differ, \(first)", file: file, line: line)
    }

    /// Each dot product against the float64 sum of the package's dequantised row times x. Error
    /// bound of the documented order: each lane adds about n/8 rounded products, then 3 lane sums,
    /// so |error| ≤ γ(n/8 + 4) · Σ|w·x| with γ(k) ≈ k · 2⁻²⁴ (float32's unit roundoff); the test
    /// allows 1% on top. It also checks the exact bits of that order, recomputed in Swift.
    func testDotProductsMatchTheFloat64SumOfTheDequantisedRow() throws {
        var random = TestValues(seed: 11)
        for fixture in try GGMLFixture.all() {
            let type = try XCTUnwrap(GGMLType(rawValue: fixture.id))
            for r in fixture.rows.indices {
                let w = fixture.expectedRow(r)
                guard w.allSatisfy(\.isFinite) else { continue }
                let x = random.array(fixture.valuesPerRow)
                let got = GGMLQuants.dot(type, bytes: fixture.row(r, misalignment: r % 4), x)
                var exact = 0.0, magnitude = 0.0
                for (a, b) in zip(w, x) {
                    exact += Double(a) * Double(b)
                    magnitude += abs(Double(a) * Double(b))
                }
                let n = Double(fixture.valuesPerRow)
                let bound = 1.01 * (n / 8 + 4) * 0x1p-24 * magnitude
                XCTAssertLessThanOrEqual(abs(Double(got) - exact), bound,
                                         "\(fixture.name) row \(r) (\(fixture.rows[r])): \(got) vs \(exact)")
                XCTAssertEqual(got.bitPattern, documentedOrderDot(w, x).bitPattern, "\(fixture.name) row \(r)")
            }
        }
    }

    func testHalfConversionIsExactForAll65536ValuesOnEveryPath() {
        defer { GGMLQuants.forceHalfConversionPath("auto") }
        let allBits = (0...UInt16.max).map { $0 }
        let rowBytes = allBits.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        for path in ["portable", "f16c"] {
            guard GGMLQuants.forceHalfConversionPath(path) else { continue }
            XCTAssertEqual(GGMLQuants.halfConversionPath, path)
            var wrong = 0
            for h in allBits where GGMLQuants.float(fromHalfBits: h).bitPattern != expectedHalfBits(h) { wrong += 1 }
            XCTAssertEqual(wrong, 0, "\(path): scalar conversion wrong for \(wrong) halves")
            // The row decoder: all 65536 halves at once (8 at a time on F16C), and 65535 from an
            // odd address (a tail of 7).
            let row = GGMLQuants.dequantize(.f16, bytes: ByteBuffer(rowBytes).view, count: allBits.count)
            XCTAssertEqual(zip(row, allBits).filter { $0.bitPattern != expectedHalfBits($1) }.count, 0, path)
            let odd = ByteBuffer([0] + rowBytes).view.slice(offset: 3, count: rowBytes.count - 2)
            let tail = GGMLQuants.dequantize(.f16, bytes: odd, count: allBits.count - 1)
            XCTAssertEqual(zip(tail, allBits.dropFirst()).filter { $0.bitPattern != expectedHalfBits($1) }.count, 0, path)
        }
        // Spot checks that do not depend on Float16: the smallest subnormal, the largest finite
        // value, infinity, a quieted signalling NaN.
        XCTAssertEqual(GGMLQuants.float(fromHalfBits: 0x0001), 0x1p-24)
        XCTAssertEqual(GGMLQuants.float(fromHalfBits: 0x8200), -0x1p-15)
        XCTAssertEqual(GGMLQuants.float(fromHalfBits: 0x7BFF), 65504)
        XCTAssertEqual(GGMLQuants.float(fromHalfBits: 0xFC00), -.infinity)
        XCTAssertEqual(GGMLQuants.float(fromHalfBits: 0x7C01).bitPattern, 0x7FC0_2000)
    }

    func testFloat32RowsAndRowsOfOtherLengths() {
        var random = TestValues(seed: 12)
        for n in [0, 1, 7, 8, 9, 255, 256, 257, 1000] {
            let w = random.array(n), x = random.array(n)
            let bytes = w.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
            let view = ByteBuffer([9] + bytes).view.slice(offset: 1, count: bytes.count)
            XCTAssertEqual(GGMLQuants.dequantize(.f32, bytes: view, count: n), w)
            XCTAssertEqual(GGMLQuants.dot(.f32, bytes: view, x).bitPattern, documentedOrderDot(w, x).bitPattern, "n = \(n)")
            // F16 and BF16 rows of any length follow the same order.
            let halves = w.map { Float16($0) }
            let halfBytes = halves.flatMap { [UInt8($0.bitPattern & 0xFF), UInt8($0.bitPattern >> 8)] }
            XCTAssertEqual(GGMLQuants.dot(.f16, bytes: ByteBuffer(halfBytes).view, x).bitPattern,
                           documentedOrderDot(halves.map { Float($0) }, x).bitPattern, "F16, n = \(n)")
            let brains = w.map { UInt16($0.bitPattern >> 16) }
            let brainBytes = brains.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
            XCTAssertEqual(GGMLQuants.dot(.bf16, bytes: ByteBuffer(brainBytes).view, x).bitPattern,
                           documentedOrderDot(brains.map { Float(bitPattern: UInt32($0) << 16) }, x).bitPattern,
                           "BF16, n = \(n)")
        }
    }
}
