import CQuillKernels

/// The BLAS library, loaded at run time (see blas_loader.h for why it is not linked).
public enum BLAS {
    /// Why BLAS cannot be used.
    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Loads BLAS (once); every product needs it.
    public static func load() throws(LoadError) {
        guard quill_blas_load() == 0 else { throw LoadError(description: String(cString: quill_blas_error())) }
    }

    /// The OpenBLAS kernel family in use ("SkylakeX", "Haswell", ...), or "" for another BLAS.
    public static var core: String { String(cString: quill_blas_core()) }

    /// Sets the number of threads BLAS may use inside one call.
    public static func setThreads(_ count: Int) { quill_blas_set_threads(Int32(count)) }
}
