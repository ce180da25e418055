"""The machine a run came from, and the results as a Markdown table."""

from __future__ import annotations

import datetime
import os
import platform

TARGET_NAMES = {"fuse": "fakefs fuse (pyfuse3)", "fuse-raw": "fakefs fuse-raw", "tmpfs-backend": "fakefs tmpfs backend",
                "lxcfs": "lxcfs", "kernel": "kernel cgroupfs", "tmpfs": "a tmpfs file"}
RATIOS = ("fuse/lxcfs", "fuse/kernel", "fuse-raw/lxcfs", "fuse-raw/kernel")


def machine_info(lxcfs_version: str) -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        import pyfuse3

        pyfuse3_version = pyfuse3.__version__
    except Exception:  # noqa: BLE001 - only informative
        pyfuse3_version = "unavailable"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyfuse3": pyfuse3_version,
        "lxcfs": lxcfs_version,
    }


def _num(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "s":
        return f"{v:.3f}"
    if unit in ("µs",):
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}"
    if unit == "MB":
        return f"{v:.1f}"
    return f"{v:,.0f}"


def _cell(s: dict | None, unit: str) -> str:
    if not s:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return _num(s["median"], unit)
    return f"{_num(s['median'], unit)} ({_num(s['min'], unit)}–{_num(s['max'], unit)})"


def _ratio(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}"


# The rows the README shows (the full table is in bench-results/latest.md).
README_ROWS = ("read_small_1", "read_small_4", "read_live_1", "read_live_4", "write", "mkdir", "mount")


def table(results: dict, compact: bool = False) -> str:
    """The results as Markdown; ``compact``: the README's selection of rows."""
    m = results["machine"]
    st = results["settings"]
    targets = list(TARGET_NAMES)
    lines = [
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"Python {m['python']}, pyfuse3 {m['pyfuse3']}, lxcfs {m['lxcfs']}; {m['date']}; "
        f"load average {m.get('load_average', '?')}.",
        f"Each figure: median (min–max) of {st['reps']} repetitions of {st['duration_s']:g} s; ratios are of "
        "medians (for ops/s higher is better, for µs, s and MB lower is better).",
        "",
        "| measure | unit | " + " | ".join(TARGET_NAMES[t] for t in targets) + " | " + " | ".join(RATIOS) + " |",
        "|---|---|" + "---|" * (len(targets) + len(RATIOS)),
    ]
    rows = results["rows"]
    if compact:
        rows = [r for r in rows if r["key"] in README_ROWS]
    for row in rows:
        v = row["values"]
        lines.append(f"| {row['title']} | {row['unit']} | "
                     + " | ".join(_cell(v.get(t), row["unit"]) for t in targets) + " | "
                     + " | ".join(_ratio(row["ratios"].get(r)) for r in RATIOS) + " |")
    scale = results.get("scale_rows") or []
    if compact:
        sizes = st["sizes"]
        keep = {f"scale_{k}_{n}" for k in ("read", "listdir", "live", "stat") for n in sizes} | \
            {f"scale_rss_{max(sizes)}"}
        scale = [r for r in scale if r["key"] in keep]
    if scale:
        lines += ["", "Scale: one daemon per backend and size, with that many cgroups (cpu,cpuacct/kubepods/cN); "
                  "the per-cgroup operations act on one of them. Ratios: to the same measure at the smallest size.",
                  "", "| measure | unit | fakefs fuse (pyfuse3) | fakefs fuse-raw | fuse vs smallest | "
                  "fuse-raw vs smallest |", "|---|---|---|---|---|---|"]
        for row in scale:
            v, r = row["values"], row["ratios"]
            lines.append(f"| {row['title']} | {row['unit']} | {_cell(v.get('fuse'), row['unit'])} | "
                         f"{_cell(v.get('fuse-raw'), row['unit'])} | {_ratio(r.get('fuse'))} | "
                         f"{_ratio(r.get('fuse-raw'))} |")
    if results.get("goals"):
        load = results["goals"][0].get("load", m.get("load_average", "?"))
        lines += ["", f"Targets (issue 14; per-cgroup costs: issue 12), load average {load}: "
                  "with a load above the CPU count the figures are noisy, compare ratios within one run.",
                  "", "| goal | measured | met |", "|---|---|---|"]
        for g in results["goals"]:
            met = "–" if g["met"] is None else ("yes" if g["met"] else "**no**")
            lines.append(f"| {g['goal']} | {g['measured']} | {met} |")
    if results.get("checks") and not compact:
        lines += [""] + [f"- {c['check']}: {'yes' if c['ok'] else '**no**'}" for c in results["checks"]]
    if results.get("notes") and not compact:
        lines += [""] + [f"- note: {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"
