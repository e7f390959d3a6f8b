#!/usr/bin/env python3
"""Side-by-side benchmark of udptun against the tunnels people would pick instead.

Run through deploy/bench.sh (which installs the tools and builds udptun). Every row uses a fresh
one-host lab (deploy/lab.sh: namespaces A, B, C) and measures A → C through B:

  direct     routed through B, no tunnel          vxlan      kernel VXLAN between A and B
  socat      socat TUN <-> UDP on A and B          openvpn    OpenVPN 2.6 p2p, no crypto
  wireguard  wireguard-go on A and B               udptun     udptun-client on A, udptun-relay on B
  udptun-encrypted  udptun with --key-file --encrypt (the peer to compare with wireguard-go)
  udptun-aes        the same with --cipher aes-256-gcm (AES instructions: faster where the CPU has them)
  udptun-busy-poll  udptun with --threads 1 --busy-poll 20000, client on CPU 0 and relay on
                    CPU 1 (--cpu; the low-latency profile)
  udptun-queues     udptun with --queues 2 (multi-queue TUN devices, a socket and threads per queue)
  udptun-gtpu       udptun with --gtpu: the client as a RAN node, the relay as a UPF (GTP-U with a
                    PDU Session Container on every G-PDU)
  ceiling    not a tunnel: deploy/ceiling.c on the lab's TUN devices, only the four copies every
             TUN-over-UDP tunnel makes (TUN read, UDP GSO send, UDP GRO receive, TUN write) with the
             offloads on; what it reaches bounds what udptun can reach on this host

With --clients 1,100,1000,10000 it measures the relay as a hub instead: for each client count, the
clients of Tests/scripts/swarm.py (one UDP socket and inner address each, raw framing) flood the
relay round-robin; it reports the relay's forwarded packets per second (wall clock, bounded by the
Python load generator) and per relay CPU second (what the relay itself can do), its CPU per packet,
and its RSS before and after learning the clients against the table's stated bytes per entry. Then
a churn test: a udptun-client generator's delivered rate alone, beside a steady load from one other
sender, and beside that sender cycling through 100,000 inner sources.

Each tunnel carries both directions (iperf3's data one way, ACKs and replies the other).
Per row: TCP 1 stream and 4 streams (iperf3), UDP 64 B and 1400 B packets at full offered load
(delivered packets/s and loss), ping RTT (avg, p99), CPU seconds per GB moved by the tunnel's own
processes (single-stream TCP), and their peak RSS. Prints a Markdown table with ratios and writes
the raw results as JSON. Everything it starts is stopped, and the lab deleted, on every exit path.

With --plot FILE.svg it also draws the run (deploy/bench_plot.py, matplotlib): TCP throughput, UDP
packet rates and ping RTT per row, the copy-only ceiling marked as a bound. --plot-only RESULTS.json
draws an earlier run's results file instead of measuring, e.g.
  deploy/bench.py --plot-only bench-results.json --plot bench.svg
"""

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN_DIR = os.path.join(ROOT, ".build", "release")
LAB = os.path.join(ROOT, "deploy", "lab.sh")
PREFIX = f"udptunbench{os.getpid()}"
NS = {node: f"{PREFIX}-{node}" for node in "abc"}
A, B_A, B_C, C = "198.18.1.1", "198.18.1.2", "198.18.2.1", "198.18.2.2"
C_NET = "198.18.2.0/24"
PEERS = ("socat", "openvpn", "wireguard")
started = []  # (Popen) processes this run started, stopped by pid on exit
workdir = tempfile.mkdtemp(prefix="udptun-bench.")


def run(args, timeout=60, check=True, node=None, **kwargs):
    if node:
        args = ["ip", "netns", "exec", NS[node]] + args
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def spawn(node, args, name, env=None):
    log = open(os.path.join(workdir, name + ".log"), "w")
    process = subprocess.Popen(["ip", "netns", "exec", NS[node]] + args, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env)
    started.append(process)
    return process


def stop_started():
    for process in started:
        if process.poll() is None:
            process.terminate()
    deadline = time.time() + 5
    for process in started:
        try:
            process.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    started.clear()


def cleanup():
    stop_started()
    subprocess.run(["bash", LAB, "down"], env={**os.environ, "LAB_PREFIX": PREFIX}, capture_output=True)
    subprocess.run(["rm", "-rf", workdir])


def on_signal(number, _frame):
    sys.exit(128 + number)


def lab_up(tun_queues=1):
    stop_started()
    subprocess.run(["bash", LAB, "down"], env={**os.environ, "LAB_PREFIX": PREFIX}, capture_output=True)
    run(["bash", LAB, "up"], env={**os.environ, "LAB_PREFIX": PREFIX, "TUN_QUEUES": str(tun_queues)})


def sysctl(node, key, value):
    run(["sysctl", "-qw", f"{key}={value}"], node=node)


def route(node, *spec):
    run(["ip", "route", "replace", *spec], node=node)


