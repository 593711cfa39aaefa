#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Quill

/// Reads the prompt text from where the command line said. Like llama.cpp's -f, one trailing
/// newline of a file or of stdin is dropped, so `echo "Once upon a time" | quill` continues the line.
func readPrompt(_ source: PromptSource?) throws -> String {
    switch source {
    case .text(let text):
        return text
    case .file(let path):
        guard let data = FileManager.default.contents(atPath: path) else {
            var isFolder: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
            throw InputError("\(path): " + (!exists ? "no such file" : isFolder.boolValue ? "is a directory" : "cannot read"))
        }
        return try decodeText(Array(data), name: path)
    case .standardInput:
        return try readStandardInput()
    case nil:
        return OutputStream(fd: 0).isTerminal ? "" : try readStandardInput()
    }
}

private func readStandardInput() throws -> String {
    guard let bytes = readAll(fd: 0) else { throw InputError("stdin: cannot read: \(String(cString: strerror(errno)))") }
    return try decodeText(bytes, name: "stdin")
}

/// UTF-8 text without its final newline; invalid UTF-8 is an error naming the first bad byte.
func decodeText(_ bytes: [UInt8], name: String) throws -> String {
    var body = bytes[...]
    if body.last == 0x0A { body = body.dropLast() }
    if let text = String(validating: body, as: UTF8.self) { return text }
    var decoder = Unicode.UTF8()
    var iterator = body.makeIterator()
    var offset = 0
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue(let scalar): offset += UTF8.width(scalar)
        case .emptyInput: throw InputError("\(name): not valid UTF-8 text")
        case .error:
            let byte = String(body[body.startIndex + offset], radix: 16, uppercase: true)
            throw InputError("\(name): not valid UTF-8 text (byte 0x\(byte) at offset \(offset))")
        }
    }
}

/// A prompt or input that cannot be read.
struct InputError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
