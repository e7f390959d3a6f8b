"""Draws a run of deploy/bench.py as one SVG: TCP throughput, UDP packet rates and ping RTT per row.

Used by `deploy/bench.py --plot FILE.svg` (after a run) and `--plot-only RESULTS.json --plot FILE.svg`
(from a results file, no run). Rows not in the results are not drawn, nor figures a row lacks; with
--rounds the rows are already the medians. The copy-only ceiling row is drawn hatched and, in the rate
TCP panel, as a dashed line across every row: the throughput it reaches bounds every TUN-over-UDP
tunnel here (its packet rates and RTTs bound nothing: it is drawn there as a row like the others).

Every drawn series carries an SVG id (matplotlib's gid) a test can look for:
series-{metric}-{row} for a row's figure (e.g. series-tcp1-udptun, series-udp64-arrived-direct,
series-ping1ms-p99-udptun-gtpu) and bound-{metric} for the ceiling's dashed line.
"""

import matplotlib

matplotlib.use("svg")  # no display needed; the only output is the SVG file
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

CEILING = "ceiling"
CEILING_LABEL = "copy-only ceiling"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")

TCP = (("tcp1", "TCP, 1 stream"), ("tcp4", "TCP, 4 streams"))
UDP = (("udp64", "UDP 64 B"), ("udp64-4mb", "UDP 64 B, 4 MB buffers"), ("udp1400", "UDP 1400 B"))
PINGS = (("ping", "10 ms gaps"), ("ping1ms", "1 ms gaps"))
# RTT figures, drawn for every row that has them, in this order. A statistic the bench records later
# (the sink's reflector will give percentiles) needs only its key, name and marker here.
RTT_STATS = (("p50_ms", "p50", "v"), ("avg_ms", "avg", "o"), ("p90_ms", "p90", "^"), ("p99_ms", "p99", "s"),
             ("p999_ms", "p99.9", "D"), ("max_ms", "max", "x"))


def figure(row, test, field):
    value = (row.get(test) or {}).get(field)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def row_label(row):
    return CEILING_LABEL if row["row"] == CEILING else row.get("label") or row["row"]


def legend_outside(axes, handles, **options):
    axes.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **options)


def rate_panel(axes, rows, series, unit, title, bound):
    """Horizontal bars, one group per row and one slot per test. `series`: (metric, label, test, field,
    slot, filled); an unfilled series is drawn as an outline behind the filled one of its slot (what
    arrived at C behind what iperf3 read there). With `bound`, the ceiling row's figures are also
    dashed lines across the panel."""
    slots = list(dict.fromkeys(entry[4] for entry in series))
    height = 0.8 / len(slots)
    bound_drawn = False
    for index, row in enumerate(rows):
        ceiling = row["row"] == CEILING
        for metric, label, test, field, slot, filled in series:
            value = figure(row, test, field)
            if value is None:
                continue
            colour = COLOURS[slots.index(slot) % len(COLOURS)]
            y = index - 0.4 + (slots.index(slot) + 0.5) * height
            # The ceiling's bars are hatched outlines: the hatch takes the edge colour.
            face = "white" if ceiling and filled else colour if filled else "none"
            bar = axes.barh(y, value, height=height * 0.9, color=face, edgecolor=colour,
                            alpha=1.0 if filled else 0.6, hatch="//" if ceiling else None,
                            linewidth=0.8 if filled else 1.2, zorder=3 if filled else 2)
            bar.patches[0].set_gid(f"series-{metric}-{row['row']}")
            if filled:
                axes.text(value, y, f" {value:.3g}", va="center", fontsize=7, zorder=4)
            if ceiling and bound:
                line = axes.axvline(value, color=colour, linestyle="--", linewidth=1, zorder=1)
                line.set_gid(f"bound-{metric}")
                bound_drawn = True
    axes.set_yticks(range(len(rows)), [row_label(row) for row in rows], fontsize=8)
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlim(left=0)
    axes.set_xlabel(unit, fontsize=8)
    axes.set_title(title, fontsize=10, loc="left")
    axes.grid(axis="x", linewidth=0.3, zorder=0)
    handles = [Patch(facecolor=COLOURS[slots.index(slot) % len(COLOURS)], label=label)
               for metric, label, test, field, slot, filled in series if filled]
    if not all(entry[5] for entry in series):
        handles.append(Patch(facecolor="none", edgecolor="grey", label="outline: arrived at C\n(filled: read by iperf3)"))
    if bound_drawn:
        handles.append(Line2D([], [], color="grey", linestyle="--", label="copy-only ceiling:\nbounds every TUN-over-UDP\ntunnel here"))
    legend_outside(axes, handles)


