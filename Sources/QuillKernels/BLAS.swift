import CQuillKernels
import Dispatch

/// The BLAS library, loaded at run time (see blas_loader.h for why it is not linked).
public enum BLAS {
    /// Why BLAS cannot be used.
    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Starts loading BLAS on another thread (dlopen and OpenBLAS's initialiser take a few
    /// milliseconds), so that it overlaps with mapping a model and loading its tokenizer; `load()`
    /// then waits for it. The environment OpenBLAS reads is set here, on the calling thread.
    public static func startLoading() {
        quill_blas_prepare_environment()
        DispatchQueue.global(qos: .userInitiated).async { _ = quill_blas_load() }
    }

    /// Loads BLAS (once, or waits for `startLoading`'s load); every product needs it.
    public static func load() throws(LoadError) {
        guard quill_blas_load() == 0 else { throw LoadError(description: String(cString: quill_blas_error())) }
    }

    /// The OpenBLAS kernel family in use ("SkylakeX", "Haswell", ...), or "" for another BLAS.
    public static var core: String { String(cString: quill_blas_core()) }

    /// Sets the number of threads BLAS may use inside one call.
    public static func setThreads(_ count: Int) { quill_blas_set_threads(Int32(count)) }
}
