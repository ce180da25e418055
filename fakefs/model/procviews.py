"""/proc files and /sys/devices/system/cpu/online as a process under cgroup
limits should see them: what lxcfs 5.0 (the last release with cgroup v1,
Debian's) shows with ``--enable-cfs``, in the kernel's formats.

Pure: the caller passes the machine's own files as text and the figures of
the reader's cgroups (parsed here from the control files' kernel text);
nothing here reads a file. Where no limit applies, a view is the machine's
file unchanged.

* meminfo: MemTotal is the smallest memory limit on the reader's cgroup path
  (``hierarchical_memory_limit``, capped by the machine's MemTotal);
  MemFree, MemAvailable, Cached, Active/Inactive, AnonPages, ... come from the
  cgroup's usage and ``memory.stat``; SwapTotal/SwapFree from memsw (the
  smaller of the memsw limit and the machine's swap); the kernel's slab
  figures and Buffers show 0; every other line is the machine's.
* CPUs: the reader's cpuset, cut to ceil(quota / period) of the CFS quota
  (lxcfs's ``--enable-cfs``), numbered 0..N-1: ``cpuinfo`` keeps the first N
  processor blocks of the cpuset, ``cpu/online`` is ``0-(N-1)``, and
  ``stat`` shows the cgroup's own CPU time spread over N CPUs
  (:class:`CpuViewHistory`: lxcfs's cpuview, which needs the previous
  reading of each cgroup).
* uptime: the age of the reader's PID namespace (the start of its init);
  idle is that age minus the CPU time of init's cgroup (lxcfs).
* swaps: a ``none`` line of the memsw allowance when swap can be used.
* diskstats: the cgroup's blkio counters per disk (requests and bytes; what
  blkio does not count shows 0); disks without I/O in the cgroup are left
  out (lxcfs).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping

KIB = 1024
NSEC_PER_SEC = 1_000_000_000

# The views: name -> the real file each is bind-mounted over.
VIEW_PATHS = {
    "meminfo": "/proc/meminfo",
    "cpuinfo": "/proc/cpuinfo",
    "stat": "/proc/stat",
    "uptime": "/proc/uptime",
    "loadavg": "/proc/loadavg",
    "swaps": "/proc/swaps",
    "diskstats": "/proc/diskstats",
    "cpu-online": "/sys/devices/system/cpu/online",
}
# Whose limits the views show: each reading process's cgroups (lxcfs), or
# the cgroups fakefs itself was started in (a node advertising its capacity).
VIEW_MODES = ("reader", "sandbox")
# Where the views are inside a fake cgroup tree's mount that serves them
# (the mount manager binds the files; consumers never see the directory).
VIEWS_DIR = ".procviews"
# The controllers whose figures the views read.
VIEW_CONTROLLERS = ("memory", "cpu", "cpuset", "cpuacct", "blkio")

# ---------------------------------------------------------------------------
# Parsing the kernel's text


def parse_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat) -> {key: value}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/PID/cgroup -> {controller or "name=X": path} (v1 lines only)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[1]:
            continue  # the v2 line "0::/path"
        for key in parts[1].split(","):
            out[key] = parts[2]
    return out


def hierarchies_of(text: str) -> list[str]:
    """The v1 hierarchies of a /proc/PID/cgroup text, as mount options
    (``cpu,cpuacct``, ``name=systemd``)."""
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[1]:
            out.append(parts[1])
    return out


def parse_usage_all(text: str, user_hz: int) -> dict[int, tuple[int, int]]:
    """cpuacct.usage_all (``cpu user system`` in ns) -> {cpu: (user, system)}
    in clock ticks, as lxcfs converts them."""
    out: dict[int, tuple[int, int]] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            cpu, user, system = int(parts[0]), int(parts[1]), int(parts[2])
        except ValueError:
            continue
        out[cpu] = (user * user_hz // NSEC_PER_SEC, system * user_hz // NSEC_PER_SEC)
    return out


def parse_rwstat(text: str) -> dict[tuple[int, int], dict[str, int]]:
    """blkio ``MAJ:MIN Op value`` lines -> {(maj, min): {Op: value}}."""
    out: dict[tuple[int, int], dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        try:
            out.setdefault((int(major), int(minor)), {})[parts[1]] = int(parts[2])
        except ValueError:
            continue
    return out


def line_rest(text: str, label: str) -> str | None:
    """What follows ``label`` (with its separator: ``MemTotal:``,
    ``hierarchical_memory_limit ``) on the first line that starts with it,
    found without splitting the rest of the text; None when no line does."""
    if text.startswith(label):
        start = len(label)
    else:
        at = text.find("\n" + label)
        if at < 0:
            return None
        start = at + 1 + len(label)
    end = text.find("\n", start)
    return text[start:end if end >= 0 else len(text)]


def line_value(text: str, label: str) -> int | None:
    """The number after ``label`` at the start of a line (line_rest): what
    every read of a view needs first."""
    rest = line_rest(text, label)
    parts = rest.split() if rest is not None else []
    try:
        return int(parts[0]) if parts else None
    except ValueError:
        return None


def meminfo_kb(text: str) -> dict[str, int]:
    """/proc/meminfo -> {label: value} (kB lines and plain counts)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        label, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts:
            try:
                out[label] = int(parts[0])
            except ValueError:
                continue
    return out


