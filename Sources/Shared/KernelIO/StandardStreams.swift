import Glibc

/// Whole-line writes to stdout/stderr without Foundation (which would add megabytes of resident
/// libraries to every process); small files are `TextFile`'s.
public enum StandardStreams {
    public static func printOut(_ line: String) { writeAll(1, line + "\n") }
    public static func printError(_ line: String) { writeAll(2, line + "\n") }

    static func writeAll(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                // A closed stdout or stderr has nobody to tell: the line is dropped.
                guard let written = try? Syscall.onInherited("write", { write(fd, bytes.baseAddress! + offset, bytes.count - offset) })
                else { return }
                offset += written
            }
        }
    }
}
