#!/usr/bin/env python3
"""Checks the arithmetic of deploy/bench.py that turns measurements into verdicts: the median of
several rounds, and issue 13's targets table (met or not, boundaries included). Exits non-zero on
the first mismatch. Runs no benchmark and needs no privileges."""

import importlib.util
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "deploy", "bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
shutil.rmtree(bench.workdir, ignore_errors=True)  # made at import; no run here needs it


def check(condition, message):
    if not condition:
        sys.exit(f"bench-figures: {message}")


def row(key, tcp1=None, tcp4=None, ping=None, ping1ms=None, arrived=None, rss=None, label=None):
    result = {"row": key, "label": label or key, **bench.SKIPPED, "rss_mb": rss}
    result["tcp1"] = {"gbps": tcp1, "cpu_s_per_gb": None}
    result["tcp4"] = {"gbps": tcp4}
    result["ping"] = {"avg_ms": ping, "p99_ms": None}
    result["ping1ms"] = {"avg_ms": ping1ms, "p99_ms": None}
    result["udp64-4mb"] = {"delivered_kpps": None, "loss_percent": None, "arrived_kpps": arrived}
    return result


# Medians per figure, nested, skipping rounds that lack a figure; text is kept.
merged = bench.median_row([row("udptun", tcp1=9.0, ping=0.3, rss=14.0), row("udptun", tcp1=7.0, ping=None, rss=15.0),
                           row("udptun", tcp1=10.0, ping=0.2, rss=14.5)])
check(merged["tcp1"]["gbps"] == 9.0, f"median of 9, 7, 10 is {merged['tcp1']['gbps']}")
check(merged["ping"]["avg_ms"] == 0.25, f"median of 0.3 and 0.2 (one round lacking) is {merged['ping']['avg_ms']}")
check(merged["rss_mb"] == 14.5 and merged["label"] == "udptun" and merged["tcp4"]["gbps"] is None, f"merged row: {merged}")

rows = [
    row("direct", tcp1=18.0, tcp4=30.0, ping=0.050, ping1ms=0.010, arrived=200.0),
    row("vxlan", tcp1=15.0, tcp4=25.0),
    row("socat", ping=0.220, ping1ms=0.095),
    row("wireguard", tcp1=3.0),
    row("udptun", tcp1=15.0, tcp4=14.0, ping=0.230, ping1ms=0.095, arrived=199.9, rss=14.0),
    row("udptun-aes", tcp1=7.5, rss=16.0, label="udptun, AES-256-GCM"),
    row("udptun-busy-poll", ping=0.070, ping1ms=0.031, rss=14.2),
]
allocations = {"raw": {"relay_allocations": 0, "client_allocations": 0},
               "gtpu": {"relay_allocations": 0, "client_allocations": 3}}


def target_lines(rows, allocations):
    """The targets table's lines by target."""
    return {line.split(" | ")[0].lstrip("| "): line for line in bench.target_table(rows, allocations).splitlines()[2:]}


lines = target_lines(rows, allocations)


def verdict(target, met, table=None, expected=None):
    table = table or lines
    expected = expected or ("met" if met else "not met")
    check(target in table, f"no line for '{target}' in {list(table)}")
    check(table[target].endswith(f"| {expected} |"), f"expected {expected}: {table[target]}")


verdict("raw TCP 1 ≥ 1.0× kernel VXLAN", True)            # exactly at the bar
verdict("raw TCP 4 ≥ 0.6× kernel VXLAN", False)           # 0.56×
verdict("udptun, AES-256-GCM: TCP 1 ≥ 2.5× wireguard-go", True)
verdict("udptun, AES-256-GCM: TCP 1 ≥ 0.6× raw udptun", False)   # 0.5×
verdict("default ping added ≤ socat's, 10 ms gaps", False)        # +180 against +170 µs
verdict("default ping added ≤ socat's, 1 ms gaps", True)          # level
verdict("low-latency profile ≤ direct + 20 µs, 10 ms gaps", True)  # +20
verdict("low-latency profile ≤ direct + 20 µs, 1 ms gaps", False)  # +21
verdict("UDP 64 B, 4 MB buffers, arrived at C ≥ direct", False)   # 199.9 against 200
verdict("RSS ≤ 16 MB per process", True)
verdict("0 heap allocations per packet", False)
check("ceiling" not in lines["raw TCP 1 ≥ 1.0× kernel VXLAN"], "a ceiling shown without its row")

# With the copy-only ceiling measured: a bar above the ceiling is out of reach, one below it is not.
bounded = rows[:4] + [row("udptun", tcp1=12.0, tcp4=10.0), row("ceiling", tcp1=14.0, tcp4=15.0)]
bounded_lines = target_lines(bounded, None)
verdict("raw TCP 1 ≥ 1.0× kernel VXLAN", False, bounded_lines, "not met, beyond the ceiling")  # ceiling 0.93×
verdict("raw TCP 4 ≥ 0.6× kernel VXLAN", False, bounded_lines)                                 # ceiling exactly 0.6×
check("copy-only ceiling 14.00 = 0.93×" in bounded_lines["raw TCP 1 ≥ 1.0× kernel VXLAN"], bounded_lines["raw TCP 1 ≥ 1.0× kernel VXLAN"])
bounded[4] = row("udptun", tcp1=15.0, tcp4=10.0)
bounded_lines = target_lines(bounded, None)
verdict("raw TCP 1 ≥ 1.0× kernel VXLAN", True, bounded_lines)  # met counts, whatever the ceiling says
check(not any("ChaCha20" in target or "udptun-encrypted" in target for target in lines), "a line for a row not measured")
check(bench.target_table([row("direct", tcp1=1.0)], None) == "", "a table with no target to judge")
print("bench-figures: ok")