# ---------------------------------------------------------------------------
# Figures of the reader's cgroups


@dataclass(frozen=True)
class MemoryFigures:
    """One memory cgroup as its control files show it (bytes)."""

    limit: int  # hierarchical_memory_limit: the smallest limit on the path
    usage: int  # memory.usage_in_bytes
    stat: Mapping[str, int]  # memory.stat
    memsw_limit: int | None = None  # hierarchical_memsw_limit (None: no swap accounting)
    memsw_usage: int | None = None
    swappiness: int = 60

    def total(self, key: str) -> int:
        return self.stat.get(f"total_{key}", 0)


def stat_limits(stat_text: str) -> tuple[int, int | None]:
    """(hierarchical_memory_limit, hierarchical_memsw_limit or None) of a
    memory.stat text: the smallest limits on the cgroup's path."""
    limit = line_value(stat_text, "hierarchical_memory_limit ")
    return (1 << 63) if limit is None else limit, line_value(stat_text, "hierarchical_memsw_limit ")


def memory_is_limited(limit: int, memsw_limit: int | None, host_meminfo: str) -> bool:
    """A limit (memory or memory+swap) below what the machine has."""
    total = (line_value(host_meminfo, "MemTotal:") or 0) * KIB
    swap = (line_value(host_meminfo, "SwapTotal:") or 0) * KIB
    return limit < total or (memsw_limit is not None and memsw_limit < total + swap)


