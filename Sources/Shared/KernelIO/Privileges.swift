import Glibc

/// Dropping root after set-up: the TUN device is open and the socket bound, so the data plane needs
/// no privilege, and a compromise of the process should not hand over the machine.
public enum Privileges {
    public enum Failure: Error, CustomStringConvertible {
        case unknownUser(String)
        case notRoot
        case failed(SystemError)

        public var description: String {
            switch self {
            case let .unknownUser(name): "no such user: \(name)"
            case .notRoot: "dropping privileges needs the process to run as root"
            case let .failed(error): "dropping privileges failed: \(error)"
            }
        }
    }

    /// Switches to `user` (its primary group, no supplementary groups) for good, and checks that root
    /// cannot be regained.
    public static func drop(to user: String) throws(Failure) {
        guard getuid() == 0 || geteuid() == 0 else { throw .notRoot }
        guard let entry = getpwnam(user) else { throw .unknownUser(user) }
        let uid = entry.pointee.pw_uid
        let gid = entry.pointee.pw_gid
        guard setgroups(0, nil) == 0 else { throw .failed(SystemError("setgroups")) }
        // As root, setgid and setuid set the real, effective and saved ids alike.
        guard setgid(gid) == 0 else { throw .failed(SystemError("setgid \(gid)")) }
        guard setuid(uid) == 0 else { throw .failed(SystemError("setuid \(uid)")) }
        if uid != 0, setuid(0) == 0 { throw .failed(SystemError("regained root after dropping it", code: .notPermitted)) }
    }
}
