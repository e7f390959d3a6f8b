#!/usr/bin/env python3
"""Many raw-framing udptun clients in one process, and the echo server they talk to.

  swarm.py echo --listen 198.18.2.2:7 --seconds 30
      Echoes every UDP datagram back to its sender until --seconds pass (or --packets were echoed).

  swarm.py clients --relay 198.18.1.2:8080 [--relay 198.18.1.4:8080] --clients 10000 --packets 3 \\
                   --inner 198.19.0.0/16 --target 198.18.2.2:7 --seconds 30
      Client i has its own UDP socket, connected to relay i mod R (so, like udptun-client, it takes
      datagrams only from that address), and its own inner address (the prefix's (i+1)th). It sends
      --packets raw-framed inner IPv4/UDP packets from that address to --target, then waits for the
      echoes. Every datagram received must be a packet addressed to the socket's own inner address,
      carrying that client's number. Prints one JSON line: sent, answered, misdelivered, missing,
      malformed, seconds; exits 0 only when every packet was answered and none misdelivered.

  swarm.py flood --relay 198.18.1.2:8080 --clients 10000 --packets 500000 --target 198.18.2.2:9 --seconds 10
      The clients of `clients` mode, sending --packets in all round-robin, unpaced, without waiting
      for answers (a load for benchmarks). Prints sent and seconds.

  swarm.py churn --relay 198.18.1.2:8080 --bind 198.18.1.3 --sources 100000 --target 198.18.2.2:9 --seconds 10
      One socket sends one raw-framed packet from each of --sources inner addresses in turn
      (198.18.64.0 upward, skipping 198.19.0.0/24), at --rate or as fast as it can, once (with --repeat, over
      and over until --seconds pass; with --sources 1, always the first: a steady load to compare).

  swarm.py claim --relay 198.18.1.2:8080 --owner 198.18.1.1 --bind 198.18.1.3 --inner 198.19.0.1/32 \
                 --target 198.18.2.2:7 --packets 100 --seconds 20
      Two raw clients with the same inner address (--inner's first): the owner (bound to --owner)
      sends --packets to --target, one every 20 ms; once a quarter are out, the claimer (bound to
      --bind) sends one between each two of the owner's. Each socket counts the echoes it gets, by
      whose packet they answer. Prints one JSON line: owner_sent, claimer_sent, and owner_got_owner,
      owner_got_claimer, claimer_got_owner, claimer_got_claimer, malformed.

Bounded: every mode stops after --seconds and sends a fixed number of packets.
"""
import argparse
import ipaddress
import json
import resource
import selectors
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def inner_packet(source, destination, port, payload):
    """An IPv4/UDP packet (UDP checksum 0, allowed for IPv4) with DF set."""
    udp = struct.pack("!HHHH", 40000 + (int(source) & 0x3FFF), port, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         source.packed, destination.packed)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + udp


def endpoint(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def raise_file_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = max(needed, soft)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))


def echo(args):
    host, port = endpoint(args.listen)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((host, port))
    sock.settimeout(0.2)
    deadline = time.monotonic() + args.seconds
    echoed = 0
    print(json.dumps({"event": "echo listening", "listen": args.listen}), flush=True)
    while time.monotonic() < deadline and (args.echo_limit == 0 or echoed < args.echo_limit):
        try:
            data, peer = sock.recvfrom(65535)
        except socket.timeout:
            continue
        sock.sendto(data, peer)
        echoed += 1
    print(json.dumps({"event": "final", "echoed": echoed}), flush=True)


