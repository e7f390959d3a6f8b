#!/usr/bin/env python3
"""Where a tunnel's time goes on each wake-up, at low packet rates.

Runs one row of the benchmark lab (deploy/bench.py's set-up: udptun by default, or socat), sends
pings from A to C at a fixed gap, and records with perf the scheduler and system-call tracepoints
of the whole machine. Then, for every run of a tunnel thread (from the moment it gets a CPU until
it gives it up), it lists the system calls it made and when each started, counted from the moment
the thread got the CPU. Runs with the same sequence of calls are grouped; each group prints the
median start and length of every call, the median delay from wake-up to running, and when the
call the thread was sleeping in (poll) returned. The gaps between one call's end and the next
one's start are user-space time, which no sampling profiler on a VM without hardware counters
resolves; a microsecond shows here where ping averages move by tens of them between runs.

Needs root (run as another user, it re-runs itself through sudo) and perf (Debian: linux-perf).
Everything it starts is stopped, and the lab deleted, on every exit path. Example:

  deploy/wake-timeline.py --row udptun --pings 300 --gap 0.01
  deploy/wake-timeline.py --row socat
"""

import argparse
import atexit
import collections
import importlib.util
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSCALLS = {0: "read", 1: "write", 7: "poll", 20: "writev", 23: "select", 44: "sendto", 45: "recvfrom", 46: "sendmsg",
            47: "recvmsg", 232: "epoll_wait", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait", 299: "recvmmsg",
            307: "sendmmsg"}
# The data-plane threads of each row, by the names they give themselves.
THREADS = {"udptun": ("tun⇄udp", "udp→tun", "tun→udp"), "socat": ("socat",)}
LINE = re.compile(r"\s*(\S+)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)")


def runs_of(lines, names):
    """Every run of a thread named in `names`: when it was woken, when it got and left the CPU,
    when the call it was blocked in returned, and its system calls as [name, start, end, result]
    (times in µs)."""
    woken, current, runs = {}, {}, []
    for line in lines:
        match = LINE.match(line)
        if not match:
            continue
        comm, tid, _cpu, stamp, event, detail = match.groups()
        tid, stamp = int(tid), float(stamp) * 1e6
        if event == "sched:sched_wakeup":
            wake = re.search(r"comm=(\S+) pid=(\d+)", detail)
            if wake and wake.group(1) in names:
                woken[int(wake.group(2))] = stamp
        elif event == "sched:sched_switch":
            switch = re.search(r"prev_pid=(\d+).*next_comm=(\S+) next_pid=(\d+)", detail)
            if not switch:
                continue
            previous, next_name, next_tid = int(switch.group(1)), switch.group(2), int(switch.group(3))
            if previous in current:
                run = current.pop(previous)
                run["out"] = stamp
                runs.append(run)
            if next_name in names:
                current[next_tid] = {"tid": next_tid, "name": next_name, "in": stamp, "woken": woken.pop(next_tid, None),
                                     "resumed": None, "calls": []}
        elif tid in current and event.startswith("raw_syscalls:"):
            number = re.match(r"NR (-?\d+)", detail)
            if not number:
                continue
            call = SYSCALLS.get(int(number.group(1)), f"#{number.group(1)}")
            run = current[tid]
            if event.endswith("sys_enter"):
                run["calls"].append([call, stamp, None, None])
            else:
                # A thread makes one call at a time: only its last can be open.
                last = run["calls"][-1] if run["calls"] else None
                if last and last[0] == call and last[2] is None:
                    result = re.search(r"= (-?\d+)", detail)
                    last[2], last[3] = stamp, int(result.group(1)) if result else None
                elif not run["calls"] and run["resumed"] is None:
                    run["resumed"] = stamp  # the call it slept in
    return runs


def median(values):
    """The median of the values that are not None; None when there are none."""
    values = [value for value in values if value is not None]
    return statistics.median(values) if values else None


def groups(runs):
    """Runs grouped by thread and by their sequence of calls (a failed call, EAGAIN, marked '!'),
    most frequent first, with median offsets from getting the CPU."""
    by_key = collections.defaultdict(list)
    for run in runs:
        if not run["calls"]:
            continue
        shape = tuple(call[0] + ("!" if call[3] is not None and call[3] < 0 else "") for call in run["calls"])
        by_key[(run["tid"], run["name"], shape)].append(run)
    result = []
    for (tid, name, shape), members in by_key.items():
        calls = [(shape[index], median(run["calls"][index][1] - run["in"] for run in members),
                  median((run["calls"][index][2] - run["calls"][index][1]) if run["calls"][index][2] else None for run in members))
                 for index in range(len(shape))]
        result.append({"tid": tid, "name": name, "count": len(members), "calls": calls,
                       "wake_to_run": median(run["in"] - run["woken"] if run["woken"] else None for run in members),
                       "resumed": median(run["resumed"] - run["in"] if run["resumed"] else None for run in members),
                       "length": median(run["out"] - run["in"] for run in members)})
    return sorted(result, key=lambda group: (group["tid"], -group["count"]))


