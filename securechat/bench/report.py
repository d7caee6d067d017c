"""The bench's report: tables with peer/securechat ratios, repeated runs, the chart.

A single run of a closed-loop fanout is noisy (each server's batching, and so its CPU
per delivery, follows the load generator's timing), so ``--repeat N`` runs every server
N times, interleaved, and :func:`combine` sums up each server's rounds: medians of the
measurements, totals of what went wrong. :func:`table` then shows each median with its
range and each ratio as the median of the rounds' own ratios (a peer and securechat
measured one after the other, in the same round).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

BOTTLENECK_PCT = 90.0  # the load generator's CPU at which its numbers are lower bounds

# Table rows: "result_key label" a line; LATENCY's "{}" takes a prefix ("small room ", "chat ").
LATENCY = "lat_p50_ms {}latency p50 ms\nlat_p99_ms {}latency p99 ms\nlat_max_ms {}latency max ms"
COMMON = """\
server_cpu_pct server CPU % of one core
delivered_fraction delivered fraction
lost lost
duplicated duplicated
unseen sent, seen by no member
disconnects disconnects
refused refused by the server
server_rss_mib server RSS MiB (end)
server_threads server threads
bench_cpu_pct bench CPU % of one core
load_at_start machine load average at start"""
CHAT = "delivered_per_s delivered msg/s\n" + LATENCY.format("", "", "")
CHAT += "\nconnect_failed clients that could not connect"
CHAT += "\ncpu_ms_per_1000 server CPU ms per 1,000 delivered\n" + COMMON
IDLE = """\
idle_connected idle connections held
connect_failed idle connections failed
connects_per_s connects/s (TLS + login)
rss_per_conn_kib server RSS KiB per idle connection
threads_per_conn server threads per idle connection
fds_per_conn server fds per idle connection
"""
LOGINS = """\
logins_per_s logins/s
login_p50_ms login p50 ms (connect, TLS, login)
login_p99_ms login p99 ms
login_failed logins failed
"""
FILES = """\
file_mib file MiB (each way)
upload_mb_s upload MB/s (HTTPS, until the 201)
download_mb_s download MB/s
download_intact download intact (size, SHA-256)
rss_growth_mib server RSS growth MiB (peak, while moving)
"""
ROWS = {
    "fanout": CHAT,
    "rooms": CHAT,
    "idle": IDLE + LATENCY.format(*["small room "] * 3) + "\n" + COMMON,
    "logins": LOGINS + LATENCY.format(*["chat "] * 3) + "\n" + COMMON,
    "files": FILES + LATENCY.format(*["chat "] * 3) + "\n" + COMMON,
}


NO_RATIO = {"load_at_start", "delivered_fraction"}  # rows where peer/securechat means nothing


def fmt(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if key == "delivered_fraction":
            return f"{value:.5f}"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


# Counts of what went wrong: over rounds they add up (a loss in any round is a loss).
TOTALS = {"lost", "duplicated", "unseen", "disconnects", "refused", "connect_failed",
          "login_failed"}  # fmt: skip


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's results over rounds: medians, totals of failures, every round kept.

    One round is returned as it is. Otherwise a number is the median of the rounds that
    measured it (of whole numbers: the lower median, one of them; a key in
    :data:`TOTALS`: their sum), a flag is set if any round set it,
    ``events`` are added up, other values come from the first round that has them, and an
    ``error`` says which rounds failed.
    """
    if len(rounds) == 1:
        return rounds[0]
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for r in rounds for k in r):
        values = [r[key] for r in rounds if key in r and r[key] is not None]
        if key == "error":
            failed = [i + 1 for i, r in enumerate(rounds) if "error" in r]
            out[key] = f"round {', '.join(map(str, failed))} of {len(rounds)}: {values[0]}"
        elif not values:
            out[key] = None
        elif all(_numeric(v) for v in values):
            if key in TOTALS:
                out[key] = sum(values)
            elif all(isinstance(v, int) for v in values):  # a count stays a count
                out[key] = statistics.median_low(values)
            else:
                out[key] = statistics.median(values)
        elif all(isinstance(v, bool) for v in values):
            out[key] = any(values)
        elif all(isinstance(v, dict) for v in values):
            total: Counter[str] = Counter()
            for v in values:
                total.update(v)
            out[key] = dict(total)
        else:
            out[key] = values[0]
    out["rounds"] = rounds
    return out


