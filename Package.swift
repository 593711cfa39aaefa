// swift-tools-version:6.0
import PackageDescription

// Quill: Llama-architecture text generation on the CPU.
// Imports flow one way: quill (executable) → Quill (library) → QuillKernels → CBLAS / CQuillKernels.
let package = Package(
    name: "Quill",
    products: [
        .executable(name: "quill", targets: ["quill"]),
        .library(name: "Quill", targets: ["Quill"]),
    ],
    targets: [
        // <cblas.h> from libblas-dev; at run time OpenBLAS provides libblas.so.3.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        // SentencePiece behind a plain C API (C++ stays inside the shim).
        .target(
            name: "CSentencePiece",
            path: "Sources/CSentencePiece",
            linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("stdc++")]
        ),
        // Int8 dot products with run-time-selected AVX-512 VNNI / AVX2 paths (part of the kernels).
        .target(name: "CQuillKernels", path: "Sources/CQuillKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(
            name: "QuillKernels",
            dependencies: ["CBLAS", "CQuillKernels"],
            swiftSettings: [.unsafeFlags(["-Ounchecked"])],
            linkerSettings: [.linkedLibrary("dl")]
        ),
        .target(name: "Quill", dependencies: ["QuillKernels", "CSentencePiece"]),
        .executableTarget(name: "quill", dependencies: ["Quill"]),
        .testTarget(name: "QuillKernelsTests", dependencies: ["QuillKernels"]),
        .testTarget(name: "QuillTests", dependencies: ["Quill", "QuillKernels"], exclude: ["Fixtures"]),
        // Runs the built executable end to end; depending on it makes `swift test` build it.
        .testTarget(name: "QuillCLITests", dependencies: ["quill"]),
    ],
    cxxLanguageStandard: .cxx17
)
