import WireFormat

/// Why a socket could not be opened or bound (the UDP sockets and the TCP metrics listener): the
/// usual refusals of bind told apart, anything else as the failed call.
public enum SocketFailure: Error, CustomStringConvertible, Sendable {
    case addressInUse(SocketAddress)
    case addressNotAvailable(SocketAddress)
    case permissionDenied(SocketAddress)
    case system(SystemError)

    public var description: String {
        switch self {
        case let .addressInUse(address):
            "address \(address) is already in use (another udptun or socat running? check: ss -ulpn 'sport = :\(address.port)')"
        case let .addressNotAvailable(address):
            "cannot bind \(address): the address is not assigned to any interface here"
        case let .permissionDenied(address):
            "no permission to bind \(address) (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        case let .system(error):
            error.description
        }
    }
}
