#if canImport(Glibc)
import Glibc
#endif

/// Thread control of the BLAS library in use. The build links the generic libblas.so; at run
/// time Debian's OpenBLAS usually provides it, so its thread setter is looked up dynamically and
/// is simply absent under reference BLAS.
public enum BLASThreads {
    private typealias SetThreads = @convention(c) (Int32) -> Void
    private typealias GetThreads = @convention(c) () -> Int32

    private static func symbol(_ name: String) -> UnsafeMutableRawPointer? {
        guard let handle = dlopen(nil, RTLD_NOW) else { return nil }
        return dlsym(handle, name)
    }

    /// Whether the BLAS in use is OpenBLAS (it exports openblas_set_num_threads).
    public static var isOpenBLAS: Bool { symbol("openblas_set_num_threads") != nil }

    /// Sets the number of threads BLAS may use for one call.
    public static func set(_ count: Int) {
        guard let pointer = symbol("openblas_set_num_threads") else { return }
        unsafeBitCast(pointer, to: SetThreads.self)(Int32(count))
    }

    /// The number of threads BLAS uses now (1 when it cannot be asked).
    public static var current: Int {
        guard let pointer = symbol("openblas_get_num_threads") else { return 1 }
        return Int(unsafeBitCast(pointer, to: GetThreads.self)())
    }
}
