"""Live statistics: what the real processes in each fake cgroup use.

The model stays pure: figures come from a :class:`StatsSource` the model
holds as ``model.stats`` (the daemon sets ``fakefs.host.stats.LiveStats``, which
reads /proc; tests set :class:`FixedStats`; a model without one keeps the
stored figures only, as before). Controllers call :func:`sync` before they
render a live file; it turns the source's per-thread and per-process
figures into the kernel's per-cgroup counters:

* CPU: every sync charges each member thread's runtime, user and system
  time *since the previous sync* to the cgroup it is in now (and, through
  ``Cpuacct.charge``, to every ancestor), on the CPU it last ran on. Charges
  stay when the thread exits or moves, so the counters never go backwards,
  as the scheduler's. A thread is first only measured (no charge): the time
  it used before fakefs saw it in a cgroup is not that cgroup's — unless it
  was born since the previous sync (then all its time is). Moving a
  thread syncs first (``can_attach``), so its earlier time stays with the
  group it leaves. What a thread uses between the last sync and its exit is
  not seen (at most the time between reads).
* memory: a process's resident memory (anon, file, shmem) and swap count in
  the cgroup its thread-group leader is in now — gauges that drop when it
  exits; max_usage (the watermark) keeps the peak the syncs saw. Fault
  counts (pgfault, pgmajfault) are events: charged as deltas, never lost.
  The kernel leaves pages charged where they were faulted in when a task
  moves (v1 no longer moves charges); fakefs does not know where a page was
  faulted and counts them where the process is.
* the root (the kernel's root cgroup, not a subtree top) shows the machine:
  memory from /proc/meminfo as mem_cgroup_usage() does for the root
  (file pages + anon), cpuacct from /proc/stat (root_cpuacct's cpustat is
  kernel_cpustat). Its local memory figures are the machine's minus what
  its fake descendants hold, so its ``total_*`` figures are the machine's.
* cpu.stat: fakefs does not throttle anything; for a group with a CFS quota
  it counts what the bandwidth timer would have counted for the CPU time
  the group really used (see :func:`_account_bandwidth`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Protocol

if TYPE_CHECKING:
    from fakefs.model.cgroup import Cgroup, Hierarchy

NSEC_PER_USEC = 1000


@dataclass(frozen=True)
class ThreadCpu:
    """One thread's CPU use since it started, in nanoseconds."""

    tgid: int
    runtime_ns: int  # scheduler runtime (sum_exec_runtime): what cpuacct.usage counts
    user_ns: int = 0
    system_ns: int = 0
    cpu: int = 0  # the CPU it last ran on: where its new time is charged
    # When it started, on the source's clock (None: unknown). A thread born
    # since the last sync ran only where it is now (it started in its
    # parent's cgroup): all its time is charged when it is first seen.
    start_ns: int | None = None


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory in bytes, and its fault counts."""

    anon: int = 0
    file: int = 0
    shmem: int = 0
    swap: int = 0
    minflt: int = 0
    majflt: int = 0


@dataclass(frozen=True)
class MachineCpu:
    """Whole-machine CPU time per CPU (index = CPU number), nanoseconds.

    ``user_ns``/``system_ns``: kernel_cpustat as cpuacct splits it (user +
    nice, system + irq + softirq), which is what the root's usage_user,
    usage_sys and stat show. ``busy_ns``: the root's cpuacct.usage, the
    scheduler runtime of every task (cpuacct_charge from update_curr, on
    rq_clock_task), as near as /proc tells it: the CPU's time that was
    neither idle, iowait nor stolen (None where that is not known; then
    user + system stand in: see fakefs/host/stats.py for why and how near
    each comes)."""

    user_ns: tuple[int, ...]
    system_ns: tuple[int, ...]
    busy_ns: tuple[int, ...] | None = None

    def runtime_ns(self, cpu: int) -> int:
        if self.busy_ns is not None:
            return self.busy_ns[cpu]
        return self.user_ns[cpu] + self.system_ns[cpu]


class StatsSource(Protocol):
    """Where live figures come from. Implementations may cache briefly;
    :func:`sync` only needs each call to return the figures as of roughly
    ``now_ns()``."""

    def now_ns(self) -> int:
        """A monotonic clock (the time the returned figures are as of)."""
        ...

    def epoch(self) -> object:
        """A value that stays the same for as long as every figure does (a
        cache window); None where figures may change at any moment."""
        ...

    def threads(self, tids: Iterable[int]) -> Mapping[int, ThreadCpu]:
        """Figures of those of ``tids`` that are alive."""
        ...

    def processes(self, tgids: Iterable[int]) -> Mapping[int, ProcessMemory]:
        """Figures of those of ``tgids`` that are alive."""
        ...

    def machine_cpu(self) -> MachineCpu | None: ...

    def machine_memory(self) -> Mapping[str, int] | None:
        """memory.stat keys of the whole machine (sizes in bytes, events as
        counts) plus ``usage`` (bytes, mem_cgroup_usage of the root)."""
        ...


class NullStats:
    """No live figures: only what was stored or charged explicitly shows."""

    def now_ns(self) -> int:
        return 0

    def epoch(self) -> object:
        return 0

    def threads(self, tids: Iterable[int]) -> Mapping[int, ThreadCpu]:
        return {}

    def processes(self, tgids: Iterable[int]) -> Mapping[int, ProcessMemory]:
        return {}

    def machine_cpu(self) -> MachineCpu | None:
        return None

    def machine_memory(self) -> Mapping[str, int] | None:
        return None


@dataclass
class FixedStats:
    """Figures set by hand (tests, demos): change the dicts, advance now."""

    now: int = 0
    thread_figures: dict[int, ThreadCpu] = field(default_factory=dict)
    process_figures: dict[int, ProcessMemory] = field(default_factory=dict)
    cpu: MachineCpu | None = None
    memory: dict[str, int] | None = None
    calls: int = 0  # how many thread scans were asked for

    def now_ns(self) -> int:
        return self.now

    def epoch(self) -> object:
        return None  # tests change the figures in place

    def threads(self, tids: Iterable[int]) -> Mapping[int, ThreadCpu]:
        self.calls += 1
        return {t: self.thread_figures[t] for t in tids if t in self.thread_figures}

    def processes(self, tgids: Iterable[int]) -> Mapping[int, ProcessMemory]:
        return {t: self.process_figures[t] for t in tgids if t in self.process_figures}

    def machine_cpu(self) -> MachineCpu | None:
        return self.cpu

    def machine_memory(self) -> Mapping[str, int] | None:
        return self.memory


# -- per-hierarchy bookkeeping ----------------------------------------------------
@dataclass
class BandwidthStat:
    """cpu.stat counters of one group, plus time and runtime not yet
    accounted to whole periods."""

    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_ns: int = 0
    pending_ns: int = 0  # elapsed time not yet cut into periods
    pending_runtime_ns: int = 0
    accounted_ns: int = 0  # the sync the elapsed time is counted up to


@dataclass
class HierarchyUsage:
    synced_ns: int | None = None
    # What the last sync was as of: (model generation, process events,
    # source epoch); a sync with the same has nothing to do.
    synced_at: tuple | None = None
    threads: dict[int, ThreadCpu] = field(default_factory=dict)  # as of the last sync
    faults: dict[int, tuple[int, int]] = field(default_factory=dict)  # tgid -> (minflt, majflt)
    bandwidth: dict[int, BandwidthStat] = field(default_factory=dict)  # by cgroup serial
    # Groups whose runtime is not yet cut into periods (visited every sync).
    bandwidth_pending: dict[int, "Cgroup"] = field(default_factory=dict)


_USAGE: "weakref.WeakKeyDictionary[Hierarchy, HierarchyUsage]" = weakref.WeakKeyDictionary()


def usage_of(h: "Hierarchy") -> HierarchyUsage:
    u = _USAGE.get(h)
    if u is None:
        u = _USAGE[h] = HierarchyUsage()
    return u


def source_of(h: "Hierarchy") -> StatsSource | None:
    return h.model.stats


def synced(reader: Callable[["Cgroup"], str]) -> Callable[["Cgroup"], str]:
    """Wrap a control file's reader so that it syncs its hierarchy first."""

    def read(cg: "Cgroup") -> str:
        sync(cg.hierarchy)
        return reader(cg)

    return read


