"""cpuacct controller (kernel/sched/cpuacct.c ``files``).

Every file exists on the root and on children. Per possible CPU the kernel
keeps a scheduler runtime counter (``cpuusage``) and a ``kernel_cpustat``
(user+nice, system+irq+softirq); both are charged to the task's group and
every ancestor at the time the CPU is used (cpuacct_charge,
cpuacct_account_field), so a parent keeps its children's time after they are
removed. ``usage`` is the runtime, ``usage_user``/``usage_sys`` come from
cpustat: they need not add up to ``usage`` (the real root shows that).

Measured on Linux 6.18: ``cpuacct.usage`` takes kstrtoull without stripping
(``0``, ``0\\n``, ``00``, ``0x0``, ``+0`` reset; ``1``, ``-0``, `` 0``,
``0 `` are EINVAL; past u64 ERANGE); writing 0 zeroes both counters of
this group only. On the root the reset is silently ignored
(cpuacct_cpuusage_write: "Don't allow to reset global kernel_cpustat").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fakefs.model.cftype import ControlFile, Controller, WriteContext
from fakefs.model.errors import einval
from fakefs.model.kparse import kstrtoull
from fakefs.model.usage import sync, synced

NSEC_PER_SEC = 1_000_000_000


@dataclass
class CpuTimes:
    """One CPU's counters for one group, in nanoseconds."""

    usage: int = 0  # scheduler runtime (cpuusage)
    user: int = 0  # CPUTIME_USER + CPUTIME_NICE
    system: int = 0  # CPUTIME_SYSTEM + CPUTIME_IRQ + CPUTIME_SOFTIRQ


@dataclass
class CpuacctState:
    percpu: list[CpuTimes] = field(default_factory=list)
    # cgroup->prev_cputime: what cpuacct.stat last showed (utime, stime), ns.
    prev_cputime: tuple[int, int] = (0, 0)


