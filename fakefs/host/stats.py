"""Live figures for the model's statistics (``fakefs.model.usage``), read
from /proc, with a short cache so that a burst of reads (``cat`` of every
file in a cgroup, cAdvisor's housekeeping, a ``watch``) costs one scan.

The cache window is ``DEFAULT_WINDOW_S`` (150 ms): figures are at most that
old, and a thread, process or machine file is read at most once per window.
Windows are taken whole: the cache is emptied when one ends, so within a
window every figure stays what it was (``epoch()`` names the window; the
model renders a statistics file once per window and change, see
``Node.render_key``), and ``now_ns()`` is the window's start.

Per thread (``/proc/<tid>/...``, tids are reachable there even when they are
not listed): ``schedstat`` gives the scheduler runtime in nanoseconds (what
cpuacct.usage counts); ``stat`` gives utime/stime (clock ticks), the CPU it
last ran on, its start time and, via ``status``, its thread group. Per process: ``status``
(RssAnon, RssFile, RssShmem, VmSwap) and ``stat`` (minflt, majflt).
Machine: ``/proc/stat`` (per-CPU times), ``/proc/meminfo``, ``/proc/vmstat``.

The root's CPU figures (kernel/sched/cpuacct.c, Linux 6.18): ``usage_user``
and ``usage_sys`` read ``kernel_cpustat`` (user + nice, system + irq +
softirq), which /proc/stat shows as it is (in ticks). ``usage`` reads the
root's own counter, which cpuacct_charge() raises from update_curr() by
every task's runtime on rq_clock_task: sum_exec_runtime, without steal
time (PARAVIRT_TIME_ACCOUNTING) and, on a kernel without
IRQ_TIME_ACCOUNTING such as this one, with the interrupts a task took. No
file in /proc adds that up (/proc/schedstat's rq_cpu_time needs
CONFIG_SCHEDSTATS, off here). The nearest figure is each CPU's time that
was neither idle, iowait nor stolen (``busy_time``: on a NO_HZ kernel idle
and iowait are measured, not sampled): it is the runtime plus what the CPU
did outside tasks while it would otherwise have been idle (interrupts, the
way into and out of idle) and early boot before its idle accounting began,
minus steal time that fell while idle. user + system, the tick samples, is
the other candidate; it misses or doubles whatever runs in step with the
tick (issue 17: 3.8% short of the real root on a CI run). Measured on this
machine (tests/test_stats.py, ``ROOT_USAGE_*``): the busy time ran 2.1 to
3.1 s above the real root (early boot), and grew faster than it only while
CPUs went idle, by up to 4.4% of the idle time; the tick samples ran 0.2
to 1% below its growth.
"""

from __future__ import annotations

import os
import time
from typing import Iterable, Mapping

from fakefs.host.procfs import (STAT_MAJFLT, STAT_MINFLT, STAT_PROCESSOR, STAT_STARTTIME, STAT_STIME, STAT_UTIME,
                               byte_values, read_text, stat_fields, status_value)
from fakefs.model.procviews import parse_stat_cpus
from fakefs.model.usage import MachineCpu, ProcessMemory, ThreadCpu

DEFAULT_WINDOW_S = 0.15
NSEC_PER_SEC = 1_000_000_000
# The bounds within which a CPU's /proc/stat fields must add up to the time
# since boot for its busy time to be trusted: tick-sampled fields lag by up
# to a tick per field; a CPU's accounting starts a moment after boot.
ACCOUNTED_LOW, ACCOUNTED_HIGH = 0.95, 1.05


def busy_time(fields: list[int], since_boot: int) -> int | None:
    """One CPU's time since boot that was neither idle, iowait nor stolen,
    from its /proc/stat fields in nanoseconds (user nice system idle iowait
    irq softirq steal): the nearest /proc comes to the root's cpuacct.usage.
    None when the fields do not account for the CPU's time since boot (all
    zero in gVisor; a CPU brought online late; a kernel without precise idle
    time would still add up, through its ticks)."""
    accounted = sum(fields[:8])
    if not ACCOUNTED_LOW * since_boot <= accounted <= ACCOUNTED_HIGH * since_boot:
        return None
    idle, iowait, steal = fields[3], fields[4], fields[7]
    return max(0, since_boot - idle - iowait - steal)