def _spread(values: list[Any], shown: str, show: Callable[[Any], str]) -> str:
    """``shown (lowest-highest)`` when the rounds' values differ, else ``shown``."""
    values = [v for v in values if _numeric(v)]
    if len(values) < 2 or min(values) == max(values):
        return shown
    return f"{shown} ({show(min(values))}-{show(max(values))})"


def _ratios(key: str, peer: dict[str, Any], base: dict[str, Any]) -> list[float]:
    """peer/securechat of ``key``, round by round (both measured in the same round)."""
    pairs = zip(peer.get("rounds", [peer]), base.get("rounds", [base]), strict=False)
    return [
        p[key] / b[key]
        for p, b in pairs
        if _numeric(p.get(key)) and _numeric(b.get(key)) and b[key]
    ]


def table(heading: str, scenario: str, results: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per metric, a column per server, ratios to the first.

    The first column is securechat (over the first ``--transport``); each other column
    (a peer, or securechat over another transport) gets a ratio column ``other/first``.
    With repeated rounds (see :func:`combine`) a cell is the median and, when the rounds
    differ, their range; a ratio is the median of the rounds' ratios and their range.
    """
    names = list(results)
    first = names[0] if names else ""
    base = results.get(first, {})
    rounds = max((len(r.get("rounds", [r])) for r in results.values()), default=1)
    head = ["metric"]
    for name in names:
        head.append(name)
        if name != first and base:
            head.append(f"{name}/{first}")
    lines = [f"### {heading}", ""]
    if rounds > 1:
        lines += [
            f"{rounds} rounds, the servers interleaved: median (lowest-highest) of the rounds;"
            " what was lost, duplicated or failed is the total of all rounds.",
            "",
        ]
    lines += ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for key, _, label in (row.partition(" ") for row in ROWS[scenario].splitlines()):
        cells = [label]
        for name in names:
            r = results[name]
            shown = fmt(key, r.get(key))
            if key not in TOTALS:
                shown = _spread([x.get(key) for x in r.get("rounds", [])], shown,
                                lambda v, key=key: fmt(key, v))  # fmt: skip
            cells.append(shown)
            if name != first and base:
                ratios = [] if key in NO_RATIO else _ratios(key, r, base)
                median = f"{statistics.median(ratios):.2f}x" if ratios else ""
                cells.append(_spread(ratios, median, lambda v: f"{v:.2f}x"))
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    for name, r in results.items():
        if "error" in r:
            notes.append(f"- {name}: {r['error']}")
        if r.get("bench_bottleneck"):
            each = r.get("rounds", [r])
            when = "" if len(each) == 1 else (
                f" (median; at least {BOTTLENECK_PCT:g}% in "
                f"{sum(bool(x.get('bench_bottleneck')) for x in each)} of {len(each)} rounds)"
            )  # fmt: skip
            notes.append(
                f"- {name}: the load generator used {r['bench_cpu_pct']:g}% of one core{when}:"
                " it was the bottleneck, so these numbers are a lower bound"
            )
        if r.get("events"):
            notes.append(f"- {name}: events {r['events']}")
    return "\n".join([*lines, *([""] if notes else []), *notes]) + "\n"


def chart(path: Path, results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A PNG of latency percentiles per scenario and server; returns a one-line status."""
    try:
        import matplotlib  # an optional extra: imported only when asked

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "no chart: matplotlib is not installed (pip install 'securechat[bench]')"
    shown = [s for s in results if any(r.get("lat_p50_ms") for r in results[s].values())]
    if not shown:
        return "no chart: no latency was measured"
    cols = min(2, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for ax, scenario in zip(axes.flat, shown, strict=False):
        names = [n for n, r in results[scenario].items() if r.get("lat_p50_ms")]
        for i, pct in enumerate(("p50", "p90", "p99", "max")):
            values = [results[scenario][n].get(f"lat_{pct}_ms") or 0 for n in names]
            xs = [j + (i - 1.5) * 0.2 for j in range(len(names))]
            ax.bar(xs, values, width=0.2, label=pct)
        ax.set_xticks(range(len(names)), names)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"{scenario}: end-to-end latency")
        ax.set_ylabel("ms (log scale)")
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"