def sync(h: "Hierarchy", moving: Iterable[int] = ()) -> None:
    """Bring the hierarchy's counters up to the source's figures. ``moving``:
    tids about to be attached somewhere, measured now so that only their
    time from here on is charged to the new group."""
    source = source_of(h)
    if source is None:
        return
    u = usage_of(h)
    epoch = source.epoch()
    at = None if epoch is None else (h.model.generation, h.model.process_events, epoch)
    if at is not None and at == u.synced_at and not moving:
        return  # nothing changed since the last sync: the same figures
    u.synced_at = at
    names = {c.name for c in h.controllers}
    members = {t: cg for t, cg in list(h.placed.items()) if not cg.removed}
    if names & {"cpu", "cpuacct"}:
        tids = set(members) | set(moving)
        _account_cpu(h, u, source, members, source.threads(tids), source.now_ns())
    for controller in h.controllers:
        controller.account_live(h, source, members)


def live_task_count(cg: "Cgroup") -> int | None:
    """pids.current from the source: the member threads of ``cg`` and its
    descendants that are alive. None without a source (or for a subtree
    top, whose unplaced members are every other task of the machine): the
    caller counts from the process table."""
    h = cg.hierarchy
    source = source_of(h)
    if source is None or isinstance(source, NullStats) or cg.parent is None:
        return None
    tids = [t for t, where in list(h.placed.items()) if where is cg or cg in where.ancestors()]
    return len(source.threads(tids)) if tids else 0