def report(found, most=4):
    lines, shown = [], collections.Counter()
    for group in found:
        shown[group["tid"]] += 1
        if shown[group["tid"]] > most:
            continue
        if shown[group["tid"]] == 1:
            lines.append(f"thread {group['tid']} ({group['name']})")
        timing = "  ".join(f"{name}@{start:.1f}+{length:.1f}" if length is not None else f"{name}@{start:.1f}"
                           for name, start, length in group["calls"])
        extra = []
        if group["wake_to_run"] is not None:
            extra.append(f"woken → running {group['wake_to_run']:.1f} µs")
        if group["resumed"] is not None:
            extra.append(f"its wait returned at {group['resumed']:.1f}")
        extra.append(f"ran {group['length']:.1f} µs")
        lines.append(f"  {group['count']:5d}× {'; '.join(extra)}")
        lines.append(f"         {timing}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", choices=sorted(THREADS), default="udptun", help="the tunnel to trace (default udptun)")
    parser.add_argument("--pings", type=int, default=300, help="pings to trace (default 300)")
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between pings (default 0.01)")
    parser.add_argument("--udptun-args", default="", help="extra arguments for udptun's client and relay")
    parser.add_argument("--bin", metavar="DIR", help="take udptun's programs from DIR instead of .build/release")
    parser.add_argument("--groups", type=int, default=4, help="call sequences shown per thread (default 4)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        # Re-run through sudo, or say to run as root.
        if not shutil.which("sudo"):
            sys.exit("wake-timeline: must run as root (namespaces, TUN devices, perf tracepoints)")
        print("wake-timeline: not root: re-running through sudo", file=sys.stderr)
        os.execvp("sudo", ["sudo", sys.executable, os.path.abspath(__file__), *sys.argv[1:]])
    if subprocess.run(["sh", "-c", "command -v perf"], capture_output=True).returncode != 0:
        sys.exit("wake-timeline: perf is missing (apt-get install linux-perf)")
    if not 1 <= args.pings <= 100_000 or not 0.0002 <= args.gap <= 1:
        sys.exit("wake-timeline: --pings must be 1 to 100000 and --gap 0.0002 to 1 s")
    spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "deploy", "bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    if args.bin:
        bench.BIN_DIR = os.path.abspath(args.bin)
    atexit.register(bench.cleanup)
    signal.signal(signal.SIGINT, bench.on_signal)
    signal.signal(signal.SIGTERM, bench.on_signal)
    bench.lab_up()
    _label, setup = bench.ROWS[args.row]
    setup(argparse.Namespace(udptun_args=args.udptun_args))
    bench.ping_rtt(50, interval=args.gap)  # the path's first packets (neighbour discovery) stay out
    data = os.path.join(bench.workdir, "perf.data")
    recorded = subprocess.run(
        ["perf", "record", "-q", "-a", "-o", data, "-e",
         "sched:sched_switch,sched:sched_wakeup,raw_syscalls:sys_enter,raw_syscalls:sys_exit", "--",
         "ip", "netns", "exec", bench.NS["a"], "ping", "-q", "-c", str(args.pings), "-i", str(args.gap), "-W", "1", bench.C],
        capture_output=True, text=True, timeout=args.pings * (args.gap + 0.05) + 60)
    if recorded.returncode != 0:
        sys.exit(f"wake-timeline: perf record failed: {recorded.stderr.strip()}")
    print(recorded.stdout.strip().splitlines()[-1] if recorded.stdout.strip() else "ping: no summary")
    script = subprocess.Popen(["perf", "script", "-i", data, "-F", "comm,tid,cpu,time,event,trace"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    runs = runs_of(script.stdout, THREADS[args.row])
    script.wait()
    print(f"{len(runs)} runs of {', '.join(THREADS[args.row])}; times in µs from getting the CPU, medians; "
          "call@start+length, '!' a call that failed (EAGAIN)")
    print(report(groups(runs), most=args.groups))


if __name__ == "__main__":
    main()
