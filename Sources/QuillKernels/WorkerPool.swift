import Dispatch
import Synchronization

/// Splits one kernel call over `workers` threads that take fixed-size chunks of the work from
/// a shared counter. Idle workers park in the kernel (Dispatch), never spin, and a worker that
/// the OS deschedules (another process busy on the machine) simply takes fewer chunks, so a
/// 2-thread run degrades to about 1-thread speed instead of collapsing. BLAS itself is kept
/// single-threaded and called inside the chunks, so the two never oversubscribe the cores.
public final class WorkerPool: @unchecked Sendable {
    /// Threads that run chunks (the calling thread is one of them).
    public let workers: Int
    private let nextChunk = Atomic<Int>(0)

    public init(workers: Int) {
        self.workers = max(1, workers)
    }

    /// Runs `body(chunk)` for every chunk in 0..<chunks, spread over the workers.
    func run(chunks: Int, _ body: (Int) -> Void) {
        if workers == 1 || chunks == 1 {
            for chunk in 0..<chunks { body(chunk) }
            return
        }
        nextChunk.store(0, ordering: .relaxed)
        withoutActuallyEscaping(body) { body in
            // The closure is only used during this call; Dispatch needs it Sendable.
            let task = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: min(workers, chunks)) { _ in
                while true {
                    let chunk = nextChunk.wrappingAdd(1, ordering: .relaxed).oldValue
                    if chunk >= chunks { break }
                    task.value(chunk)
                }
            }
        }
    }
}

struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
