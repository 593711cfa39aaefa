import Dispatch
import Foundation

/// Measures how fast this machine streams memory into the cores: the ceiling for a
/// memory-bound decoder, which reads every weight once per generated token.
public enum MemoryBandwidth {
    /// Best read bandwidth in bytes per second over `repetitions` passes of a `megabytes`
    /// buffer, read by `threads` threads (each sums its own slice).
    public static func measure(megabytes: Int = 512, threads: Int, repetitions: Int = 5) -> Double {
        let count = megabytes << 18  // floats
        let buffer = FloatBuffer(count: count)
        for i in stride(from: 0, to: count, by: 1024) { buffer.pointer[i] = 1 }  // touch every page
        let slice = count / threads
        var best = 0.0
        let sink = FloatBuffer(count: threads * 16)
        for _ in 0..<repetitions {
            let start = DispatchTime.now()
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let base = UnsafeRawPointer(buffer.pointer + t * slice)
                var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
                var offset = 0
                let bytes = slice * 4
                while offset + 256 <= bytes {
                    a0 += base.load(fromByteOffset: offset, as: SIMD16<Float>.self)
                    a1 += base.load(fromByteOffset: offset + 64, as: SIMD16<Float>.self)
                    a2 += base.load(fromByteOffset: offset + 128, as: SIMD16<Float>.self)
                    a3 += base.load(fromByteOffset: offset + 192, as: SIMD16<Float>.self)
                    offset += 256
                }
                sink.pointer[t * 16] = (a0 + a1 + a2 + a3).sum()
            }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            best = max(best, Double(slice * threads * 4) / elapsed)
        }
        return best
    }

    /// Peak resident memory of this process so far, in bytes.
    public static func peakResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }
}
