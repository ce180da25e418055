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

from ..cftype import ControlFile, Controller, WriteContext
from ..errors import einval
from ..kparse import kstrtoull

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

    def reset(self, cgroup) -> None:
        """cpuusage_write(0): zero this group's counters; a no-op on the root."""
        if cgroup.is_root:
            return
        for t in self.state(cgroup).percpu:
            t.usage = t.user = t.system = 0

    # -- the figures, one function each (live statistics plug in here) ----------
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
    """cpuacct_stats_show: cpustat sums converted to USER_HZ ticks."""
    hz = cg.hierarchy.model.host.user_hz
    return (f"user {nsec_to_clock_t(CPUACCT.usage_user(cg), hz)}\n"
            f"system {nsec_to_clock_t(CPUACCT.usage_sys(cg), hz)}\n")


def _write_usage(cg, text: str, ctx: WriteContext) -> None:
    # write_u64 path of cgroup_file_write: kstrtoull on the C string.
    if kstrtoull(text.split("\0", 1)[0]) != 0:
        raise einval("only 0 resets cpuacct.usage")
    CPUACCT.reset(cg)


CPUACCT.files = (
    ControlFile("cpuacct.usage", 0o644, lambda cg: f"{CPUACCT.usage(cg)}\n", _write_usage, live=True),
    ControlFile("cpuacct.usage_user", 0o444, lambda cg: f"{CPUACCT.usage_user(cg)}\n", live=True),
    ControlFile("cpuacct.usage_sys", 0o444, lambda cg: f"{CPUACCT.usage_sys(cg)}\n", live=True),
    ControlFile("cpuacct.usage_percpu", 0o444, lambda cg: _percpu_line(CPUACCT.percpu_usage(cg)), live=True),
    ControlFile("cpuacct.usage_percpu_user", 0o444, lambda cg: _percpu_line(CPUACCT.percpu_user(cg)),
                live=True),
    ControlFile("cpuacct.usage_percpu_sys", 0o444, lambda cg: _percpu_line(CPUACCT.percpu_system(cg)),
                live=True),
    ControlFile("cpuacct.usage_all", 0o444, _read_all, live=True),
    ControlFile("cpuacct.stat", 0o444, _read_stat, live=True),
)
