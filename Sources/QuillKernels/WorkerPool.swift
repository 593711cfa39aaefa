import CQuillKernels
import Dispatch
import Foundation
import Synchronization

/// Runs the chunks of one kernel call on `workers` threads (the caller and `workers - 1`
/// persistent helpers) that claim chunks from one shared ticket counter.
///
/// Why not Dispatch: a decoded token is ~50 short parallel regions back to back; waking parked
/// threads for each cost 27% of 2-thread decode speed here. Why not BLAS's own threads: when
/// another process holds a core, a BLAS call waits for its descheduled thread and a 2-thread run
/// became 4× slower. Here helpers spin only briefly (0.2 ms) between regions and then park,
/// and a late helper never holds a region up: the caller takes the chunks it has not claimed,
/// and waits only for chunks already in progress.
public final class WorkerPool: @unchecked Sendable {
    /// Threads that run chunks (the calling thread is one of them).
    public var workers: Int { shared.workers }
    private let shared: SharedState

    public init(workers: Int) {
        shared = SharedState(workers: max(1, workers))
        for worker in 1..<shared.workers {
            let thread = Thread { [shared] in shared.helperLoop(worker: worker) }  // helpers keep the state alive
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit { shared.stop() }

    /// Runs `body(chunk, worker)` for every chunk in 0..<chunks, spread over the workers
    /// (`worker` in 0..<workers names the thread, for per-thread scratch). Returns when all
    /// chunks are done.
    func run(chunks: Int, _ body: (_ chunk: Int, _ worker: Int) -> Void) { shared.run(chunks: chunks, body) }
}

private final class SharedState: @unchecked Sendable {
    let workers: Int

    /// One region's work; two alternate so a helper still finishing region g never sees g+1's.
    private final class Slot: @unchecked Sendable {
        var body: ((Int, Int) -> Void)?
        let completed = Atomic<Int>(0)
    }

    // The ticket word: generation (24 bits) | chunk count (20 bits) | next chunk index (20 bits).
    // Claiming is one fetch-add, which returns the generation and chunk count it belongs to.
    private let ticket = Atomic<UInt64>(0)
    private let slots = [Slot(), Slot()]
    private var generation: UInt64 = 0
    private let sleepers = Atomic<Int>(0)
    private let wakeUp = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)

    private static let indexBits: UInt64 = 20, countBits: UInt64 = 20
    private static let indexMask: UInt64 = (1 << 20) - 1
    /// How long a helper spins for the next region before parking: 0.2 ms covers the gaps inside
    /// and between decoded tokens (measured: 0.1–1 ms give the same decode speed; parking after
    /// ~0.04 ms cost 13%), and stays short when another process needs the core.
    private static let spinNanoseconds: UInt64 = 200_000

    init(workers: Int) { self.workers = workers }

    func stop() {
        stopping.store(true, ordering: .releasing)
        for _ in 1..<workers { wakeUp.signal() }
    }

    private static func split(_ word: UInt64) -> (generation: UInt64, count: Int, index: Int) {
        (word >> (indexBits + countBits), Int((word >> indexBits) & indexMask), Int(word & indexMask))
    }

    func run(chunks: Int, _ body: (Int, Int) -> Void) {
        precondition(chunks >= 0 && chunks < (1 << 19), "chunk count out of range")
        if workers == 1 || chunks <= 1 {
            for chunk in 0..<chunks { body(chunk, 0) }
            return
        }
        withoutActuallyEscaping(body) { body in
            generation = (generation + 1) & ((1 << 24) - 1)
            let slot = slots[Int(generation & 1)]
            slot.body = body
            slot.completed.store(0, ordering: .relaxed)
            ticket.store(generation << (Self.indexBits + Self.countBits) | UInt64(chunks) << Self.indexBits,
                         ordering: .releasing)
            let parked = sleepers.exchange(0, ordering: .acquiringAndReleasing)
            for _ in 0..<parked { wakeUp.signal() }
            claimChunks(worker: 0)
            // Wait only for chunks a helper has started; they are short, unless the helper was
            // descheduled, in which case yield the core to it.
            var spins = 0
            while slot.completed.load(ordering: .acquiring) < chunks {
                spins += 1
                if spins < 1 << 14 { quill_cpu_relax() } else { sched_yield() }
            }
            slot.body = nil
        }
    }

    /// Claims and runs chunks until the region's are all claimed; returns its generation.
    @discardableResult
    private func claimChunks(worker: Int) -> UInt64 {
        while true {
            let word = ticket.wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue
            let (generation, count, index) = Self.split(word)
            guard index < count else { return generation }
            let slot = slots[Int(generation & 1)]
            slot.body!(index, worker)
            slot.completed.wrappingAdd(1, ordering: .releasing)
        }
    }

    func helperLoop(worker: Int) {
        var seen = Self.split(ticket.load(ordering: .acquiring)).generation
        while !stopping.load(ordering: .acquiring) {
            var spins = 0
            var deadline = DispatchTime.now().uptimeNanoseconds + Self.spinNanoseconds
            while Self.split(ticket.load(ordering: .acquiring)).generation == seen {
                if stopping.load(ordering: .relaxed) { return }
                spins += 1
                if spins & 63 != 0 || DispatchTime.now().uptimeNanoseconds < deadline {
                    quill_cpu_relax()
                } else {
                    // Park; the publisher wakes every parked helper. Re-check after announcing
                    // ourselves so a region published in between is not slept through.
                    sleepers.wrappingAdd(1, ordering: .acquiringAndReleasing)
                    if Self.split(ticket.load(ordering: .acquiring)).generation == seen { wakeUp.wait() }
                    deadline = DispatchTime.now().uptimeNanoseconds + Self.spinNanoseconds
                }
            }
            seen = claimChunks(worker: worker)
        }
    }
}

struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