def wait_for(check, what, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def pings(node, address):
    return run(["ping", "-c", "1", "-W", "1", address], node=node, check=False).returncode == 0


# ---- one function per row: set up the path, return the tunnel's processes ----

def setup_direct(_args):
    route("a", C_NET, "via", B_A)
    route("c", "198.18.1.0/24", "via", B_C)
    return []


def start_udptun(extra=(), relay_extra=(), client_extra=(), env=None, name="udptun"):
    """Relay on B and client on A with `extra` flags on both; returns [relay, client] once A reaches C."""
    bin_dir = BIN_DIR
    relay = spawn("b", [f"{bin_dir}/udptun-relay", "--allow", f"{A}/32", "--interval", "0", *extra, *relay_extra],
                  f"{name}-relay", env=env)
    client = spawn("a", [f"{bin_dir}/udptun-client", "--relay", f"{B_A}:8080", "--interval", "0", *extra, *client_extra],
                   f"{name}-client", env=env)
    wait_for(lambda: pings("a", C), "udptun path")
    return [relay, client]


def setup_udptun(args, extra=(), relay_extra=(), client_extra=()):
    return start_udptun((*extra, *args.udptun_args.split()), relay_extra, client_extra)


def key_file():
    """A fresh shared key for udptun's encrypted runs, readable by root only."""
    key = os.path.join(workdir, "udptun.key")
    with open(os.open(key, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "w") as handle:
        handle.write(run([os.path.join(BIN_DIR, "udptun-relay"), "--genkey"]).stdout)
    return key


def setup_udptun_encrypted(args, cipher=()):
    key = key_file()
    # The 36-byte framing needs room: the relay's device gets the client's automatic MTU.
    run(["ip", "link", "set", "tun2", "mtu", "1436"], node="b")
    return setup_udptun(args, ("--key-file", key, "--encrypt", *cipher))


def setup_udptun_aes(args):
    return setup_udptun_encrypted(args, ("--cipher", "aes-256-gcm"))


# GTP-U on the bench's usual port, one session for the lab's inner network, no echoes in the way.
GTPU_RELAY_FLAGS = ("--gtpu", "--session", "0x100=198.19.0.0/24", "--listen", "0.0.0.0:8080", "--echo-interval", "0")
GTPU_CLIENT_FLAGS = ("--gtpu", "--teid", "0x100", "--echo-interval", "0")


def setup_udptun_gtpu(args):
    # 16 bytes of GTP-U header with the container: the relay's device gets the client's automatic MTU.
    run(["ip", "link", "set", "tun2", "mtu", "1456"], node="b")
    return setup_udptun(args, relay_extra=GTPU_RELAY_FLAGS, client_extra=GTPU_CLIENT_FLAGS)


def setup_udptun_busy_poll(args):
    # One thread per process moves both directions and polls for 20 ms after each packet, so
    # traffic with gaps shorter than that (these pings are 10 ms apart) never waits for a wake-up.
    # On separate machines each end would have its own cores; on this one host the client's
    # thread keeps CPU 0 and the relay's CPU 1, so the two spinners never take turns on one core.
    pins = (("--cpu", "0"), ("--cpu", "1")) if {0, 1} <= os.sched_getaffinity(0) else ((), ())
    return setup_udptun(args, ("--threads", "1", "--busy-poll", "20000"), client_extra=pins[0], relay_extra=pins[1])


# Two TUN queues per end, each with its own threads and SO_REUSEPORT socket; the lab's devices are
# made multi-queue to match (TUN_QUEUES_BY_ROW).
QUEUES_ROW_FLAGS = ("--queues", "2")


def setup_udptun_queues(args):
    return setup_udptun(args, QUEUES_ROW_FLAGS)


def setup_vxlan(_args):
    for node, local, remote, inner in (("a", A, B_A, "198.19.1.1"), ("b", B_A, A, "198.19.1.2")):
        run(["ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "local", local, "remote", remote,
             "dstport", "4789", "dev", "to-b" if node == "a" else "to-a"], node=node)
        run(["ip", "addr", "add", f"{inner}/24", "dev", "vx0"], node=node)
        run(["ip", "link", "set", "vx0", "up"], node=node)
    sysctl("b", "net.ipv4.conf.vx0.rp_filter", 2)
    route("a", C_NET, "via", "198.19.1.2", "dev", "vx0", "src", "198.19.1.1")
    route("c", "198.19.1.0/24", "via", B_C)
    return []


def setup_socat(_args):
    # socat exits on the first ICMP port-unreachable, so: no IPv6 link-local chatter on its devices,
    # and the far side (B) listening before A starts.
    for node in "ab":
        sysctl(node, "net.ipv6.conf.default.disable_ipv6", 1)
    b = spawn("b", ["socat", f"UDP:{A}:9000,bind={B_A}:9000", "TUN:198.19.2.2/24,tun-name=stun,iff-no-pi,iff-up"], "socat-b")
    wait_for(lambda: run(["ip", "link", "show", "stun"], node="b", check=False).returncode == 0, "socat TUN device on B")
    a = spawn("a", ["socat", f"UDP:{B_A}:9000,bind={A}:9000", "TUN:198.19.2.1/24,tun-name=stun,iff-no-pi,iff-up"], "socat-a")
    wait_for(lambda: run(["ip", "link", "show", "stun"], node="a", check=False).returncode == 0, "socat TUN device on A")
    for node in "ab":
        run(["ip", "link", "set", "stun", "mtu", "1472"], node=node)
    sysctl("b", "net.ipv4.conf.stun.rp_filter", 2)
    route("a", C_NET, "dev", "stun", "src", "198.19.2.1")
    route("c", "198.19.2.0/24", "via", B_C)
    wait_for(lambda: pings("a", C), "socat path")
    return [a, b]


def setup_openvpn(_args):
    processes = []
    for node, local, remote, mine, theirs in (("a", A, B_A, "198.19.3.1", "198.19.3.2"), ("b", B_A, A, "198.19.3.2", "198.19.3.1")):
        processes.append(spawn(node, ["openvpn", "--dev", "ovpn0", "--dev-type", "tun", "--proto", "udp",
                                      "--local", local, "--remote", remote, "--lport", "1194", "--rport", "1194",
                                      "--ifconfig", mine, theirs, "--cipher", "none", "--auth", "none", "--verb", "1"],
                               f"openvpn-{node}"))
    wait_for(lambda: run(["ip", "link", "show", "ovpn0"], node="b", check=False).returncode == 0, "OpenVPN device")
    sysctl("b", "net.ipv4.conf.ovpn0.rp_filter", 2)
    wait_for(lambda: pings("a", "198.19.3.2"), "OpenVPN p2p link", timeout=15)
    route("a", C_NET, "via", "198.19.3.2", "dev", "ovpn0", "src", "198.19.3.1")
    route("c", "198.19.3.0/24", "via", B_C)
    return processes


def wireguard_go_version(path):
    """What `wireguard-go --version` says (e.g. v0.0.20250522), or "?"."""
    result = run([path, "--version"], check=False)
    match = re.search(r"v[\d.]+", result.stdout + result.stderr)
    return match.group(0) if match else "?"


def setup_wireguard(args):
    keys = {}
    for node in "ab":
        private = run(["wg", "genkey"]).stdout.strip()
        public = run(["wg", "pubkey"], input=private).stdout.strip()
        path = os.path.join(workdir, f"wg-{node}.key")
        with open(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600), "w") as handle:
            handle.write(private + "\n")
        keys[node] = (path, public)
    env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
    processes = [spawn("a", [args.wireguard_go, "wga"], "wireguard-a", env=env),
                 spawn("b", [args.wireguard_go, "wgb"], "wireguard-b", env=env)]
    wait_for(lambda: run(["wg", "show", "wga"], node="a", check=False).returncode == 0
             and run(["wg", "show", "wgb"], node="b", check=False).returncode == 0, "wireguard-go devices")
    run(["wg", "set", "wga", "private-key", keys["a"][0], "listen-port", "51820", "peer", keys["b"][1],
         "endpoint", f"{B_A}:51820", "allowed-ips", f"198.19.4.2/32,{C_NET}"], node="a")
    run(["wg", "set", "wgb", "private-key", keys["b"][0], "listen-port", "51820", "peer", keys["a"][1],
         "endpoint", f"{A}:51820", "allowed-ips", "198.19.4.1/32"], node="b")
    for node, device, inner in (("a", "wga", "198.19.4.1"), ("b", "wgb", "198.19.4.2")):
        run(["ip", "addr", "add", f"{inner}/24", "dev", device], node=node)
        run(["ip", "link", "set", device, "up"], node=node)
    sysctl("b", "net.ipv4.conf.wgb.rp_filter", 2)
    route("a", C_NET, "dev", "wga", "src", "198.19.4.1")
    route("c", "198.19.4.0/24", "via", B_C)
    wait_for(lambda: pings("a", C), "WireGuard path", timeout=15)
    return processes


def setup_ceiling(_args):
    program = os.path.join(workdir, "ceiling")
    if not os.path.exists(program):
        run(["cc", "-O2", "-pthread", "-o", program, os.path.join(ROOT, "deploy", "ceiling.c")])
    processes = [spawn("b", [program, "tun2", f"{B_A}:9100", f"{A}:9100"], "ceiling-b"),
                 spawn("a", [program, "tun1", f"{A}:9100", f"{B_A}:9100"], "ceiling-a")]
    wait_for(lambda: pings("a", C), "ceiling path")
    return processes


ROWS = {
    "direct": ("direct, routed through B", setup_direct),
    "vxlan": ("kernel VXLAN", setup_vxlan),
    "socat": ("socat TUN↔UDP", setup_socat),
    "openvpn": ("OpenVPN 2.6 p2p, no crypto", setup_openvpn),
    "wireguard": ("wireguard-go", setup_wireguard),
    "udptun": ("udptun", setup_udptun),
    "udptun-encrypted": ("udptun, ChaCha20-Poly1305", setup_udptun_encrypted),
    "udptun-aes": ("udptun, AES-256-GCM", setup_udptun_aes),
    "udptun-busy-poll": ("udptun, --threads 1 --busy-poll 20000, pinned", setup_udptun_busy_poll),
    "udptun-queues": ("udptun, --queues 2", setup_udptun_queues),
    "udptun-gtpu": ("udptun, GTP-U (RAN node → UPF)", setup_udptun_gtpu),
    "ceiling": ("copy-only TUN↔UDP ceiling (not a tunnel)", setup_ceiling),
}
def tun_queues(flags):
    """The TUN queues udptun's flags ask for (`--queues N`), so the lab's devices can be made to match."""
    flags = list(flags)
    return int(flags[flags.index("--queues") + 1]) if "--queues" in flags[:-1] else 1


# Rows whose lab needs multi-queue TUN devices.
TUN_QUEUES_BY_ROW = {"udptun-queues": tun_queues(QUEUES_ROW_FLAGS)}

# ---- measurements ----

def cpu_seconds(processes):
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for process in processes:
        with open(f"/proc/{process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, all threads
    return total / ticks


def peak_rss_mb(processes):
    peak = 0
    for process in processes:
        with open(f"/proc/{process.pid}/status") as handle:
            match = re.search(r"VmHWM:\s+(\d+) kB", handle.read())
        peak = max(peak, int(match.group(1)) if match else 0)
    return peak / 1024


def iperf(args, seconds):
    server = spawn("c", ["iperf3", "-s", "-1", "-B", C], "iperf3-server")
    wait_for(lambda: run(["ss", "-ltn", "sport = :5201"], node="c", check=False).stdout.count("LISTEN") > 0, "iperf3 server")
    result = run(["iperf3", "-c", C, "-t", str(seconds), "-J"] + args, node="a", timeout=seconds + 30, check=False)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"iperf3 {' '.join(args)} gave no result: {result.stderr.strip() or result.stdout[-300:]}")


def tcp(streams, seconds, processes):
    before = cpu_seconds(processes) if processes else None
    report = iperf(["-P", str(streams)], seconds)
    received = report["end"]["sum_received"]
    result = {"gbps": received["bits_per_second"] / 1e9, "bytes": received["bytes"],
              "retransmits": report["end"]["sum_sent"].get("retransmits")}
    if processes:
        result["cpu_s_per_gb"] = (cpu_seconds(processes) - before) / (received["bytes"] / 1e9)
    return result


def udp_arrivals(node):
    """Datagrams that reached the UDP layer of `node`'s namespace, whether or not the receiving
    socket had room for them (InDatagrams + RcvbufErrors from its /proc/net/snmp)."""
    lines = [line.split() for line in run(["cat", "/proc/net/snmp"], node=node).stdout.splitlines() if line.startswith("Udp:")]
    fields = dict(zip(lines[0][1:], map(int, lines[1][1:])))
    return fields["InDatagrams"] + fields["RcvbufErrors"]


def udp(size, seconds, socket_buffer=None):
    before = udp_arrivals("c")
    # -w sets both ends' socket buffers; the receiver's is the one that matters (see udp64-4mb).
    report = iperf(["-u", "-b", "0", "-l", str(size)] + (["-w", socket_buffer] if socket_buffer else []), seconds)
    arrived = udp_arrivals("c") - before
    total = report["end"]["sum"]
    sent = total["packets"]
    lost = total["lost_packets"]
    # "arrived" is what the path carried to C; "delivered" what iperf3 at C managed to read. On two
    # shared cores the receiver itself drops what a fast path brings (RcvbufErrors).
    return {"delivered_kpps": (sent - lost) / total["seconds"] / 1e3, "loss_percent": 100.0 * lost / sent if sent else None,
            "arrived_kpps": arrived / total["seconds"] / 1e3}


def ping_rtt(count, interval=0.01):
    output = run(["ping", "-c", str(count), "-i", str(interval), "-W", "1", C], node="a",
                 timeout=count * (interval + 0.04) + 20, check=False).stdout
    times = sorted(float(value) for value in re.findall(r"time=([\d.]+) ms", output))
    if not times:
        return {"avg_ms": None, "p99_ms": None}
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    return {"avg_ms": statistics.mean(times), "p99_ms": p99, "replies": len(times)}


# udp64-4mb repeats udp64 with 4 MB socket buffers at both ends: iperf3 at C then rides out the
# scheduler slices it loses to the other processes on two cores, so it reads what the path carries.
# ping1ms repeats ping with 1 ms between requests (1,000 of them): on this VM a CPU that has been
# idle for 10 ms runs the next packet's work several times slower (the direct path's own round trip
# goes from about 6 µs back to back to 60 µs at 10 ms), so the two show a cold and a warm path.
TESTS = ("tcp1", "tcp4", "udp64", "udp64-4mb", "udp1400", "ping", "ping1ms")
# What a row holds for a test left out with --tests.
SKIPPED = {"tcp1": {"gbps": None}, "tcp4": {"gbps": None}, "udp64": {"delivered_kpps": None, "loss_percent": None, "arrived_kpps": None},
           "udp64-4mb": {"delivered_kpps": None, "loss_percent": None, "arrived_kpps": None},
           "udp1400": {"delivered_kpps": None, "loss_percent": None, "arrived_kpps": None}, "ping": {"avg_ms": None, "p99_ms": None},
           "ping1ms": {"avg_ms": None, "p99_ms": None}}


def ratio(numerator, denominator):
    return None if numerator is None or not denominator else numerator / denominator


def measure(key, args):
    label, setup = ROWS[key]
    if key == "wireguard":
        label = f"{label} {wireguard_go_version(args.wireguard_go)}"
    lab_up(max(TUN_QUEUES_BY_ROW.get(key, 1), tun_queues(args.udptun_args.split())))
    processes = setup(args)
    row = {"row": key, "label": label, **SKIPPED}
    tests = args.tests.split(",")
    if "tcp1" in tests:
        row["tcp1"] = tcp(1, args.tcp_seconds, processes)
    if "tcp4" in tests:
        row["tcp4"] = tcp(4, args.seconds, [])
    if "udp64" in tests:
        row["udp64"] = udp(64, args.seconds)
    if "udp64-4mb" in tests:
        row["udp64-4mb"] = udp(64, args.seconds, socket_buffer="4M")
    if "udp1400" in tests:
        row["udp1400"] = udp(1400, args.seconds)
    if "ping" in tests:
        row["ping"] = ping_rtt(args.pings)
    if "ping1ms" in tests:
        row["ping1ms"] = ping_rtt(1000, interval=0.001)
    row["rss_mb"] = peak_rss_mb(processes) if processes else None
    for process in processes:
        if process.poll() is not None:
            raise RuntimeError(f"{label}: a tunnel process exited during the run (see its log)")
    stop_started()
    return row


def allocation_counts(log):
    with open(os.path.join(workdir, log + ".log")) as handle:
        return [int(value) for value in re.findall(r"allocation-counter: (\d+)", handle.read())]


def settle_addresses():
    """Waits (up to 5 s) until no IPv6 address in the lab is tentative, then 1.5 s more. Duplicate
    address detection finishing on a fresh veth is an address change, which the relay answers within
    a second by reading its own addresses again: that is set-up, and must not land in the
    steady-state window."""
    deadline = time.time() + 5
    while time.time() < deadline:
        if not any(run(["ip", "-6", "addr", "show", "tentative"], node=node).stdout.strip() for node in "abc"):
            break
        time.sleep(0.1)
    time.sleep(1.5)


def measure_allocations(packets, extra=(), relay_extra=(), client_extra=()):
    """Heap allocations per packet in steady state: relay and client run with an LD_PRELOAD malloc
    counter (Tests/AllocationCounter), sampled with SIGUSR2 after a warm-up and again after `packets`
    more generator payloads crossed the tunnel."""
    bin_dir = BIN_DIR
    counter = os.path.join(bin_dir, "libAllocationCounter.so")
    lab_up(tun_queues(extra))
    spawn("c", [f"{bin_dir}/udptun-sink", "--interval", "0"], "alloc-sink")
    relay, client = start_udptun(extra, relay_extra, client_extra, env={**os.environ, "LD_PRELOAD": counter}, name="alloc")

    def generate(count):
        run([f"{bin_dir}/udptun-client", "--no-tunnel", "--generate", f"{C}:8080", "--count", str(count),
             "--rate", "50000", "--exit-when-done", "--interval", "0"], node="a", timeout=count / 1000 + 30)

    def sample():
        for process in (relay, client):
            process.send_signal(signal.SIGUSR2)
        time.sleep(0.3)

    generate(10_000)  # warm-up: tables, buffers and caches reach their steady size
    settle_addresses()
    sample()
    generate(packets)
    sample()
    result = {"packets": packets}
    for name in ("relay", "client"):
        counts = allocation_counts(f"alloc-{name}")
        if len(counts) < 2:
            raise RuntimeError(f"no allocation samples from the {name}")
        result[f"{name}_allocations"] = counts[1] - counts[0]
        result[f"{name}_per_packet"] = (counts[1] - counts[0]) / packets
    stop_started()
    return result


# ---- the relay as a hub (--clients) ----

SWARM = os.path.join(ROOT, "Tests", "scripts", "swarm.py")


def rss_kb(process):
    with open(f"/proc/{process.pid}/status") as handle:
        match = re.search(r"VmRSS:\s+(\d+) kB", handle.read())
    return int(match.group(1)) if match else 0


def final_report(process, name):
    """Stops a udptun process with SIGINT and returns its final JSON report."""
    process.send_signal(signal.SIGINT)
    process.wait(timeout=10)
    with open(os.path.join(workdir, name + ".log")) as handle:
        for line in reversed(handle.read().splitlines()):
            if line.startswith("{") and '"final"' in line:
                return json.loads(line)
    raise RuntimeError(f"{name}: no final report")


def log_text(name):
    with open(os.path.join(workdir, name + ".log")) as handle:
        return handle.read()


def swarm_report(result):
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"swarm gave no result: {result.stderr.strip()[-300:]}")


