#!/usr/bin/env python3
"""Checks deploy/wake-timeline.py's reading of perf's output on a hand-written trace: runs cut at
the scheduler's switches, calls matched to their returns, the call a thread slept in, grouping by
call sequence and the median offsets. Exits non-zero on the first mismatch; runs nothing."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("timeline", os.path.join(ROOT, "deploy", "wake-timeline.py"))
timeline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timeline)


def check(condition, message):
    if not condition:
        sys.exit(f"wake-timeline-check: {message}")


def wake(t0, tid=501, cpu=1, read_takes=8, eagain=True):
    """One wake-up of thread `tid` at `t0` seconds: woken, switched in, poll returns, read, an
    EAGAIN read, sendmmsg, poll again, switched out. Times as perf prints them (seconds)."""
    def at(us):
        return f"{t0 + us / 1e6:.6f}"
    lines = [
        f"         swapper     0 [{cpu:03d}] {at(0)}: sched:sched_wakeup: comm=tun⇄udp pid={tid} prio=120 target_cpu={cpu:03d}",
        f"         swapper     0 [{cpu:03d}] {at(4)}: sched:sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=tun⇄udp next_pid={tid} next_prio=120",
        f"         tun⇄udp   {tid} [{cpu:03d}] {at(15)}:  raw_syscalls:sys_exit: NR 7 = 1",
        f"         tun⇄udp   {tid} [{cpu:03d}] {at(26)}: raw_syscalls:sys_enter: NR 0 (4, 7f00, 10000, 0, 0, 0)",
        f"         tun⇄udp   {tid} [{cpu:03d}] {at(26 + read_takes)}:  raw_syscalls:sys_exit: NR 0 = 84",
    ]
    if eagain:
        lines += [f"         tun⇄udp   {tid} [{cpu:03d}] {at(36)}: raw_syscalls:sys_enter: NR 0 (4, 7f00, 10000, 0, 0, 0)",
                  f"         tun⇄udp   {tid} [{cpu:03d}] {at(37)}:  raw_syscalls:sys_exit: NR 0 = -11"]
    lines += [
        f"         tun⇄udp   {tid} [{cpu:03d}] {at(44)}: raw_syscalls:sys_enter: NR 307 (5, 7f00, 1, 0, 0, 0)",
        f"            ping  9999 [000] {at(45)}: raw_syscalls:sys_enter: NR 0 (3, 7f00, 10, 0, 0, 0)",
        f"         tun⇄udp   {tid} [{cpu:03d}] {at(70)}:  raw_syscalls:sys_exit: NR 307 = 1",
        f"         tun⇄udp   {tid} [{cpu:03d}] {at(80)}: raw_syscalls:sys_enter: NR 7 (7f00, 3, 1f4, 0, 0, 0)",
        f"         tun⇄udp   {tid} [{cpu:03d}] {at(84)}: sched:sched_switch: prev_comm=tun⇄udp prev_pid={tid} prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120",
    ]
    return lines


lines = wake(100.0) + wake(100.01, read_takes=10) + wake(100.02, read_takes=6) + wake(100.03, eagain=False)
lines.append("a line perf never prints")
runs = timeline.runs_of(lines, ("tun⇄udp",))
check(len(runs) == 4, f"{len(runs)} runs instead of 4")
first = runs[0]
check(first["tid"] == 501 and abs(first["in"] - first["woken"] - 4) < 0.01, f"run start: {first}")
check(abs(first["resumed"] - first["in"] - 11) < 0.01, f"the wait's return: {first['resumed'] - first['in']}")
check([call[0] for call in first["calls"]] == ["read", "read", "sendmmsg", "poll"], f"calls: {first['calls']}")
check(first["calls"][1][3] == -11 and first["calls"][3][2] is None, f"EAGAIN and the pending poll: {first['calls']}")
found = timeline.groups(runs)
check([group["count"] for group in found] == [3, 1], f"groups: {[(group['count'], group['calls']) for group in found]}")
main = found[0]
check([call[0] for call in main["calls"]] == ["read", "read!", "sendmmsg", "poll"], f"shape: {main['calls']}")
check(abs(main["calls"][0][1] - 22) < 0.01 and abs(main["calls"][0][2] - 8) < 0.01, f"read median: {main['calls'][0]}")
check(abs(main["wake_to_run"] - 4) < 0.01 and abs(main["length"] - 80) < 0.01, f"group figures: {main}")
text = timeline.report(found)
check("thread 501 (tun⇄udp)" in text and "read!@32.0+1.0" in text and "3× woken → running 4.0 µs" in text, text)
print("wake-timeline-check: ok")
