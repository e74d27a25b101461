"""Writing results down: a section appended to docs/benchmarks.md, and the latency plot."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT

__all__ = ["append_markdown", "plot_latency"]

DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "img" / "latency.png"
_HEADER = """# Benchmarks

Measured figures, newest last. Sections are appended by `make bench` (`python -m bench`) and by
hand; each says when, on what machine, with which command. How they are measured:
`bench/__init__.py` and the docstring of each `bench/*.py` command.
"""


def plot_latency(result: dict[str, Any], path: str | Path = PLOT) -> Path:
    """Latency percentiles (log scale) versus offered rate, one colour per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = {"A": "tab:blue", "B": "tab:green", "C": "tab:red"}
    names = {"A": "A raw aiokafka", "B": "B Faust no-op", "C": "C pipeline"}
    styles = {"p50": "-", "p95": "--", "p99": "-.", "p999": ":"}
    for variant, data in result.get("variants", {}).items():
        steps = [s for s in data["steps"] if s["latency_ms"]["n"]]
        rates = [s["offered_rate"] for s in steps]
        for key, style in styles.items():
            values = [s["latency_ms"][key] for s in steps]
            ax.plot(
                rates,
                values,
                style,
                marker="o",
                color=colours.get(variant, "black"),
                label=f"{names.get(variant, variant)} {key.replace('p999', 'p99.9')}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (readings/s, single-reading messages)")
    ax.set_ylabel("end-to-end latency (ms): scheduled send → output consumed")
    ax.axhline(20, color="grey", linewidth=0.8)
    ax.axhline(5, color="grey", linewidth=0.8)
    ax.set_title(f"Latency vs offered rate ({time.strftime('%Y-%m-%d')}, nproc={os.cpu_count()})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _f(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _flat(variant: str, result: dict[str, Any]) -> str:
    if not result["ceiling"]:
        lowest = min((s["offered"] for s in result["steps"]), default=0.0)
        return f"{variant} below {_f(lowest)}/s (lowest rate tried)"
    limited = " (generator-limited)" if result["generator_limited"] else ""
    return f"{variant} {_f(result['ceiling'])}/s{limited}"


def append_markdown(summary: dict[str, Any], details: dict[str, Any], command: str) -> Path:
    """Append one dated section with the summary and the tables of every part that ran."""
    lines: list[str] = []
    versions = details.get("versions", {})
    env = details.get("env", {})
    lines += [
        "",
        f"## {time.strftime('%Y-%m-%d %H:%M')} — `{command}`",
        "",
        f"- machine: nproc={os.cpu_count()} ({versions.get('machine', '')}), shared with other "
        "work (figures on a busy 2-core box are noisy: compare within a run)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "machine"),
        f"- settings: acks={env.get('acks')}, linger {env.get('linger_ms')} ms, "
        f"{env.get('partitions')} partitions, store {env.get('store')}, "
        f"{'quick' if env.get('quick') else 'full'} run",
        "",
    ]
    ladder = details.get("ladder", {})
    for kind in ("single", "batched"):
        part = ladder.get(kind)
        if not part:
            continue
        lines += [
            f"**Ceiling ladder, {kind}** ({part['batch']} reading(s)/message, "
            f"{part['payload_bytes_mean']:,.0f} B/message, {part['devices']} devices, "
            f"{part['readings']:,} readings backlog; drain rate, median of rounds)",
            "",
            "| system | readings/s | worker CPU µs/reading |",
            "|---|---:|---:|",
        ]
        for v, name in (("A", "A raw aiokafka"), ("B", "B Faust no-op"), ("C", "C pipeline")):
            lines.append(
                f"| {name} | {_f(part['rate'][v])} | {_f(part['cpu_us_per_reading'][v], 1)} |"
            )
        lines += [
            "",
            f"C/A {_f(part['ratio_c_over_a'], 3)}, B/A {_f(part['ratio_b_over_a'], 3)}, "
            f"C/B {_f(part['ratio_c_over_b'], 3)}; lost {part['lost']}, "
            f"duplicates {part['duplicates']}.",
        ]
        flat = part.get("flat_lag")
        if flat:
            lines.append(
                "Flat-lag ceiling (highest offered rate with flat lag; paced single messages): "
                + ", ".join(_flat(v, r) for v, r in flat.items())
                + "."
            )
        lines.append("")
    peers = details.get("peers") or {}
    for kind, part in peers.get("kinds", {}).items():
        lines += [
            f"**Peers, {kind}** (`bench.peers`: {peers['devices']} devices x "
            f"{peers['readings_per_device']} readings, interleaved with C on the same broker; "
            "drain rate, median of rounds; C/peer = median of per-round ratios)",
            "",
            "| system | readings/s | CPU µs/reading | C/peer |",
            "|---|---:|---:|---:|",
        ]
        for system, rate in part["rate"].items():
            ratio = "" if system == "C" else _f(part["ratio"][system], 3)
            lines.append(
                f"| {system} | {_f(rate)} | {_f(part['cpu_us_per_reading'][system], 1)} | {ratio} |"
            )
        lines += ["", f"lost {part['lost']}, duplicates {part['duplicates']}.", ""]
    latency = details.get("latency")
    if latency:
        lines += [
            f"**Latency** (single-reading messages, {latency['devices']} devices, "
            f"{latency['step_s']:.0f} s per rate, first {latency['warmup_s']} s dropped; ms)",
            "",
            "| system | offered/s | sent/s | p50 | p95 | p99 | p99.9 | max | lost | dup |"
            " fault alerts: n, p50, p99 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for variant, data in latency["variants"].items():
            for s in data["steps"]:
                lat, al = s["latency_ms"], s["alert_latency_ms"]
                alerts = (
                    f"{al['n']}, {_f(al['p50'], 1)}, {_f(al['p99'], 1)}" if variant == "C" else ""
                )
                lines.append(
                    f"| {variant} | {_f(s['offered_rate'])} | {_f(s['achieved_rate'])} | "
                    f"{_f(lat['p50'], 1)} | {_f(lat['p95'], 1)} | {_f(lat['p99'], 1)} | "
                    f"{_f(lat['p999'], 1)} | {_f(lat['max'], 1)} | {s['lost']} | "
                    f"{s['duplicates']} | {alerts} |"
                )
        lines += ["", f"Plot: `{PLOT.relative_to(ROOT)}`.", ""]
    scaling = details.get("scaling")
    if scaling:
        lines += [
            f"**Scaling** ({scaling['kind']} messages; 2 cores also run the broker, generator and "
            "checker, so this mostly measures overhead)",
            "",
            "| workers | readings/s after generator | overall | worker CPU µs/reading "
            "| lost | dup |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in scaling["workers"]:
            lines.append(
                f"| {r['workers']} | {_f(r['rate_after_generator'])} | {_f(r['rate_overall'])} | "
                f"{_f(r['cpu_us_per_reading'])} | {r['lost']} | {r['duplicates']} |"
            )
        lines.append("")
    memory = details.get("memory")
    if memory:
        state = memory["state"]
        lines += [
            f"**Memory** ({memory['processed']:,} readings from {memory['devices']:,} devices, "
            f"{memory['batch']}/message, {memory.get('interval_s', 1)} s of event time apart): RSS "
            f"{memory['rss_start_mb']} MB at start, {memory.get('rss_at_20pct_mb', '—')} MB at "
            f"20 %, {memory['rss_after_warmup_mb']} MB after warm-up "
            f"({memory.get('warmup_fraction', 0.2):.0%}), {memory['rss_end_mb']} MB at the end "
            f"(max {memory['rss_max_after_warmup_mb']} MB): growth after warm-up "
            f"**{memory['rss_growth_pct']:+.1f} %** (from 20 %: "
            f"{memory.get('rss_growth_from_20pct_pct', float('nan')):+.1f} %). State per device "
            f"**{_f(state.get('state_bytes_mean'))} B** mean, {_f(state.get('state_bytes_max'))} B "
            f"max (changelog record {_f(state.get('changelog_bytes_mean'))} B); process-wide model "
            f"state {memory['model_state']}.",
            "",
        ]
    steps = details.get("steps")
    if steps:
        lines += [
            "**Per-step cost** (µs per reading, CPU, in-process; single = 1 reading per message "
            "and per device, batched = 100 readings of one device per message)",
            "",
            "| step | single | batched |",
            "|---|---:|---:|",
        ]
        for name, v in steps["rows"].items():
            cell = name.replace("|", "/")
            lines.append(f"| {cell} | {_f(v['single'], 2)} | {_f(v['batched'], 2)} |")
        lines.append("")
    lines += ["Summary (the last line `make bench` prints):", "", "```json"]
    import json

    from bench.common import plain

    lines += [json.dumps(plain(summary)), "```", ""]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    if not DOC.exists():
        DOC.write_text(_HEADER)
    with DOC.open("a") as out:
        out.write("\n".join(lines))
    return DOC