def measure_clients(count, packets, seconds, relay_args=()):
    bin_dir = BIN_DIR
    lab_up()
    route("b", "198.19.0.0/16", "dev", "tun2")
    route("c", "198.19.0.0/16", "via", B_C)
    # The load's destination: a sink that counts it (no ICMP port unreachable comes back).
    spawn("c", [f"{bin_dir}/udptun-sink", "--listen", f"{C}:9", "--interval", "0"], f"hub-sink-{count}")
    name = f"hub-relay-{count}"
    relay = spawn("b", [f"{bin_dir}/udptun-relay", "--allow", "198.18.1.0/24", "--interval", "0", "--json", *relay_args], name)
    wait_for(lambda: "relay listening" in log_text(name), "relay")
    bytes_per_client = int(re.search(r"client_bytes=(\d+)", log_text(name)).group(1))

    def flood(total, clients=count):
        return swarm_report(run(["python3", SWARM, "flood", "--relay", f"{B_A}:8080", "--clients", str(clients), "--packets",
                                 str(total), "--target", f"{C}:9", "--seconds", str(seconds)], node="a", timeout=seconds + 60))

    # One client warms the data path up (buffers touched, caches filled), so the RSS step that
    # follows, when every client sends once and the relay learns them all, is the table's.
    flood(20_000, clients=1)
    time.sleep(0.5)
    idle_kb = rss_kb(relay)
    flood(count)
    time.sleep(0.5)
    learned_kb = rss_kb(relay)
    cpu_before = cpu_seconds([relay])
    load = flood(packets)
    time.sleep(0.5)
    cpu = cpu_seconds([relay]) - cpu_before
    report = final_report(relay, name)
    stop_started()
    forwarded = report["forwarded"] - count - 20_000
    return {"clients": count, "learned": report["clients"], "sent": load["sent"], "forwarded": forwarded,
            "dropped": report["dropped"], "seconds": load["seconds"], "wall_kpps": forwarded / load["seconds"] / 1e3,
            "relay_cpu_s": cpu, "kpps_per_relay_cpu_s": forwarded / cpu / 1e3 if cpu else None,
            "relay_cpu_us_per_packet": cpu / forwarded * 1e6 if forwarded else None,
            "rss_idle_mb": idle_kb / 1024, "rss_learned_mb": learned_kb / 1024,
            "rss_growth_bytes_per_client": (learned_kb - idle_kb) * 1024 / (count - 1) if count > 1 else None,
            "stated_bytes_per_client": bytes_per_client}


