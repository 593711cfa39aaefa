import Dispatch
import Foundation
@testable import Quill
import QuillKernels
import XCTest

/// The measurement behind the choice of re-rotating cached keys once per shift rather than storing
/// them unrotated and rotating them at attention time. Not a test (no timing is asserted): it runs
/// only with QUILL_TIMING=1, in a release build:
///     swift build -c release --build-tests -Xswiftc -enable-testing
///     QUILL_TIMING=1 swift test -c release --skip-build --filter ShiftCostTimingTests
/// A: decode with context shifts, each turning the kept keys back in one pass (what Quill does).
/// B: decode where every step also turns every cached key of every layer (the work of rotating
///    unrotated keys at attention time; B's real cost is higher still, as it must write them to scratch).
/// A and B alternate, so both see the same machine load; it prints the median and range of B / A.
final class ShiftCostTimingTests: XCTestCase {
    func testReRotationAgainstRotationAtAttentionTime() throws {
        guard ProcessInfo.processInfo.environment["QUILL_TIMING"] == "1" else { throw XCTSkip("set QUILL_TIMING=1 to time") }
        let path = TestPaths.repositoryRoot.appendingPathComponent("models/tinystories.bin").path
        let model = try ModelLoader.load(modelPath: path, tokenizerPath: nil, tokenizer: .none)
        let c = model.weights.config
        for capacity in [64, 256] {
            let transformer = try model.makeTransformer(threads: 1, maxRows: 1, cacheCapacity: capacity)
            let table = try RotaryTable(contextLength: capacity, headSize: c.headSize, frequencies: c.ropeFrequencies,
                                        pairing: c.ropePairing)
            let shift = ContextShift(keep: 4)
            let steps = 16 * capacity
            func run(rotateEveryStep: Bool) -> Double {
                let cache = try! transformer.makeCache(sinks: 4)
                var position = 0
                let start = DispatchTime.now()
                for step in 0..<steps {
                    if position == capacity {
                        let discard = shift.discard(filled: capacity)
                        transformer.shift(cache, keep: 4, discard: discard, filled: capacity)
                        position -= discard
                    }
                    transformer.forward(token: (step * 7 + 3) % c.vocabSize, position: position, cache: cache)
                    position += 1
                    if rotateEveryStep {
                        // Every cached key of every layer turned once (by angle 1: the cost is the same at any angle).
                        for l in 0..<c.layerCount {
                            Kernels.unrotate(cache.keys, offset: l * capacity * c.kvDim, rows: position, width: c.kvDim,
                                             by: 1, table: table)
                        }
                    }
                }
                return seconds(since: start) / Double(steps)
            }
            _ = run(rotateEveryStep: false)  // warm up
            var ratios: [Double] = [], a: [Double] = [], b: [Double] = []
            for _ in 0..<9 {
                let ta = run(rotateEveryStep: false), tb = run(rotateEveryStep: true)
                a.append(ta)
                b.append(tb)
                ratios.append(tb / ta)
            }
            let sorted = ratios.sorted()
            print(String(format: "capacity %d: A (re-rotate per shift) %.1f µs/token, B (rotate every key every step) "
                         + "%.1f µs/token; B/A median %.3f [%.3f, %.3f] over %d alternating pairs",
                         capacity, a.sorted()[4] * 1e6, b.sorted()[4] * 1e6, sorted[4], sorted.first!, sorted.last!, ratios.count))
        }
    }
}