def rtt_panel(axes, rows):
    """One line per row and gap, a marker per statistic (avg, p99 and whatever percentiles the run
    has), on a log scale: the rows' RTTs span two decades."""
    present = [(stat, name, marker) for stat, name, marker in RTT_STATS
               if any(figure(row, test, stat) is not None for row in rows for test, _ in PINGS)]
    tests = [(test, gaps) for test, gaps in PINGS if any(figure(row, test, stat) is not None for row in rows for stat, _, _ in present)]
    height = 0.8 / len(tests)
    for index, row in enumerate(rows):
        hollow = row["row"] == CEILING
        for slot, (test, _gaps) in enumerate(tests):
            colour = COLOURS[slot % len(COLOURS)]
            y = index - 0.4 + (slot + 0.5) * height
            values = [(figure(row, test, stat), name, marker, stat) for stat, name, marker in present]
            values = [entry for entry in values if entry[0] is not None]
            if not values:
                continue
            numbers = [value for value, *_ in values]
            axes.plot([min(numbers), max(numbers)], [y, y], color=colour, linewidth=1, zorder=2)
            for value, name, marker, stat in values:
                (point,) = axes.plot([value], [y], marker=marker, color=colour, markersize=6, linestyle="none", zorder=3,
                                     markerfacecolor="white" if hollow else colour)
                point.set_gid(f"series-{test}-{stat.removesuffix('_ms')}-{row['row']}")
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_yticks(range(len(rows)), [row_label(row) for row in rows], fontsize=8)
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_xlabel("ms (log scale)", fontsize=8)
    axes.set_title("ping RTT A → C: " + ", ".join(name for _, name, _ in present), fontsize=10, loc="left")
    axes.grid(axis="x", which="both", linewidth=0.3, zorder=0)
    handles = [Line2D([], [], color=COLOURS[slot % len(COLOURS)], label=f"ping, {gaps}") for slot, (_, gaps) in enumerate(tests)]
    handles += [Line2D([], [], color="black", marker=marker, linestyle="none", label=name) for _, name, marker in present]
    if any(row["row"] == CEILING for row in rows):
        handles.append(Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="none", label=CEILING_LABEL))
    legend_outside(axes, handles)


def panels(rows):
    """The panels this run has figures for: (kind, rows drawn, series or None, unit, title, whether the
    ceiling row is drawn as a bound)."""
    tcp = [(test, label, test, "gbps", test, True) for test, label in TCP]
    udp = []
    for test, label in UDP:
        udp.append((f"{test}-delivered", label, test, "delivered_kpps", test, True))
        udp.append((f"{test}-arrived", f"{label}, arrived at C", test, "arrived_kpps", test, False))
    result = []
    for series, unit, title, bound in ((tcp, "Gb/s", "TCP throughput A → C (iperf3)", True),
                                       (udp, "kpps", "UDP packets per second at full offered load", False)):
        drawn = [row for row in rows if any(figure(row, test, field) is not None for _, _, test, field, _, _ in series)]
        series = [entry for entry in series if any(figure(row, entry[2], entry[3]) is not None for row in drawn)]
        if drawn:
            result.append(("rate", drawn, series, unit, title, bound))
    drawn = [row for row in rows if any(figure(row, test, stat) is not None for test, _ in PINGS for stat, _, _ in RTT_STATS)]
    if drawn:
        result.append(("rtt", drawn, None, None, None, False))
    return result


def plot(results, path):
    """Writes the SVG for `results` (bench.py's JSON) to `path`; returns the number of panels drawn."""
    chosen = panels(results.get("rows") or [])
    if not chosen:
        raise ValueError("the results hold no row with a TCP, UDP or ping figure to draw")
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    plt.rcParams["svg.hashsalt"] = "udptun-bench"  # the same run gives the same file
    heights = [0.8 + len(drawn) * (0.2 * (len({entry[4] for entry in series}) if series else 2) + 0.1)
               for _, drawn, series, _, _, _ in chosen]
    fig, axes_list = plt.subplots(len(chosen), 1, figsize=(9, sum(heights)), gridspec_kw={"height_ratios": heights},
                                  squeeze=False, layout="constrained")
    for axes, (kind, drawn, series, unit, title, bound) in zip(axes_list[:, 0], chosen):
        if kind == "rate":
            rate_panel(axes, drawn, series, unit, title, bound)
        else:
            rtt_panel(axes, drawn)
    rounds = results.get("rounds_run") or 1
    fig.suptitle(f"deploy/bench.sh, {results.get('date', '?')}: kernel {results.get('kernel', '?')}, "
                 f"{results.get('cpus', '?')} CPUs" + (f", medians of {rounds} rounds" if rounds > 1 else ""), fontsize=10)
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return len(chosen)