def measure_churn(seconds, rounds):
    """The generator's delivered rate through udptun: alone, beside one other sender's steady load
    (one inner source), and beside that sender cycling through 100,000 inner sources; rounds
    alternate the three so drift hits them alike."""
    bin_dir = BIN_DIR
    lab_up()
    run(["ip", "addr", "add", "198.18.1.3/24", "dev", "to-b"], node="a")
    start_udptun(relay_extra=("--allow", "198.18.1.0/24", "--json"), name="churn")
    results = {"quiet": [], "steady": [], "churn": []}
    for round_index in range(rounds):
        for mode in results:
            sink_name = f"churn-sink-{mode}-{round_index}"
            sink = spawn("c", [f"{bin_dir}/udptun-sink", "--interval", "0", "--json"], sink_name)
            wait_for(lambda: "sink listening" in log_text(sink_name), "sink")
            load = None
            if mode != "quiet":
                load = spawn("a", ["python3", SWARM, "churn", "--relay", f"{B_A}:8080", "--bind", "198.18.1.3", "--repeat",
                                   "--sources", "1" if mode == "steady" else "100000", "--target", f"{C}:9",
                                   "--seconds", str(seconds + 1)], f"churn-load-{mode}-{round_index}")
                time.sleep(0.3)
            run([f"{bin_dir}/udptun-client", "--no-tunnel", "--generate", f"{C}:8080", "--rate", "0", "--size", "256",
                 "--duration", str(seconds), "--exit-when-done", "--interval", "0"], node="a", timeout=seconds + 30)
            time.sleep(0.3)
            received = final_report(sink, sink_name)["received"]
            if load:
                load.wait(timeout=seconds + 10)
            results[mode].append(received / seconds / 1e3)
    relay = started[0]
    report = final_report(relay, "churn-relay")
    stop_started()
    medians = {mode: statistics.median(values) for mode, values in results.items()}
    return {"kpps": results, "median_kpps": medians, "churn_vs_quiet": ratio(medians["churn"], medians["quiet"]),
            "churn_vs_steady": ratio(medians["churn"], medians["steady"]),
            "relay_new_client_limit": report["drops"]["new_client_limit"],
            "relay_client_table_full": report["drops"]["client_table_full"], "relay_clients": report["clients"]}


