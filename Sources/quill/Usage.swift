import QuillCommandLine

let quillVersion = "0.2.0"

/// `quill --help`, printed from the command table (Sources/QuillCommandLine/CommandTable.swift).
let usageText = globalUsage()
