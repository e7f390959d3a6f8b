/// GTP-U version 1 (3GPP TS 29.281) on UDP port 2152, with the PDU Session Container extension
/// header of TS 38.415: what a RAN node (gNB/eNB) and a UPF exchange on N3/S1-U. Parsing follows the
/// receiver's rules of TS 29.281 section 5: version 1 and PT 1 only, Length matching the datagram,
/// the 4-octet optional block present whenever E, S or PN is set, the extension chain walked with
/// bounds checks, unknown extensions skipped unless their type says comprehension is required.
public enum GTPU {
    public static let port: UInt16 = 2152

    public enum MessageType {
        public static let echoRequest: UInt8 = 1
        public static let echoResponse: UInt8 = 2
        public static let errorIndication: UInt8 = 26
        public static let supportedExtensionHeadersNotification: UInt8 = 31
        public static let endMarker: UInt8 = 254
        public static let gpdu: UInt8 = 255
    }

    public enum ExtensionType {
        public static let noMore: UInt8 = 0x00
        public static let udpPort: UInt8 = 0x40
        public static let pduSessionContainer: UInt8 = 0x85
        /// What this implementation understands (announced in a Supported Extension Headers Notification).
        public static let supported: [UInt8] = [udpPort, pduSessionContainer]
    }

    public enum InformationElement {
        public static let recovery: UInt8 = 14
        public static let teidDataI: UInt8 = 16
        public static let peerAddress: UInt8 = 133
        public static let extensionHeaderTypeList: UInt8 = 141
    }

    /// Version 1, protocol type GTP (PT = 1); E, S and PN below.
    public static let version1: UInt8 = 0x30
    public static let extensionFlag: UInt8 = 0x04
    public static let sequenceFlag: UInt8 = 0x02
    public static let nPDUFlag: UInt8 = 0x01
    /// The mandatory part; Length counts every octet after it.
    public static let mandatoryLength = 8
    /// Sequence number, N-PDU number and next extension type, present when any of E, S, PN is set.
    public static let optionalLength = 4
    /// A PDU Session Container as RAN emulators send it: one 4-octet unit.
    public static let sessionContainerLength = 4
    /// Header bytes in front of an inner packet: 8, or 16 with a PDU Session Container.
    @inlinable public static func gpduHeaderLength(sessionContainer: Bool) -> Int {
        sessionContainer ? mandatoryLength + optionalLength + sessionContainerLength : mandatoryLength
    }

    /// PDU Session Container PDU types (TS 38.415): downlink and uplink PDU session information.
    public enum PDUType {
        public static let downlink: UInt8 = 0
        public static let uplink: UInt8 = 1
    }

    /// What a received header says.
    public struct Header: Equatable, Sendable {
        public var type: UInt8
        public var teid: UInt32
        /// The sequence number, when S is set (read, never required).
        public var sequence: UInt16?
        /// Where the message's content (the inner packet of a G-PDU, the IEs of the others) lies.
        public var content: Range<Int>
        /// From a PDU Session Container: its PDU type, QoS flow id and, downlink with PPP, the paging
        /// policy indicator.
        public var pduType: UInt8?
        public var qfi: UInt8?
        public var ppi: UInt8?
        /// From a UDP Port extension header.
        public var udpPort: UInt16?

        public init(type: UInt8, teid: UInt32, content: Range<Int>) {
            self.type = type
            self.teid = teid
            self.content = content
        }
    }

    public enum ParseFailure: Error, Equatable, Sendable {
        /// Not a well-formed GTP-U v1 header (version, PT, lengths, the extension chain).
        case malformed
        /// An extension header whose type says the receiver must understand it, and it does not.
        case unsupportedExtension(UInt8)
    }