# -- CPU --------------------------------------------------------------------------------
def _account_cpu(h, u: HierarchyUsage, source: StatsSource, members: dict, now: Mapping[int, ThreadCpu],
                 now_ns: int) -> None:
    cpuacct = h.controller("cpuacct")
    ncpu = h.model.host.nr_cpu_ids
    runtime_by_group: dict[int, int] = {}
    ran: dict[int, "Cgroup"] = {}
    for tid, cur in now.items():
        prev = u.threads.get(tid)
        if prev is None or prev.tgid != cur.tgid or cur.runtime_ns < prev.runtime_ns \
                or prev.start_ns != cur.start_ns:
            # First seen (or the tid was reused): measure only, unless it
            # was born since the last sync.
            if cur.start_ns is None or u.synced_ns is None or cur.start_ns < u.synced_ns:
                continue
            prev = ThreadCpu(cur.tgid, 0)
        d_run = cur.runtime_ns - prev.runtime_ns
        d_user = max(0, cur.user_ns - prev.user_ns)
        d_sys = max(0, cur.system_ns - prev.system_ns)
        if not (d_run or d_user or d_sys):
            continue
        cg = members.get(tid, h.root)
        if cpuacct is not None:
            cpuacct.charge(cg, min(max(cur.cpu, 0), ncpu - 1), d_user, d_sys, runtime_ns=d_run)
        node = cg
        while node is not None:
            runtime_by_group[node.serial] = runtime_by_group.get(node.serial, 0) + d_run
            ran[node.serial] = node
            node = node.parent
    # Threads not seen now have exited: what they used until the last sync
    # is charged already and stays.
    u.threads = dict(now)
    if cpuacct is not None and h.root.is_root:
        machine = source.machine_cpu()
        if machine is not None:
            for cpu, t in enumerate(cpuacct.state(h.root).percpu):
                if cpu < len(machine.user_ns):
                    t.user, t.system = machine.user_ns[cpu], machine.system_ns[cpu]
                    # The kernel's counter never goes back; an estimate read
                    # a moment later may (by a /proc/stat rounding).
                    t.usage = max(t.usage, machine.runtime_ns(cpu))
    if h.controller("cpu") is not None:
        # Only groups that ran, or have runtime waiting for a whole period:
        # a group's idle time counts nothing, and is caught up when it next
        # runs (the same counts as visiting it at every sync).
        for serial, cg in {**u.bandwidth_pending, **ran}.items():
            _account_bandwidth(h, u, cg, now_ns, runtime_by_group.get(serial, 0))
    u.synced_ns = now_ns


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _account_bandwidth(h, u: HierarchyUsage, cg, now_ns: int, runtime_ns: int) -> None:
    """cpu.stat for a group with a CFS quota, from the CPU time its subtree
    used. The bandwidth timer counts a period when the group ran in it
    (nr_periods) and a throttle when the group ran out of quota in it.
    fakefs only sees totals between syncs: over the whole periods elapsed
    (P), the group needed ceil(runtime / quota) periods' quota; it counts
    min(P, that) periods, and when the runtime exceeds P * quota the excess
    is time the quota would have cut: added to throttled_time, with
    min(P, ceil(excess / quota)) throttled periods. A group without a quota
    counts nothing (the kernel's cfs_bandwidth timer is idle)."""
    st = h.controller("cpu").state(cg)
    if st.quota_us < 0 or cg.removed:
        u.bandwidth.pop(cg.serial, None)
        u.bandwidth_pending.pop(cg.serial, None)
        return
    period = st.period_us * NSEC_PER_USEC
    quota = st.quota_us * NSEC_PER_USEC
    bw = u.bandwidth.get(cg.serial)
    if bw is None:
        # Its clock starts with the interval in which it first ran.
        bw = u.bandwidth[cg.serial] = BandwidthStat(accounted_ns=u.synced_ns if u.synced_ns is not None else now_ns)
    # Syncs it was not visited at (idle, nothing pending): whole periods
    # passed count nothing, so only the time into the current one remains.
    previous = u.synced_ns if u.synced_ns is not None else now_ns
    if bw.accounted_ns < previous:
        bw.pending_ns = (bw.pending_ns + previous - bw.accounted_ns) % period
    bw.pending_ns += max(0, now_ns - max(previous, bw.accounted_ns))
    bw.accounted_ns = now_ns
    bw.pending_runtime_ns += runtime_ns
    periods = bw.pending_ns // period
    if periods == 0:
        if bw.pending_runtime_ns:
            u.bandwidth_pending[cg.serial] = cg
        return
    run = bw.pending_runtime_ns
    bw.pending_ns -= periods * period
    bw.pending_runtime_ns = 0
    u.bandwidth_pending.pop(cg.serial, None)
    if run == 0:
        return
    bw.nr_periods += min(periods, _ceil_div(run, quota))
    excess = run - periods * quota
    if excess > 0:
        bw.nr_throttled += min(periods, _ceil_div(excess, quota))
        bw.throttled_ns += excess


def bandwidth_stat(cg) -> BandwidthStat:
    if cg.hierarchy.controller("cpu").state(cg).quota_us < 0:
        return BandwidthStat()
    return usage_of(cg.hierarchy).bandwidth.get(cg.serial) or BandwidthStat()