class LiveStats:
    def __init__(self, window_s: float = DEFAULT_WINDOW_S, proc: str = "/proc"):
        self.window_ns = int(window_s * NSEC_PER_SEC)
        self.proc = proc
        self.tick_ns = NSEC_PER_SEC // os.sysconf("SC_CLK_TCK")
        self._threads: dict[int, ThreadCpu | None] = {}  # tid -> figures, this window
        self._processes: dict[int, ProcessMemory | None] = {}
        self._tgid: dict[tuple[int, int], int] = {}  # (tid, start) -> tgid: a reused tid is another thread
        self._machine_cpu: tuple[MachineCpu | None] | None = None
        self._machine_memory: tuple[dict[str, int] | None] | None = None
        self._window_start: int | None = None
        self.scans = 0  # files read, for the benchmark and tests

    # -- the clock ---------------------------------------------------------------
    def epoch(self) -> int:
        """The current window (its start, on the clock below). Figures
        stay the same for as long as this does."""
        now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        start = self._window_start
        if start is None or now - start >= self.window_ns:
            self._window_start = start = now
            self._threads.clear()
            self._processes.clear()
            self._machine_cpu = self._machine_memory = None
        return start

    def now_ns(self) -> int:
        # The clock of /proc/<pid>/stat's starttime (ticks since boot): the
        # start of the window the figures are from.
        return self.epoch()

    # -- threads ------------------------------------------------------------------
    def _cached(self, cache: dict, keys: Iterable[int], read) -> dict:
        """``read(key)`` for each key, through ``cache`` (key -> value or
        None) within the window: a burst of reads costs one scan."""
        self.epoch()
        out: dict = {}
        for key in keys:
            if key in cache:
                value = cache[key]
            else:
                value = cache[key] = read(key)
            if value is not None:
                out[key] = value
        return out

    def threads(self, tids: Iterable[int]) -> Mapping[int, ThreadCpu]:
        return self._cached(self._threads, tids, self._read_thread)

    def _read_thread(self, tid: int) -> ThreadCpu | None:
        stat = read_text(f"{self.proc}/{tid}/stat")
        if stat is None:
            return None
        self.scans += 1
        try:
            f = stat_fields(stat)
            utime, stime = int(f[STAT_UTIME]), int(f[STAT_STIME])
            start, cpu = int(f[STAT_STARTTIME]), int(f[STAT_PROCESSOR])
        except (ValueError, IndexError):
            return None
        user, system = utime * self.tick_ns, stime * self.tick_ns
        sched = read_text(f"{self.proc}/{tid}/schedstat")
        try:
            runtime = int(sched.split()[0]) if sched else user + system
        except (ValueError, IndexError):
            runtime = user + system
        tgid = self._tgid.get((tid, start))
        if tgid is None:
            tgid_text = status_value(read_text(f"{self.proc}/{tid}/status") or "", "Tgid")
            tgid = int(tgid_text) if tgid_text else tid
            if len(self._tgid) > 65536:
                self._tgid.clear()
            self._tgid[(tid, start)] = tgid
        return ThreadCpu(tgid, runtime, user, system, cpu, start * self.tick_ns)

    # -- processes -----------------------------------------------------------------
    def processes(self, tgids: Iterable[int]) -> Mapping[int, ProcessMemory]:
        return self._cached(self._processes, tgids, self._read_process)

    def _read_process(self, tgid: int) -> ProcessMemory | None:
        status = read_text(f"{self.proc}/{tgid}/status")
        stat = read_text(f"{self.proc}/{tgid}/stat")
        if status is None or stat is None:
            return None
        self.scans += 1
        kb = byte_values(status, ("RssAnon", "RssFile", "RssShmem", "VmSwap"))
        try:
            f = stat_fields(stat)
            minflt, majflt = int(f[STAT_MINFLT]), int(f[STAT_MAJFLT])
        except (ValueError, IndexError):
            minflt = majflt = 0
        # Kernel threads have no mm: no Rss lines, nothing charged.
        return ProcessMemory(kb.get("RssAnon", 0), kb.get("RssFile", 0), kb.get("RssShmem", 0),
                             kb.get("VmSwap", 0), minflt, majflt)

    # -- the machine ------------------------------------------------------------------
    def machine_cpu(self) -> MachineCpu | None:
        self.epoch()
        if self._machine_cpu is None:
            self._machine_cpu = (self._read_machine_cpu(),)
        return self._machine_cpu[0]

    def _read_machine_cpu(self) -> MachineCpu | None:
        text = read_text(f"{self.proc}/stat")
        # After the read: the idle time it shows runs up to the moment it
        # was made, so the busy time is never short (see MachineCpu.busy_ns).
        since_boot = self.monotonic_ns()
        if text is None:
            return None
        self.scans += 1
        per: dict[int, tuple[int, int, int | None]] = {}
        for cpu, counters in parse_stat_cpus(text)[1].items():
            # user nice system idle iowait irq softirq steal ...
            v = [x * self.tick_ns for x in counters[:8]]
            per[cpu] = (v[0] + v[1], v[2] + v[5] + v[6], busy_time(v, since_boot))
        if not per:
            return None
        n = max(per) + 1
        busy = tuple(per.get(i, (0, 0, None))[2] for i in range(n))
        return MachineCpu(tuple(per.get(i, (0, 0, None))[0] for i in range(n)),
                          tuple(per.get(i, (0, 0, None))[1] for i in range(n)),
                          None if None in busy else busy)

    def monotonic_ns(self) -> int:
        # The clock of the kernel's idle accounting (tick-sched: ktime_get).
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def machine_memory(self) -> Mapping[str, int] | None:
        self.epoch()
        if self._machine_memory is None:
            self._machine_memory = (self._read_machine_memory(),)
        return self._machine_memory[0]

    def _read_machine_memory(self) -> dict[str, int] | None:
        text = read_text(f"{self.proc}/meminfo")
        if text is None:
            return None
        self.scans += 1
        m = byte_values(text, ("Buffers", "Cached", "SwapCached", "AnonPages", "AnonHugePages", "Shmem",
                              "Mapped", "Dirty", "Writeback", "SwapTotal", "SwapFree", "Active(anon)",
                              "Inactive(anon)", "Active(file)", "Inactive(file)", "Unevictable"))
        # NR_FILE_PAGES is Buffers + Cached + SwapCached in /proc/meminfo's
        # terms; mem_cgroup_usage(root) = NR_FILE_PAGES + NR_ANON_MAPPED.
        file_pages = m.get("Buffers", 0) + m.get("Cached", 0) + m.get("SwapCached", 0)
        out = {
            "usage": file_pages + m.get("AnonPages", 0),
            "cache": file_pages,
            "rss": m.get("AnonPages", 0),
            "rss_huge": m.get("AnonHugePages", 0),
            "shmem": m.get("Shmem", 0),
            "mapped_file": m.get("Mapped", 0),
            "dirty": m.get("Dirty", 0),
            "writeback": m.get("Writeback", 0),
            "swap": max(0, m.get("SwapTotal", 0) - m.get("SwapFree", 0)),
            "swapcached": m.get("SwapCached", 0),
            "inactive_anon": m.get("Inactive(anon)", 0),
            "active_anon": m.get("Active(anon)", 0),
            "inactive_file": m.get("Inactive(file)", 0),
            "active_file": m.get("Active(file)", 0),
            "unevictable": m.get("Unevictable", 0),
        }
        vm = read_text(f"{self.proc}/vmstat") or ""
        for line in vm.splitlines():
            key, _, value = line.partition(" ")
            if key in ("pgfault", "pgmajfault"):
                out[key] = int(value)
        return out
