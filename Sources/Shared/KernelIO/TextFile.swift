import Glibc

/// Small text files such as /proc/sys entries.
public enum TextFile {
    public static func read(_ path: String, limit: Int = 4096) -> String? {
        guard let raw = try? Syscall.call("open \(path)", { open(path, O_RDONLY | O_CLOEXEC) }) else { return nil }
        let file = OwnedDescriptor(owning: raw)
        var buffer = [UInt8](repeating: 0, count: limit)
        guard
            let count = try? buffer.withUnsafeMutableBytes({ bytes throws(SystemError) in
                try Syscall.call("read \(path)") { Glibc.read(file.rawValue, bytes.baseAddress, limit) }
            })
        else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// True when every user may read the file (a key file should be 0600, or 0640 for a service group).
    public static func isReadableByOthers(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        return info.st_mode & S_IROTH != 0
    }

    static func write(_ path: String, _ text: String) throws(SystemError) {
        let file = OwnedDescriptor(owning: try Syscall.call("open \(path)") { open(path, O_WRONLY | O_CLOEXEC | O_TRUNC) })
        var text = text
        let written = text.withUTF8 { bytes in
            Result { () throws(SystemError) in
                try Syscall.call("write \(path)") { Glibc.write(file.rawValue, bytes.baseAddress, bytes.count) }
            }
        }
        _ = try written.get()
    }

}