    /// Parses the message occupying `range` of `bytes`.
    @inlinable public static func parse(_ bytes: Span<UInt8>, _ range: Range<Int>) -> Result<Header, ParseFailure> {
        guard range.count >= mandatoryLength, range.upperBound <= bytes.count else { return .failure(.malformed) }
        let start = range.lowerBound
        let flags = bytes[start]
        guard flags >> 5 == 1, flags & 0x10 != 0 else { return .failure(.malformed) }
        guard Int(bytes.u16(at: start + 2)) == range.count - mandatoryLength else { return .failure(.malformed) }
        var header = Header(type: bytes[start + 1], teid: bytes.u32(at: start + 4), content: (start + mandatoryLength)..<range.upperBound)
        guard flags & (extensionFlag | sequenceFlag | nPDUFlag) != 0 else { return .success(header) }
        var offset = start + mandatoryLength + optionalLength
        guard offset <= range.upperBound else { return .failure(.malformed) }
        if flags & sequenceFlag != 0 { header.sequence = bytes.u16(at: start + 8) }
        // With E clear the next-extension octet carries no meaning and is ignored.
        var next = flags & extensionFlag != 0 ? bytes[start + 11] : ExtensionType.noMore
        while next != ExtensionType.noMore {
            guard offset < range.upperBound else { return .failure(.malformed) }
            let length = Int(bytes[offset]) * 4
            guard length >= 4, offset + length <= range.upperBound else { return .failure(.malformed) }
            let content = (offset + 1)..<(offset + length - 1)
            switch next {
            case ExtensionType.pduSessionContainer:
                guard content.count >= 2 else { return .failure(.malformed) }
                let pduType = bytes[content.lowerBound] >> 4
                header.pduType = pduType
                header.qfi = bytes[content.lowerBound + 1] & 0x3f
                if pduType == PDUType.downlink, bytes[content.lowerBound + 1] & 0x80 != 0, content.count >= 3 {
                    header.ppi = bytes[content.lowerBound + 2] >> 5
                }
            case ExtensionType.udpPort:
                guard content.count >= 2 else { return .failure(.malformed) }
                header.udpPort = bytes.u16(at: content.lowerBound)
            default:
                // The two top bits: 00 and 01 may be skipped, 10 and 11 must be understood.
                if next >> 6 >= 2 { return .failure(.unsupportedExtension(next)) }
            }
            next = bytes[offset + length - 1]
            offset += length
        }
        header.content = offset..<range.upperBound
        return .success(header)
    }

    // MARK: Building

    /// Writes a G-PDU header for the `payloadLength` bytes that follow it at `start`: 8 bytes (flags
    /// 0x30), or 16 with a PDU Session Container (flags 0x34, one 4-octet unit: type, QFI).
    @inlinable public static func writeGPDUHeader(
        _ bytes: inout MutableSpan<UInt8>, at start: Int, payloadLength: Int, teid: UInt32,
        sessionContainer: (pduType: UInt8, qfi: UInt8)?
    ) {
        let headerLength = gpduHeaderLength(sessionContainer: sessionContainer != nil)
        bytes[start] = sessionContainer == nil ? version1 : version1 | extensionFlag
        bytes[start + 1] = MessageType.gpdu
        bytes.setU16(UInt16(headerLength - mandatoryLength + payloadLength), at: start + 2)
        bytes.setU32(teid, at: start + 4)
        guard let container = sessionContainer else { return }
        bytes.setU16(0, at: start + 8)  // sequence number: not used (S clear)
        bytes[start + 10] = 0  // N-PDU number
        bytes[start + 11] = ExtensionType.pduSessionContainer
        bytes[start + 12] = 1  // length in 4-octet units
        bytes[start + 13] = container.pduType << 4
        bytes[start + 14] = container.qfi & 0x3f
        bytes[start + 15] = ExtensionType.noMore
    }

