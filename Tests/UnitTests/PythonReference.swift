import Foundation
import Testing

/// Runs an independent implementation in Python (hashlib, PyPI noiseprotocol) as a reference. A
/// missing interpreter or package fails the test with what to install: a reference check that
/// skips silently is no check.
enum PythonReference {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static let scriptDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts")

    /// `python3 arguments…` with `input` on stdin; its stdout, or a Failure with its stderr.
    static func run(_ arguments: [String], input: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        do { try process.run() } catch { throw Failure(description: "cannot start python3: \(error)") }
        // Write and read on separate threads so neither pipe fills while the other waits.
        let writer = Thread {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        writer.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errorText = String(decoding: errors, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            if errorText.contains("ModuleNotFoundError") {
                throw Failure(
                    description: "python3 lacks a package this test needs (pip install noiseprotocol; .ci/run installs it): \(errorText)")
            }
            throw Failure(description: "python3 exited \(process.terminationStatus): \(errorText)")
        }
        return String(decoding: output, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    init(hex: String) {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        self = bytes
    }

    var hex: String { map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
}
