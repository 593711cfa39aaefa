// swift-tools-version:6.0
import PackageDescription

// Quill: Llama-architecture text generation on the CPU.
// Imports flow one way: quill (executable) → Quill (library) → QuillKernels → CQuillKernels.
let package = Package(
    name: "Quill",
    products: [
        .executable(name: "quill", targets: ["quill"]),
        .library(name: "Quill", targets: ["Quill"]),
    ],
    targets: [
        // SentencePiece behind a plain C API (C++ stays inside the shim).
        .target(
            name: "CSentencePiece",
            path: "Sources/CSentencePiece",
            linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("stdc++")]
        ),
        // Part of the kernels, in C: int8 dot products with run-time-selected AVX-512 VNNI / AVX2
        // paths, and the BLAS loader. libblas.so.3 (OpenBLAS at run time) is opened with dlopen
        // after choosing OpenBLAS's kernels for this CPU, so it is not linked; its prototypes come
        // from libblas-dev's <cblas.h>.
        .target(
            name: "CQuillKernels", path: "Sources/CQuillKernels",
            linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]
        ),
        .target(
            name: "QuillKernels",
            dependencies: ["CQuillKernels"]
        ),
        .target(name: "Quill", dependencies: ["QuillKernels", "CSentencePiece"]),
        // The command line's grammar: flags into typed options, no I/O (a library so that the
        // fuzz target can drive it). It reads the request parameters' table from Quill.
        .target(name: "QuillCommandLine", dependencies: ["Quill"]),
        .executableTarget(name: "quill", dependencies: ["Quill", "QuillKernels", "QuillCommandLine"]),
        // libFuzzer targets for every parser of untrusted bytes (see `make fuzz`). Built with
        // `-sanitize=fuzzer` it has no main of its own; built normally it replays files.
        .executableTarget(name: "quill-fuzz", dependencies: ["Quill", "QuillCommandLine"], path: "Sources/QuillFuzz"),
        // Fixtures (GGUF blocks with gguf-py's dequantisation) are read by path, not as resources.
        .testTarget(name: "QuillKernelsTests", dependencies: ["QuillKernels"], exclude: ["Fixtures"]),
        .testTarget(name: "QuillTests", dependencies: ["Quill", "QuillKernels"], exclude: ["Fixtures"]),
        // Runs the built executable end to end; depending on it makes `swift test` build it.
        .testTarget(name: "QuillCLITests", dependencies: ["quill"]),
    ],
    cxxLanguageStandard: .cxx17
)