def hub_tables(hub, churn):
    lines = ["| clients | forwarded kpps (wall) | kpps per relay CPU s | relay CPU µs/packet | relay RSS warm → learned MB | "
             "RSS growth B/client (stated) |", "|---|---|---|---|---|---|"]
    for row in hub:
        lines.append(f"| {row['clients']:,} | {fmt(row['wall_kpps'], 0)} | {fmt(row['kpps_per_relay_cpu_s'], 0)} | "
                     f"{fmt(row['relay_cpu_us_per_packet'], 2)} | {fmt(row['rss_idle_mb'], 1)} → {fmt(row['rss_learned_mb'], 1)} | "
                     f"{fmt(row['rss_growth_bytes_per_client'], 0)} ({row['stated_bytes_per_client']}) |")
    if hub:
        first, last = hub[0], hub[-1]
        lines.append("")
        lines.append(f"- {last['clients']:,} clients against {first['clients']:,}: "
                     f"{fmt(ratio(last['kpps_per_relay_cpu_s'], first['kpps_per_relay_cpu_s']))}× packets per relay CPU second, "
                     f"{fmt(ratio(last['wall_kpps'], first['wall_kpps']))}× wall-clock rate")
    if churn:
        median = churn["median_kpps"]
        lines.append(f"- churn: generator delivered {fmt(median['quiet'], 1)} kpps alone, {fmt(median['steady'], 1)} beside a "
                     f"steady sender, {fmt(median['churn'], 1)} beside 100,000 cycling sources (medians of "
                     f"{len(churn['kpps']['quiet'])} alternating rounds): {fmt(churn['churn_vs_steady'])}× the steady-load rate, "
                     f"{fmt(churn['churn_vs_quiet'])}× alone; relay refused {churn['relay_new_client_limit']:,} as new_client_limit, "
                     f"{churn['relay_client_table_full']:,} as client_table_full, held {churn['relay_clients']:,} clients")
    return "\n".join(lines)