def open_clients(args):
    """One non-blocking socket per client, connected to relay i mod R; with the inner network and
    the target's address and port."""
    relays = [endpoint(r) for r in args.relay]
    target_host, target_port = endpoint(args.target)
    raise_file_limit(args.clients + 64)
    sockets = []
    for index in range(args.clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(relays[index % len(relays)])
        sockets.append(sock)
    return sockets, ipaddress.ip_network(args.inner), ipaddress.ip_address(target_host), target_port


def clients(args):
    sockets, network, target, target_port = open_clients(args)
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(sockets):
        selector.register(sock, selectors.EVENT_READ, index)
    start = time.monotonic()
    deadline = start + args.seconds
    answered = [0] * args.clients
    sent = misdelivered = malformed = 0

    def drain(timeout):
        nonlocal misdelivered, malformed
        for key, _ in selector.select(timeout):
            index = key.data
            while True:
                try:
                    data = key.fileobj.recv(65535)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    continue
                if len(data) < 28 + 8 or data[0] >> 4 != 4:
                    malformed += 1
                    continue
                destination = ipaddress.ip_address(data[16:20])
                owner, _sequence = struct.unpack("!II", data[28:36])
                if destination != network[index + 1] or owner != index:
                    misdelivered += 1
                else:
                    answered[index] += 1

    # Round-robin over the clients, packet by packet, paced so the sends stay within --rate.
    interval = 1.0 / args.rate if args.rate > 0 else 0
    for sequence in range(args.packets):
        for index, sock in enumerate(sockets):
            if time.monotonic() > deadline:
                break
            packet = inner_packet(network[index + 1], target, target_port, struct.pack("!II", index, sequence) + b"x" * 24)
            try:
                sock.send(packet)
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
            if interval and sent % 100 == 0:
                due = start + sent * interval
                while time.monotonic() < due:
                    drain(0)
            if sent % 256 == 0:
                drain(0)
    while sum(answered) < sent and time.monotonic() < deadline:
        drain(0.1)
    elapsed = time.monotonic() - start
    missing = sent - sum(answered)
    result = {"event": "final", "clients": args.clients, "sent": sent, "answered": sum(answered),
              "misdelivered": misdelivered, "missing": missing, "malformed": malformed,
              "clients_answered": sum(1 for a in answered if a > 0), "seconds": round(elapsed, 3)}
    print(json.dumps(result), flush=True)
    return 0 if missing == 0 and misdelivered == 0 and malformed == 0 and sent == args.clients * args.packets else 1


def flood(args):
    sockets, network, target, target_port = open_clients(args)
    packets = [inner_packet(network[index + 1], target, target_port, struct.pack("!II", index, 0) + b"x" * 24)
               for index in range(args.clients)]
    start = time.monotonic()
    deadline = start + args.seconds
    sent = 0
    while sent < args.packets and time.monotonic() < deadline:
        for index in range(min(args.clients, args.packets - sent)):
            try:
                sockets[index].send(packets[index])
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
    print(json.dumps({"event": "final", "clients": args.clients, "sent": sent,
                      "seconds": round(time.monotonic() - start, 3)}), flush=True)
    return 0


def churn(args):
    host, port = endpoint(args.relay[0])
    target_host, target_port = endpoint(args.target)
    target = ipaddress.ip_address(target_host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    if args.bind:
        sock.bind((args.bind, 0))
    sock.connect((host, port))
    deadline = time.monotonic() + args.seconds
    first = int(ipaddress.ip_address("198.18.64.0"))
    skip = ipaddress.ip_network("198.19.0.0/24")
    sent = 0
    address = first
    start = time.monotonic()
    while (args.repeat or sent < args.sources) and time.monotonic() < deadline:
        if address - first >= args.sources + 256:
            address = first
        source = ipaddress.ip_address(address)
        if args.sources > 1:
            address += 1
        if source in skip:
            continue
        try:
            sock.send(inner_packet(source, target, target_port, b"churn"))
            sent += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
        if args.rate > 0 and sent % 100 == 0:
            due = start + sent / args.rate
            while time.monotonic() < due:
                time.sleep(0.0005)
    print(json.dumps({"event": "final", "sent": sent}), flush=True)
    return 0


def claim(args):
    relay = endpoint(args.relay[0])
    target_host, target_port = endpoint(args.target)
    target = ipaddress.ip_address(target_host)
    inner = ipaddress.ip_network(args.inner)[0]
    sockets = {}
    for role, bind in (("owner", args.owner), ("claimer", args.bind)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((bind, 0))
        sock.connect(relay)
        sock.setblocking(False)
        sockets[role] = sock
    counts = {f"{to}_got_{of}": 0 for to in sockets for of in sockets}
    counts.update(owner_sent=0, claimer_sent=0, malformed=0)
    tags = {b"O": "owner", b"C": "claimer"}
    selector = selectors.DefaultSelector()
    for role, sock in sockets.items():
        selector.register(sock, selectors.EVENT_READ, role)

    def drain(timeout):
        for key, _ in selector.select(timeout):
            while True:
                try:
                    data = key.fileobj.recv(65535)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                of = tags.get(data[28:29]) if len(data) >= 29 and data[0] >> 4 == 4 else None
                if of is None or ipaddress.ip_address(data[16:20]) != inner:
                    counts["malformed"] += 1
                else:
                    counts[f"{key.data}_got_{of}"] += 1

    def send(role, tag, sequence):
        try:
            sockets[role].send(inner_packet(inner, target, target_port, tag + struct.pack("!I", sequence)))
            counts[f"{role}_sent"] += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass

    deadline = time.monotonic() + args.seconds
    for sequence in range(args.packets):
        if time.monotonic() > deadline:
            break
        send("owner", b"O", sequence)
        drain(0.01)
        if sequence >= args.packets // 4:
            send("claimer", b"C", sequence)
        drain(0.01)
    settle = min(deadline, time.monotonic() + 1)
    while time.monotonic() < settle:
        drain(0.1)
    print(json.dumps({"event": "final", **counts}), flush=True)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["echo", "clients", "flood", "churn", "claim"])
    parser.add_argument("--listen", default="198.18.2.2:7")
    parser.add_argument("--relay", action="append", default=[])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--packets", type=int, default=3)
    parser.add_argument("--rate", type=float, default=None,
                        help="packets per second in all (0: unpaced; default 20000 for clients, unpaced for churn)")
    parser.add_argument("--inner", default="198.19.0.0/16")
    parser.add_argument("--target", default="198.18.2.2:7")
    parser.add_argument("--sources", type=int, default=100000)
    parser.add_argument("--echo-limit", type=int, default=0, help="echo: stop after this many (0: only --seconds)")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--bind", help="churn, claim: the underlay address to send from (claim: the claimer's)")
    parser.add_argument("--owner", help="claim: the underlay address the owner sends from")
    parser.add_argument("--repeat", action="store_true", help="churn: cycle until --seconds pass")
    args = parser.parse_args()
    if args.rate is None:
        args.rate = 20000 if args.mode == "clients" else 0
    if args.mode == "echo":
        echo(args)
        return 0
    if not args.relay:
        parser.error("--relay is required")
    if args.mode in ("clients", "flood"):
        if args.clients + 1 >= ipaddress.ip_network(args.inner).num_addresses:
            parser.error("--inner is too small for --clients")
        return clients(args) if args.mode == "clients" else flood(args)
    if args.mode == "claim":
        if not args.owner or not args.bind:
            parser.error("claim needs --owner and --bind")
        return claim(args)
    return churn(args)


if __name__ == "__main__":
    sys.exit(main())