    /// A signalling message header (S = 1, TEID as given) whose content is `contentLength` bytes.
    static func writeSignallingHeader(
        _ bytes: inout MutableSpan<UInt8>, type: UInt8, teid: UInt32 = 0, sequence: UInt16,
        contentLength: Int
    ) {
        bytes[0] = version1 | sequenceFlag
        bytes[1] = type
        bytes.setU16(UInt16(optionalLength + contentLength), at: 2)
        bytes.setU32(teid, at: 4)
        bytes.setU16(sequence, at: 8)
        bytes[10] = 0
        bytes[11] = ExtensionType.noMore
    }

    /// An Echo Request; returns its length.
    public static func writeEchoRequest(_ bytes: inout MutableSpan<UInt8>, sequence: UInt16) -> Int {
        writeSignallingHeader(&bytes, type: MessageType.echoRequest, sequence: sequence, contentLength: 0)
        return mandatoryLength + optionalLength
    }

    /// The Echo Response to a request with `sequence`: TEID 0, its sequence number, a Recovery IE
    /// (restart counter 0). Returns its length.
    public static func writeEchoResponse(_ bytes: inout MutableSpan<UInt8>, sequence: UInt16) -> Int {
        writeSignallingHeader(&bytes, type: MessageType.echoResponse, sequence: sequence, contentLength: 2)
        bytes[12] = InformationElement.recovery
        bytes[13] = 0
        return mandatoryLength + optionalLength + 2
    }

    /// An Error Indication for a G-PDU that arrived with `teid` at `localAddress`: IE TEID Data I and
    /// IE GTP-U Peer Address (4 or 16 octets). Returns its length.
    public static func writeErrorIndication(_ bytes: inout MutableSpan<UInt8>, teid: UInt32, localAddress: IPAddress) -> Int {
        let addressLength = localAddress.isIPv4 ? 4 : 16
        let contentLength = 5 + 3 + addressLength
        writeSignallingHeader(&bytes, type: MessageType.errorIndication, sequence: 0, contentLength: contentLength)
        var offset = mandatoryLength + optionalLength
        bytes[offset] = InformationElement.teidDataI
        bytes.setU32(teid, at: offset + 1)
        offset += 5
        bytes[offset] = InformationElement.peerAddress
        bytes.setU16(UInt16(addressLength), at: offset + 1)
        switch localAddress {
        case let .v4(address):
            bytes.setU32(address, at: offset + 3)
        case let .v6(high, low):
            bytes.setU64(high, at: offset + 3)
            bytes.setU64(low, at: offset + 11)
        }
        return mandatoryLength + optionalLength + contentLength
    }

    /// A Supported Extension Headers Notification (the answer to an extension this side must but
    /// cannot understand): IE Extension Header Type List with what it does understand.
    public static func writeSupportedExtensionHeadersNotification(_ bytes: inout MutableSpan<UInt8>, sequence: UInt16) -> Int {
        let types = ExtensionType.supported
        writeSignallingHeader(
            &bytes, type: MessageType.supportedExtensionHeadersNotification, sequence: sequence,
            contentLength: 2 + types.count)
        bytes[12] = InformationElement.extensionHeaderTypeList
        bytes[13] = UInt8(types.count)
        for (index, type) in types.enumerated() { bytes[14 + index] = type }
        return mandatoryLength + optionalLength + 2 + types.count
    }

    /// The TEID an Error Indication reports (its TEID Data I), if the IE is there.
    public static func errorIndicationTEID(_ bytes: Span<UInt8>, _ content: Range<Int>) -> UInt32? {
        var offset = content.lowerBound
        while offset < content.upperBound {
            let type = bytes[offset]
            if type == InformationElement.teidDataI {
                return offset + 5 <= content.upperBound ? bytes.u32(at: offset + 1) : nil
            }
            // TV IEs below 128 have fixed lengths; this walk knows only Recovery (1 octet).
            if type < 128 {
                guard type == InformationElement.recovery else { return nil }
                offset += 2
            } else {
                guard offset + 3 <= content.upperBound else { return nil }
                offset += 3 + Int(bytes.u16(at: offset + 1))
            }
        }
        return nil
    }
}