# ---- report ----

def fmt(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def udp_cell(result):
    arrived = result.get("arrived_kpps")
    at_c = f" of {fmt(arrived, 0)}" if arrived is not None else ""
    return f"{fmt(result['delivered_kpps'], 0)}{at_c} ({fmt(result['loss_percent'], 1)}%)"


def table(rows):
    direct = next((row for row in rows if row["row"] == "direct"), None)
    lines = ["| path A → C | TCP 1 stream Gb/s | × direct | TCP 4 streams Gb/s | UDP 64 B kpps read of arrived at C (loss) | "
             "UDP 64 B, 4 MB buffers | UDP 1400 B kpps read of arrived (loss) | ping avg / p99 ms | ping 1 ms apart avg / p99 | "
             "CPU s/GB | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        to_direct = ratio(row["tcp1"]["gbps"], direct["tcp1"]["gbps"]) if direct else None
        lines.append(
            f"| {row['label']} | {fmt(row['tcp1']['gbps'])} | {fmt(to_direct)} | {fmt(row['tcp4']['gbps'])} | "
            f"{udp_cell(row['udp64'])} | {udp_cell(row['udp64-4mb'])} | {udp_cell(row['udp1400'])} | "
            f"{fmt(row['ping']['avg_ms'], 3)} / {fmt(row['ping']['p99_ms'], 3)} | "
            f"{fmt(row['ping1ms']['avg_ms'], 3)} / {fmt(row['ping1ms']['p99_ms'], 3)} | "
            f"{fmt(row['tcp1'].get('cpu_s_per_gb'))} | {fmt(row['rss_mb'], 1)} |")
    return "\n".join(lines)


def comparison(rows):
    by_key = {row["row"]: row for row in rows}
    ours = by_key.get("udptun")
    peers = [by_key[key] for key in PEERS if key in by_key]
    if not ours or not peers:
        return ""
    lines = [f"udptun vs the best of {', '.join(row['label'] for row in peers)}:"]
    if ours["tcp1"]["gbps"] is not None:
        best_tcp = max(peers, key=lambda row: row["tcp1"]["gbps"])
        lines.append(f"- TCP 1 stream: {ours['tcp1']['gbps'] / best_tcp['tcp1']['gbps']:.2f}× {best_tcp['label']}")
    for test, what in (("udp64", "UDP 64 B delivered"), ("udp64-4mb", "UDP 64 B delivered, 4 MB socket buffers")):
        if ours[test]["delivered_kpps"] is None or not all(row[test]["delivered_kpps"] for row in peers):
            continue
        best_udp = max(peers, key=lambda row: row[test]["delivered_kpps"])
        lines.append(f"- {what}: {ours[test]['delivered_kpps'] / best_udp[test]['delivered_kpps']:.2f}× {best_udp['label']}")
        if "openvpn" in by_key and best_udp["row"] != "openvpn":
            lines.append(f"- {what} vs OpenVPN: {ours[test]['delivered_kpps'] / by_key['openvpn'][test]['delivered_kpps']:.2f}×")
    gtpu = by_key.get("udptun-gtpu")
    if gtpu and gtpu["tcp1"]["gbps"] is not None and ours["tcp1"]["gbps"]:
        lines.append(f"- GTP-U vs raw udptun, TCP 1 stream: {gtpu['tcp1']['gbps'] / ours['tcp1']['gbps']:.2f}×")
    for key in ("udptun-encrypted", "udptun-aes"):
        sealed = by_key.get(key)
        if not sealed or sealed["tcp1"]["gbps"] is None:
            continue
        if "wireguard" in by_key:
            lines.append(f"- {sealed['label']} vs wireguard-go, TCP 1 stream: "
                         f"{sealed['tcp1']['gbps'] / by_key['wireguard']['tcp1']['gbps']:.2f}×")
        if ours["tcp1"]["gbps"]:
            lines.append(f"- {sealed['label']} vs raw udptun, TCP 1 stream: {sealed['tcp1']['gbps'] / ours['tcp1']['gbps']:.2f}×")
    for test, what in (("ping", "ping RTT"), ("ping1ms", "ping RTT, 1 ms apart")):
        for key in (key for key in ROWS if key.startswith("udptun") and key in by_key):
            extra = added_over_direct_us(by_key, key, test)
            if extra is not None:
                lines.append(f"- {what}, {by_key[key]['label']}: direct + {extra:.0f} µs")
    return "\n".join(lines)


def added_over_direct_us(by_key, key, test):
    """What row `key` adds to the direct path's average RTT in ping test `test`, in µs (None when
    either is missing). Ping reports whole microseconds: rounding keeps float error from deciding a tie."""
    row, direct = by_key.get(key), by_key.get("direct")
    if not row or not direct or row[test].get("avg_ms") is None or direct[test].get("avg_ms") is None:
        return None
    return round((row[test]["avg_ms"] - direct[test]["avg_ms"]) * 1000, 1)


def median_row(runs):
    """One row from the same row's runs: every figure the median of the runs that have it."""
    def merge(values):
        if isinstance(values[0], dict):
            return {key: merge([value.get(key) for value in values]) for key in values[0]}
        numbers = [value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]
        if numbers:
            return statistics.median(numbers)
        return next((value for value in values if value is not None), None)
    return merge(runs)


def target_table(rows, allocations):
    """Issue 13's targets, met or not, from the figures of this run (medians with --rounds)."""
    by_key = {row["row"]: row for row in rows}

    def figure(key, test, field):
        row = by_key.get(key)
        return row[test][field] if row and row[test].get(field) is not None else None

    lines = []

    def add(target, shown, met, beyond_ceiling=False):
        verdict = "met" if met else "not met, beyond the ceiling" if beyond_ceiling else "not met"
        lines.append(f"| {target} | {shown} | {verdict} |")

    for streams, bar in (("tcp1", 1.0), ("tcp4", 0.6)):
        value = ratio(figure("udptun", streams, "gbps"), figure("vxlan", streams, "gbps"))
        if value is not None:
            shown = f"{figure('udptun', streams, 'gbps'):.2f} / {figure('vxlan', streams, 'gbps'):.2f} = {value:.2f}×"
            # The copy-only ceiling bounds every TUN-over-UDP tunnel here: a bar above it is out of reach.
            bound = ratio(figure("ceiling", streams, "gbps"), figure("vxlan", streams, "gbps"))
            if bound is not None:
                shown += f" (copy-only ceiling {figure('ceiling', streams, 'gbps'):.2f} = {bound:.2f}×)"
            add(f"raw TCP {streams[3]} ≥ {bar}× kernel VXLAN", shown, value >= bar, bound is not None and bound < bar)
    for key in ("udptun-encrypted", "udptun-aes"):
        label = by_key[key]["label"] if key in by_key else key
        value = ratio(figure(key, "tcp1", "gbps"), figure("wireguard", "tcp1", "gbps"))
        if value is not None:
            add(f"{label}: TCP 1 ≥ 2.5× wireguard-go", f"{value:.2f}×", value >= 2.5)
        value = ratio(figure(key, "tcp1", "gbps"), figure("udptun", "tcp1", "gbps"))
        if value is not None:
            add(f"{label}: TCP 1 ≥ 0.6× raw udptun", f"{value:.2f}×", value >= 0.6)
    for test, gaps in (("ping", "10 ms"), ("ping1ms", "1 ms")):
        ours, socat = added_over_direct_us(by_key, "udptun", test), added_over_direct_us(by_key, "socat", test)
        if ours is not None and socat is not None:
            add(f"default ping added ≤ socat's, {gaps} gaps", f"+{ours:.0f} against +{socat:.0f} µs", ours <= socat)
        profile = added_over_direct_us(by_key, "udptun-busy-poll", test)
        if profile is not None:
            add(f"low-latency profile ≤ direct + 20 µs, {gaps} gaps", f"+{profile:.0f} µs", profile <= 20)
    ours, direct = figure("udptun", "udp64-4mb", "arrived_kpps"), figure("direct", "udp64-4mb", "arrived_kpps")
    if ours is not None and direct:
        add("UDP 64 B, 4 MB buffers, arrived at C ≥ direct", f"{ours:.1f} against {direct:.1f} kpps ({ours / direct:.3f}×)",
            ours >= direct)
    rss = [row["rss_mb"] for key, row in by_key.items() if key.startswith("udptun") and row.get("rss_mb") is not None]
    if rss:
        add("RSS ≤ 16 MB per process", f"{min(rss):.1f}–{max(rss):.1f} MB", max(rss) <= 16)
    if allocations:
        counts = {mode: counted["relay_allocations"] + counted["client_allocations"] for mode, counted in allocations.items()}
        add("0 heap allocations per packet", ", ".join(f"{mode} {count}" for mode, count in counts.items()),
            all(count == 0 for count in counts.values()))
    if not lines:
        return ""
    return "\n".join(["| target (issue 13) | this run | |", "|---|---|---|", *lines])


def load_plotter():
    """deploy/bench_plot.py, imported only when asked for: the bench runs without matplotlib."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import bench_plot
    except ImportError as error:
        shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(f"bench: --plot needs matplotlib ({error}): apt-get install python3-matplotlib, and run Debian's "
                 f"/usr/bin/python3")
    return bench_plot


def load_results(path):
    try:
        with open(path) as handle:
            results = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        sys.exit(f"bench: cannot read results {path}: {error}")
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        sys.exit(f"bench: {path} holds no per-row results (a --clients run cannot be drawn)")
    return results


def draw(results, path):
    """Draws `results` into `path`; the exit status: 0, or 1 with a one-line reason (the table and
    the JSON stand either way)."""
    try:
        panels = load_plotter().plot(results, path)
    except (OSError, ValueError) as error:
        print(f"bench: cannot draw {path}: {error}", file=sys.stderr)
        return 1
    print(f"bench: drew {panels} panels in {path}", file=sys.stderr)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run (default: all)")
    parser.add_argument("--tcp-seconds", type=int, default=10, help="single-stream TCP duration (default 10)")
    parser.add_argument("--seconds", type=int, default=4, help="duration of the other iperf3 runs (default 4)")
    parser.add_argument("--pings", type=int, default=200, help="pings for the RTT figures (default 200)")
    parser.add_argument("--tests", default=",".join(TESTS), help="comma-separated tests per row (default: all)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every row this many times, in alternating order, and report each figure's "
                             "median (default 1; use 3 or more where a figure is close to its target)")
    parser.add_argument("--udptun-args", default="", help="extra arguments for udptun's client and relay, e.g. '--threads 1'")
    parser.add_argument("--bin", metavar="DIR", help="take udptun's programs from DIR instead of .build/release "
                                                    "(A/B rounds against a saved build)")
    parser.add_argument("--json", default="bench-results.json", help="where to write the raw results")
    parser.add_argument("--plot", metavar="FILE.svg", help="also draw the run as an SVG (matplotlib: Debian's python3-matplotlib)")
    parser.add_argument("--plot-only", metavar="RESULTS.json",
                        help="measure nothing: draw --plot from a results file an earlier run wrote (no root needed)")
    parser.add_argument("--wireguard-go", default="wireguard-go", metavar="PATH",
                        help="the wireguard-go to compare with (default: the one on PATH; the 2025 build with offloads "
                             "is much faster than Debian 12's)")
    parser.add_argument("--clients", help="measure the relay as a hub instead, at these client counts (e.g. 1,100,1000,10000)")
    parser.add_argument("--hub-packets", type=int, default=1_000_000, help="packets per client count in --clients (default 1000000)")
    parser.add_argument("--churn-rounds", type=int, default=3, help="alternating rounds of the churn test (default 3)")
    parser.add_argument("--allocation-packets", type=int, default=100_000,
                        help="packets for the allocations-per-packet check (0 skips it)")
    args = parser.parse_args()
    if args.plot_only:
        shutil.rmtree(workdir, ignore_errors=True)  # made at import; nothing is measured
        if not args.plot:
            sys.exit("bench: --plot-only needs --plot FILE.svg")
        return draw(load_results(args.plot_only), args.plot)
    if args.plot:
        if args.clients:
            shutil.rmtree(workdir, ignore_errors=True)
            sys.exit("bench: --plot draws the per-row run, not --clients")
        load_plotter()  # before a run of minutes, not after it
    if args.bin:
        global BIN_DIR
        BIN_DIR = os.path.abspath(args.bin)
    if os.geteuid() != 0:
        # Re-run through sudo (PATH kept: the tools compared and udptun's build), or say to run as root.
        if not shutil.which("sudo"):
            sys.exit("bench: must run as root (namespaces, TUN devices)")
        print("bench: not root: re-running through sudo", file=sys.stderr)
        os.execvp("sudo", ["sudo", f"PATH={os.environ.get('PATH', '')}", sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
    keys = [key.strip() for key in args.rows.split(",") if key.strip()]
    unknown = [key for key in keys if key not in ROWS]
    if unknown:
        sys.exit(f"bench: unknown rows {unknown}; choose from {list(ROWS)}")
    unknown = [test for test in args.tests.split(",") if test not in TESTS]
    if unknown:
        sys.exit(f"bench: unknown tests {unknown}; choose from {list(TESTS)}")
    atexit.register(cleanup)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if args.clients:
        return hub_main(args)

    if args.rounds < 1:
        sys.exit("bench: --rounds must be at least 1")
    rounds = []
    started_at = time.time()
    for number in range(args.rounds):
        # Every other round in reverse order, so drift over the run hits every row alike.
        order = keys if number % 2 == 0 else keys[::-1]
        measured = {}
        for key in order:
            print(f"bench: measuring {ROWS[key][0]}" + (f" (round {number + 1} of {args.rounds})" if args.rounds > 1 else "")
                  + " …", file=sys.stderr, flush=True)
            try:
                measured[key] = measure(key, args)
            except Exception as error:  # one broken peer must not lose the other rows
                print(f"bench: {ROWS[key][0]} failed: {error}", file=sys.stderr)
                stop_started()
        rounds.append([measured[key] for key in keys if key in measured])
    runs = {}
    for round_ in rounds:
        for row in round_:
            runs.setdefault(row["row"], []).append(row)
    rows = [median_row(runs[key]) for key in keys if key in runs]
    allocations = None
    if args.allocation_packets > 0:
        allocations = {}
        for mode, extra, roles in (("raw", (), ((), ())), ("encrypted", ("--key-file", key_file(), "--encrypt"), ((), ())),
                                   ("gtpu", (), (GTPU_RELAY_FLAGS, GTPU_CLIENT_FLAGS))):
            print(f"bench: counting udptun's heap allocations per packet ({mode}) …", file=sys.stderr, flush=True)
            try:
                allocations[mode] = measure_allocations(args.allocation_packets, (*extra, *args.udptun_args.split()), *roles)
            except Exception as error:
                print(f"bench: allocation check ({mode}) failed: {error}", file=sys.stderr)
                stop_started()
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "kernel": os.uname().release,
               "cpus": os.cpu_count(), "seconds": round(time.time() - started_at), "rounds_run": args.rounds, "rows": rows,
               "rounds": rounds if args.rounds > 1 else None,
               "wireguard_go": {"path": args.wireguard_go, "version": wireguard_go_version(args.wireguard_go)}
               if "wireguard" in keys else None,
               "allocations": allocations}
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)
    if args.rounds > 1:
        print(f"Medians of {args.rounds} rounds (raw rounds in the JSON).\n")
    print(table(rows))
    print()
    print(comparison(rows))
    for mode, counted in (allocations or {}).items():
        print(f"- heap allocations in steady state over {counted['packets']} packets ({mode}): relay "
              f"{counted['relay_allocations']} ({counted['relay_per_packet']:.4f}/packet), client "
              f"{counted['client_allocations']} ({counted['client_per_packet']:.4f}/packet)")
    targets = target_table(rows, allocations)
    if targets:
        print()
        print(targets)
    print(f"\nraw results: {args.json} ({results['seconds']} s, kernel {results['kernel']}, {results['cpus']} CPUs)")
    if args.plot:
        return draw(results, args.plot)


def hub_main(args):
    counts = [int(count) for count in args.clients.split(",")]
    started_at = time.time()
    hub = []
    # Two passes, the second in reverse order, so drift over the run hits every count alike.
    for count in counts + counts[::-1]:
        print(f"bench: relay with {count} clients …", file=sys.stderr, flush=True)
        hub.append(measure_clients(count, args.hub_packets, seconds=30, relay_args=args.udptun_args.split()))
    merged = []
    for count in counts:
        runs = [row for row in hub if row["clients"] == count]
        row = dict(runs[0])
        for key in ("wall_kpps", "kpps_per_relay_cpu_s", "relay_cpu_us_per_packet", "rss_growth_bytes_per_client"):
            values = [run_[key] for run_ in runs if run_[key] is not None]
            row[key] = statistics.mean(values) if values else None
        merged.append(row)
    print("bench: churn …", file=sys.stderr, flush=True)
    try:
        churn = measure_churn(seconds=3, rounds=args.churn_rounds)
    except Exception as error:  # the client-count figures stand without it
        print(f"bench: churn failed: {error}", file=sys.stderr)
        stop_started()
        churn = None
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "kernel": os.uname().release, "cpus": os.cpu_count(),
               "seconds": round(time.time() - started_at), "hub_runs": hub, "hub": merged, "churn": churn}
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)
    print(hub_tables(merged, churn))
    print(f"\nraw results: {args.json} ({results['seconds']} s, kernel {results['kernel']}, {results['cpus']} CPUs)")


if __name__ == "__main__":
    sys.exit(main())
