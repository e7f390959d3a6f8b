#!/usr/bin/python3
"""Drives a GTP-U peer (udptun-relay --gtpu) with messages built by scapy's GTP layer (Debian's
python3-scapy, scapy.contrib.gtp), not by udptun's code, and prints what came back as JSON.

Usage: gtpu-scapy.py RELAY_ADDRESS TEID INNER_SOURCE INNER_DESTINATION
"""
import json
import socket
import sys

from scapy.all import IP, UDP, Raw, raw
from scapy.contrib.gtp import (GTPEchoRequest, GTPErrorIndication, GTPHeader, GTPPDUSessionContainer, GTP_U_Header,
                               GTP_UDPPort_ExtensionHeader, IE_TEIDI)

relay, teid, source, destination = sys.argv[1], int(sys.argv[2], 0), sys.argv[3], sys.argv[4]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1.0)


def inner(text):
    return IP(src=source, dst=destination) / UDP(sport=40000, dport=8080) / Raw(text.encode())


def exchange(packet, expect_reply=True):
    sock.sendto(raw(packet), (relay, 2152))
    if not expect_reply:
        return None
    try:
        data, _ = sock.recvfrom(65535)
    except socket.timeout:
        return {"reply": None}
    reply = GTPHeader(data)
    result = {"type": int(reply.gtp_type), "teid": int(reply.teid), "S": int(reply.S), "length_ok": int(reply.length) == len(data) - 8}
    if reply.S:
        result["seq"] = int(reply.seq)
    ies = getattr(reply.payload, "IE_list", None) or []
    result["ies"] = [int(ie.ietype) for ie in ies]
    for ie in ies:
        if int(ie.ietype) == 16:
            result["teid_data_i"] = int(ie.TEIDI)
        if int(ie.ietype) == 14:
            result["restart_counter"] = int(ie.restart_counter)
    return result


results = {
    "echo": exchange(GTPHeader(seq=0x1234, S=1) / GTPEchoRequest()),
    "unknown_teid": exchange(GTP_U_Header(teid=0x999, gtp_type=255) / inner("unknown teid")),
    # An extension the receiver must understand (type 0xC1, top bits 11) that nobody does.
    "required_extension": exchange(GTP_U_Header(teid=teid, gtp_type=255, E=1, next_ex=0xC1) / Raw(b"\x01\xaa\xbb\x00") / inner("refused")),
}
# Forwarded, no reply: an extension that may be skipped (0x01) before the container, and a UDP Port
# extension before the container, as a RAN node may send them.
exchange(GTP_U_Header(teid=teid, gtp_type=255, E=1, next_ex=0x01) / Raw(b"\x01\xaa\xbb\x85") / GTPPDUSessionContainer(type=1, QFI=5)
         / inner("skipped extension"), expect_reply=False)
exchange(GTP_U_Header(teid=teid, gtp_type=255, E=1, next_ex=0x40) / GTP_UDPPort_ExtensionHeader(udp_port=2152, next_ex=0x85)
         / GTPPDUSessionContainer(type=1, QFI=5) / inner("udp port extension"), expect_reply=False)
exchange(GTP_U_Header(teid=teid, gtp_type=254), expect_reply=False)  # End Marker
# A hundred naming TEIDs the relay never sends with: ignored, and they must not crowd out the next.
for junk in range(100):
    exchange(GTPHeader(seq=2 + junk, S=1, gtp_type=26) / GTPErrorIndication(IE_list=[IE_TEIDI(TEIDI=0x5000 + junk)]), expect_reply=False)
# Last: this side says it knows no session with the TEID the relay answers with.
exchange(GTPHeader(seq=1, S=1, gtp_type=26) / GTPErrorIndication(IE_list=[IE_TEIDI(TEIDI=teid)]), expect_reply=False)
print(json.dumps(results))