@dataclass(frozen=True)
class CpuFigures:
    """The CPUs a reader may use."""

    cpuset: frozenset[int]  # cpuset.effective_cpus of its cpuset cgroup
    # The CFS quota that allows the fewest CPUs on its cpu cgroup's path
    # (quota_us, period_us), or None without one.
    quota: tuple[int, int] | None = None

    def exact(self, nprocs: int) -> float | None:
        """lxcfs's exact_cpu_count(): quota / period (None: no quota)."""
        if self.quota is None:
            return None
        quota, period = self.quota
        return min(quota / period, float(nprocs))

    def visible(self, online: frozenset[int]) -> list[int]:
        """The real CPUs shown, in order: the first ceil(quota / period) of
        the cpuset's online CPUs (lxcfs's max_cpu_count())."""
        cpus = sorted((self.cpuset & online) or online)
        n = len(cpus)
        if self.quota is not None:
            quota, period = self.quota
            n = min(n, -(-quota // period))
        return cpus[:max(1, n)]


def binding_quota(quotas: list[tuple[int, int]]) -> tuple[int, int] | None:
    """Of the (cfs_quota_us, cfs_period_us) pairs on a cgroup's path, the one
    that allows the fewest CPUs (ceil(quota / period)); -1 means none."""
    best = None
    for quota, period in quotas:
        if quota <= 0 or period <= 0:
            continue
        if best is None or (math.ceil(quota / period), quota / period) < (math.ceil(best[0] / best[1]), best[0] / best[1]):
            best = (quota, period)
    return best


def cpus_are_limited(cpu: CpuFigures | None, online: frozenset[int]) -> bool:
    return cpu is not None and cpu.visible(online) != sorted(online)


# ---------------------------------------------------------------------------
# meminfo


def meminfo_line(label: str, kb: int) -> str:
    """A kB line as the kernel prints it: the label padded to 16 columns,
    the value right-aligned in 8 (show_val_kb)."""
    return f"{label + ':':<16}{kb:>8} kB\n"


def render_meminfo(host: str, mem: MemoryFigures | None) -> str:
    """/proc/meminfo for a reader whose memory cgroup shows ``mem``; the
    machine's file where no limit applies."""
    if mem is None or not memory_is_limited(mem.limit, mem.memsw_limit, host):
        return host
    host_kb = meminfo_kb(host)
    host_total = host_kb.get("MemTotal", 0)
    limit = min(mem.limit // KIB, host_total)
    usage = min(mem.usage // KIB, limit)
    cache = mem.total("cache") // KIB
    swap_total, swap_used = _swap(mem, host_kb)
    values = {
        "MemTotal": limit,
        "MemFree": limit - usage,
        "MemAvailable": min(limit, limit - usage + cache),
        "Buffers": 0,
        "Cached": cache,
        "SwapCached": 0,
        "Active": (mem.total("active_anon") + mem.total("active_file")) // KIB,
        "Inactive": (mem.total("inactive_anon") + mem.total("inactive_file")) // KIB,
        "Active(anon)": mem.total("active_anon") // KIB,
        "Inactive(anon)": mem.total("inactive_anon") // KIB,
        "Active(file)": mem.total("active_file") // KIB,
        "Inactive(file)": mem.total("inactive_file") // KIB,
        "Unevictable": mem.total("unevictable") // KIB,
        "SwapTotal": swap_total,
        "SwapFree": swap_total - swap_used,
        "Dirty": mem.total("dirty") // KIB,
        "Writeback": mem.total("writeback") // KIB,
        "AnonPages": max(0, mem.total("active_anon") + mem.total("inactive_anon") - mem.total("shmem")) // KIB,
        "Mapped": mem.total("mapped_file") // KIB,
        "Shmem": mem.total("shmem") // KIB,
        "Slab": 0,
        "SReclaimable": 0,
        "SUnreclaim": 0,
        "AnonHugePages": mem.total("rss_huge") // KIB,
        "ShmemHugePages": 0,
        "ShmemPmdMapped": 0,
    }
    out = []
    for line in host.splitlines(keepends=True):
        label = line.partition(":")[0]
        value = values.get(label)
        out.append(line if value is None or not line.rstrip().endswith(" kB") else meminfo_line(label, value))
    return "".join(out)


def _swap(mem: MemoryFigures, host_kb: Mapping[str, int]) -> tuple[int, int]:
    """(SwapTotal, used) in kB: lxcfs's get_swap_info() and SwapTotal rule.
    The total is the smaller of the memory+swap limit and the machine's swap
    (the kernel swaps as much as it wants, not only up to memsw - mem); with
    swappiness 0 the cgroup cannot swap."""
    if mem.memsw_limit is None or mem.memsw_usage is None:
        return 0, 0
    limit = min(mem.limit // KIB, host_kb.get("MemTotal", 0))
    swap_only = max(0, mem.memsw_limit - mem.limit) // KIB
    used = max(0, mem.memsw_usage - mem.usage) // KIB if swap_only else 0
    total = min(limit + swap_only, host_kb.get("SwapTotal", 0))
    used = min(used, total)
    if mem.swappiness == 0:
        total = used
    return total, used


# ---------------------------------------------------------------------------
# swaps

SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


def swaps_line(name: str, kind: str, size_kb: int, used_kb: int, prio: int) -> str:
    """One line as swap_show() prints it (name padded to 40 columns)."""
    pad = 40 - len(name) if len(name) < 40 else 1
    return (f"{name}{' ' * pad}{kind}\t{size_kb}\t{chr(9) if size_kb < 10000000 else ''}"
            f"{used_kb}\t{chr(9) if used_kb < 10000000 else ''}{prio}\n")


def render_swaps(host_swaps: str, host_meminfo: str, mem: MemoryFigures | None) -> str:
    """/proc/swaps: the header, and one ``none`` line of what the cgroup may
    swap (lxcfs), when that is more than nothing."""
    if mem is None or not memory_is_limited(mem.limit, mem.memsw_limit, host_meminfo):
        return host_swaps
    host_kb = meminfo_kb(host_meminfo)
    header = host_swaps.splitlines(keepends=True)[0] if host_swaps else SWAPS_HEADER
    total, used = _swap(mem, host_kb)
    if total <= 0:
        return header
    return header + swaps_line("none", "virtual", total, used, 0)


# ---------------------------------------------------------------------------
# CPUs: cpu/online and cpuinfo


def render_cpu_online(host: str, cpu: CpuFigures | None, online: frozenset[int]) -> str:
    if not cpus_are_limited(cpu, online):
        return host
    assert cpu is not None
    n = len(cpu.visible(online))
    return "0\n" if n == 1 else f"0-{n - 1}\n"


_PROCESSOR = re.compile(r"processor\s*:\s*(\d+)\s*$")


def render_cpuinfo(host: str, cpu: CpuFigures | None, online: frozenset[int]) -> str:
    """The processor blocks of the visible CPUs, renumbered from 0 (lxcfs's
    proc_cpuinfo_read); text before the first block is kept."""
    if not cpus_are_limited(cpu, online):
        return host
    assert cpu is not None
    visible = cpu.visible(online)
    out: list[str] = []
    printing, shown = True, 0
    for line in host.splitlines(keepends=True):
        m = _PROCESSOR.match(line)
        if m:
            if shown == len(visible):
                break
            printing = int(m.group(1)) in visible
            if printing:
                out.append(f"processor\t: {shown}\n")
                shown += 1
            continue
        if printing:
            out.append(line)
    return "".join(out)


# ---------------------------------------------------------------------------
# stat: lxcfs's cpuview


@dataclass
class CpuTimes:
    user: int = 0
    system: int = 0
    idle: int = 0


@dataclass
class _CgroupCpuHistory:
    usage: dict[int, CpuTimes] = field(default_factory=dict)  # last reading, per real CPU
    view: dict[int, CpuTimes] = field(default_factory=dict)  # what has been shown, per real CPU


def parse_stat_cpus(text: str) -> tuple[str, dict[int, list[int]], str]:
    """/proc/stat -> (the ``cpu `` line, {cpu: its 10 counters}, the lines
    after the per-CPU lines)."""
    lines = text.splitlines(keepends=True)
    per: dict[int, list[int]] = {}
    first = lines[0] if lines else ""
    i = 1
    while i < len(lines):
        m = re.match(r"cpu(\d+) (.*)", lines[i])
        if not m:
            break
        vals = [int(v) for v in m.group(2).split()]
        per[int(m.group(1))] = (vals + [0] * 10)[:10]
        i += 1
    return first, per, "".join(lines[i:])


class CpuViewHistory:
    """The per-cgroup memory lxcfs's /proc/stat view needs (cpuview.c): what
    each cgroup had used at its last reading and what was shown, so that the
    counters shown only grow, and the time the cgroup spent on CPUs beyond
    the N shown is moved onto the shown ones (up to what they could hold).
    Bounded: the least recently read cgroups are forgotten."""

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._nodes: OrderedDict = OrderedDict()

    def _node(self, key) -> tuple[_CgroupCpuHistory, bool]:
        node = self._nodes.get(key)
        fresh = node is None
        if fresh:
            node = self._nodes[key] = _CgroupCpuHistory()
            while len(self._nodes) > self.capacity:
                self._nodes.popitem(last=False)
        self._nodes.move_to_end(key)
        return node, fresh

    def render(self, key, host: str, usage: Mapping[int, tuple[int, int]], cpu: CpuFigures,
               online: frozenset[int]) -> str:
        """/proc/stat for a cgroup (``key``) whose cpuacct.usage_all gave
        ``usage`` ({cpu: (user, system)} in ticks) and whose CPUs are ``cpu``."""
        first, per, rest = parse_stat_cpus(host)
        cpuset = cpu.cpuset & online or online
        # This reading: the cgroup's time per CPU of its cpuset; a CPU's idle
        # is the machine's idle plus what others used it for.
        now: dict[int, CpuTimes] = {}
        for c, vals in per.items():
            if c not in cpuset:
                continue
            user, system = usage.get(c, (0, 0))
            all_used = sum(vals) - vals[3]
            idle = vals[3] + (all_used - user - system) if all_used >= user + system else vals[3]
            now[c] = CpuTimes(user, system, idle)
        node, fresh = self._node(key)
        if fresh or any(now[c].user < node.usage[c].user for c in now if c in node.usage):
            # a new (or re-created) cgroup: start showing from here
            node.usage = {c: CpuTimes(t.user, t.system, t.idle) for c, t in now.items()}
            node.view = {c: CpuTimes() for c in now}
        diff = {}
        for c, t in now.items():
            old = node.usage.get(c, CpuTimes(t.user, t.system, t.idle))
            diff[c] = CpuTimes(max(0, t.user - old.user), max(0, t.system - old.system), max(0, t.idle - old.idle))
            node.usage[c] = CpuTimes(t.user, t.system, t.idle)
            node.view.setdefault(c, CpuTimes())
        order = sorted(now)
        shown = [c for c in cpu.visible(online) if c in now]
        max_cpus = len(shown)
        total = sum(d.user + d.system + d.idle for d in diff.values())
        # Time used on CPUs that are not shown goes to the shown ones, each
        # filled up to a fair share of everything that passed (threshold).
        hidden = [c for c in order if c not in shown]
        user_surplus = sum(diff[c].user for c in hidden)
        system_surplus = sum(diff[c].system for c in hidden)
        threshold = total // len(order) * max_cpus if order else 0
        for c in shown:
            d = diff[c]
            for attr in ("user", "system"):
                if d.user + d.system >= threshold:
                    break
                free = min(threshold - d.user - d.system, d.idle)
                surplus = user_surplus if attr == "user" else system_surplus
                moved = min(free, surplus)
                setattr(d, attr, getattr(d, attr) + moved)
                d.idle -= moved
                if attr == "user":
                    user_surplus -= moved
                else:
                    system_surplus -= moved
        diff_sum = CpuTimes()
        max_idle_cpu = None
        for c in shown:
            v, d = node.view[c], diff[c]
            v.user += d.user
            v.system += d.system
            v.idle += d.idle
            diff_sum.user += d.user
            diff_sum.system += d.system
            diff_sum.idle += d.idle
            if max_idle_cpu is None or d.idle > diff[max_idle_cpu].idle:
                max_idle_cpu = c
        exact = cpu.exact(len(online))
        if exact is not None and exact < max_cpus and max_idle_cpu is not None:
            # A fractional quota (1.5 CPUs shown as 2): take the idle time
            # the missing fraction could not have had off the idlest CPU.
            delta = int((diff_sum.user + diff_sum.system + diff_sum.idle) * (1 - exact / max_cpus))
            v = node.view[max_idle_cpu]
            v.idle = max(0, v.idle - delta)
        lines = []
        sums = CpuTimes()
        for i, c in enumerate(shown):
            v = node.view[c]
            sums.user += v.user
            sums.system += v.system
            sums.idle += v.idle
            lines.append(f"cpu{i} {v.user} 0 {v.system} {v.idle} 0 0 0 0 0 0\n")
        head = f"cpu  {sums.user} 0 {sums.system} {sums.idle} 0 0 0 0 0 0\n"
        return head + "".join(lines) + rest


def render_stat(history: CpuViewHistory, key, host: str, usage: Mapping[int, tuple[int, int]] | None,
                cpu: CpuFigures | None, online: frozenset[int]) -> str:
    """/proc/stat for a reader: the machine's where its CPUs are not limited;
    else the cgroup's CPU time over the CPUs it is shown (the cpuview), or
    without cpuacct figures the machine's counters of those CPUs."""
    if not cpus_are_limited(cpu, online):
        return host
    assert cpu is not None
    if usage is not None:
        return history.render(key, host, usage, cpu, online)
    first, per, rest = parse_stat_cpus(host)
    shown = [c for c in cpu.visible(online) if c in per]
    sums = [sum(per[c][i] for c in shown) for i in range(10)]
    lines = [f"cpu{i} " + " ".join(map(str, per[c])) + "\n" for i, c in enumerate(shown)]
    return "cpu  " + " ".join(map(str, sums)) + "\n" + "".join(lines) + rest


# ---------------------------------------------------------------------------
# uptime


def render_uptime(age_s: float, busy_s: float) -> str:
    """lxcfs: the age of the reader's PID namespace (its init's age), and
    as idle that age minus the CPU time init's cgroup used."""
    idle = age_s - busy_s if age_s >= busy_s else age_s
    return f"{age_s:.2f} {idle:.2f}\n"


# ---------------------------------------------------------------------------
# diskstats

# Fields after the device name, in the kernel's order (diskstats_show, 5.5+).
DISKSTATS_FIELDS = ("reads", "reads_merged", "sectors_read", "read_ms", "writes", "writes_merged",
                    "sectors_written", "write_ms", "in_flight", "io_ms", "weighted_io_ms", "discards",
                    "discards_merged", "sectors_discarded", "discard_ms", "flushes", "flush_ms")


def render_diskstats(host: str, serviced: str | None, service_bytes: str | None) -> str:
    """The machine's disks (same lines, same field count) with the cgroup's
    blkio counts: requests from ``*io_serviced_recursive``, sectors from
    ``*io_service_bytes_recursive``; what blkio does not count (merges,
    times, requests in flight) is 0. Disks without I/O in the cgroup are left
    out, as lxcfs does."""
    ops = parse_rwstat(serviced or "")
    nbytes = parse_rwstat(service_bytes or "")
    out = []
    for line in host.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        try:
            major, minor = int(parts[0]), int(parts[1])
        except ValueError:
            continue
        count = len(parts) - 3
        o, b = ops.get((major, minor), {}), nbytes.get((major, minor), {})
        values = dict.fromkeys(DISKSTATS_FIELDS, 0)
        values.update(reads=o.get("Read", 0), writes=o.get("Write", 0), discards=o.get("Discard", 0),
                      sectors_read=b.get("Read", 0) // 512, sectors_written=b.get("Write", 0) // 512,
                      sectors_discarded=b.get("Discard", 0) // 512)
        fields = [values[name] for name in DISKSTATS_FIELDS[:count]] + [0] * max(0, count - len(DISKSTATS_FIELDS))
        if not any(fields):
            continue
        out.append(f"{major:4d} {minor:7d} {parts[2]} " + " ".join(str(v) for v in fields) + "\n")
    return "".join(out)


# ---------------------------------------------------------------------------
# loadavg: lxcfs's --enable-loadavg, sampled when read

FSHIFT = 11
FIXED_1 = 1 << FSHIFT
EXP_1, EXP_5, EXP_15 = 1884, 2014, 2037  # 1/exp(5s/1min), 1/exp(5s/5min), 1/exp(5s/15min)
LOAD_FREQ_S = 5


def calc_load(load: int, exp: int, active: int) -> int:
    """One 5 s step of the kernel's (and lxcfs's) fixed-point average."""
    active = active * FIXED_1 if active > 0 else 0
    new = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        new += FIXED_1 - 1
    return new // FIXED_1


@dataclass(frozen=True)
class TaskCount:
    active: int  # runnable or uninterruptible (R, D)
    total: int  # threads
    last_pid: int  # the highest


@dataclass
class _Load:
    at: float
    avenrun: list[int]
    count: TaskCount


class LoadHistory:
    """Per-cgroup load averages (lxcfs keeps them with a thread sampling
    every 5 s). Here each read advances the averages by the 5 s steps since
    the last one, all with the count sampled at the read, as the kernel
    catches up after a tickless idle (calc_global_nohz): between reads the
    count is not seen. A cgroup's averages start at 0, as in lxcfs."""

    MAX_STEPS = 15 * 60 // LOAD_FREQ_S * 4  # beyond an hour the averages are the count anyway

    def __init__(self, capacity: int = 4096):
        self.capacity = capacity
        self._nodes: OrderedDict = OrderedDict()

    def render(self, key, now_s: float, sample) -> str:
        """``sample()`` -> TaskCount of the cgroup now: the running/total and
        last PID fields are the count now, the averages step with it."""
        count = sample()
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = _Load(now_s, [0, 0, 0], count)
            while len(self._nodes) > self.capacity:
                self._nodes.popitem(last=False)
        self._nodes.move_to_end(key)
        node.count = count
        steps = int((now_s - node.at) // LOAD_FREQ_S)
        for _ in range(min(steps, self.MAX_STEPS)):
            node.avenrun = [calc_load(node.avenrun[0], EXP_1, count.active),
                            calc_load(node.avenrun[1], EXP_5, count.active),
                            calc_load(node.avenrun[2], EXP_15, count.active)]
        node.at += max(0, steps) * LOAD_FREQ_S
        return format_loadavg(node.avenrun, node.count)


def format_loadavg(avenrun: list[int], count: TaskCount) -> str:
    """/proc/loadavg's format (loadavg_proc_show): rounded to 1/100."""
    parts = []
    for load in avenrun:
        load += FIXED_1 // 200
        parts.append(f"{load >> FSHIFT}.{((load & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}")
    return f"{' '.join(parts)} {count.active}/{count.total} {count.last_pid}\n"