def cputime_adjust(utime: int, stime: int, rtime: int, prev: tuple[int, int]) -> tuple[int, int]:
    """kernel/sched/cputime.c cputime_adjust(): scale the tick-sampled
    user/system split so that it adds up to the scheduler runtime, never
    letting either go backwards. Returns the new (utime, stime) shown."""
    prev_u, prev_s = prev
    if prev_u + prev_s >= rtime:
        return prev
    if stime == 0:
        utime = rtime
    elif utime == 0:
        stime = rtime
    else:
        stime = min(stime * rtime // (stime + utime), rtime)
    stime = max(stime, prev_s)
    utime = rtime - stime
    if utime < prev_u:
        utime = prev_u
        stime = rtime - utime
    return utime, stime


def nsec_to_clock_t(ns: int, user_hz: int) -> int:
    """kernel/time/time.c nsec_to_clock_t()."""
    if NSEC_PER_SEC % user_hz == 0:
        return ns // (NSEC_PER_SEC // user_hz)
    if user_hz % 512 == 0:
        return ns * user_hz // 512 // (NSEC_PER_SEC // 512)
    return ns * 9 // ((9 * NSEC_PER_SEC + user_hz // 2) // user_hz)


class Cpuacct(Controller):
    name = "cpuacct"

    def new_state(self, cgroup):
        ncpu = cgroup.hierarchy.model.host.nr_cpu_ids
        return CpuacctState([CpuTimes() for _ in range(ncpu)])

    # -- feeding the counters -------------------------------------------------
    def charge(self, cgroup, cpu: int, user_ns: int = 0, system_ns: int = 0,
               runtime_ns: int | None = None) -> None:
        """Account CPU time used by a task of ``cgroup`` on ``cpu``: to the
        group and all its ancestors, root included, as the scheduler does.
        ``runtime_ns`` defaults to user + system."""
        runtime = user_ns + system_ns if runtime_ns is None else runtime_ns
        node = cgroup
        while node is not None:
            t = self.state(node).percpu[cpu]
            t.usage += runtime
            t.user += user_ns
            t.system += system_ns
            node = node.parent

    def can_attach(self, cgroup, tids) -> None:
        """Never refuses. With live statistics, measure the moving threads
        now: their time so far stays with the group they leave."""
        sync(cgroup.hierarchy, moving=tids)

    def reset(self, cgroup) -> None:
        """cpuusage_write(0): zero this group's counters; a no-op on the root."""
        if cgroup.is_root:
            return
        for t in self.state(cgroup).percpu:
            t.usage = t.user = t.system = 0

    # -- the figures, one function each (live statistics: model/usage.py) -------
    def percpu_usage(self, cgroup) -> list[int]:
        return [t.usage for t in self.state(cgroup).percpu]

    def percpu_user(self, cgroup) -> list[int]:
        return [t.user for t in self.state(cgroup).percpu]

    def percpu_system(self, cgroup) -> list[int]:
        return [t.system for t in self.state(cgroup).percpu]

    def usage(self, cgroup) -> int:
        return sum(self.percpu_usage(cgroup))

    def usage_user(self, cgroup) -> int:
        return sum(self.percpu_user(cgroup))

    def usage_sys(self, cgroup) -> int:
        return sum(self.percpu_system(cgroup))


CPUACCT = CONTROLLER = Cpuacct()


def _percpu_line(values: list[int]) -> str:
    # __cpuacct_percpu_seq_show: "%llu " per possible CPU, then "\n".
    return "".join(f"{v} " for v in values) + "\n"


def _read_all(cg) -> str:
    """cpuacct_all_seq_show."""
    lines = ["cpu user system\n"]
    for cpu, (u, s) in enumerate(zip(CPUACCT.percpu_user(cg), CPUACCT.percpu_system(cg))):
        lines.append(f"{cpu} {u} {s}\n")
    return "".join(lines)


def _read_stat(cg) -> str:
    """cpuacct_stats_show: the cpustat sums, scaled by cputime_adjust() to
    add up to the runtime (measured: the real root's user + system equals
    cpuacct.usage, not usage_user + usage_sys), in USER_HZ ticks."""
    hz = cg.hierarchy.model.host.user_hz
    st = CPUACCT.state(cg)
    st.prev_cputime = cputime_adjust(CPUACCT.usage_user(cg), CPUACCT.usage_sys(cg), CPUACCT.usage(cg),
                                     st.prev_cputime)
    utime, stime = st.prev_cputime
    return f"user {nsec_to_clock_t(utime, hz)}\nsystem {nsec_to_clock_t(stime, hz)}\n"


def _write_usage(cg, text: str, ctx: WriteContext) -> None:
    # write_u64 path of cgroup_file_write: kstrtoull.
    if kstrtoull(text) != 0:
        raise einval("only 0 resets cpuacct.usage")
    CPUACCT.reset(cg)


CPUACCT.files = (
    ControlFile("cpuacct.usage", 0o644, synced(lambda cg: f"{CPUACCT.usage(cg)}\n"), _write_usage, live=True),
    ControlFile("cpuacct.usage_user", 0o444, synced(lambda cg: f"{CPUACCT.usage_user(cg)}\n"), live=True),
    ControlFile("cpuacct.usage_sys", 0o444, synced(lambda cg: f"{CPUACCT.usage_sys(cg)}\n"), live=True),
    ControlFile("cpuacct.usage_percpu", 0o444, synced(lambda cg: _percpu_line(CPUACCT.percpu_usage(cg))),
                live=True),
    ControlFile("cpuacct.usage_percpu_user", 0o444, synced(lambda cg: _percpu_line(CPUACCT.percpu_user(cg))),
                live=True),
    ControlFile("cpuacct.usage_percpu_sys", 0o444, synced(lambda cg: _percpu_line(CPUACCT.percpu_system(cg))),
                live=True),
    ControlFile("cpuacct.usage_all", 0o444, synced(_read_all), live=True),
    ControlFile("cpuacct.stat", 0o444, synced(_read_stat), live=True),
)
