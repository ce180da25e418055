"""cpuset controller, v1 files (kernel/cgroup/cpuset-v1.c ``cpuset1_files``).

Measured on Linux 6.18 (2 possible/online CPUs, node 0, NR_CPUS=256,
NODES_SHIFT=10):

* a child starts with empty cpus/mems; with ``cgroup.clone_children`` set on
  the new cgroup (inherited from its parent) it copies the parent's
  cpus/mems, unless a sibling is cpu- or mem-exclusive (cpuset_css_online);
  spread_page/spread_slab are always inherited, other flags are not;
* cpus/mems writes are strstripped, then parsed by bitmap_parselist():
  strides, ``all``, ``N``, empty regions, blanks as separators; a bit past
  nr_cpu_ids (cpus) or MAX_NUMNODES (mems) is ERANGE, a u32 overflow
  EOVERFLOW, bad syntax EINVAL; cpus/mems outside the online set EINVAL;
* not a subset of the parent: EACCES; shrinking under a child: EBUSY;
  emptying a populated cpuset: ENOSPC; overlapping an exclusive sibling:
  EINVAL; an exclusive flag the parent lacks: EACCES; clearing one a child
  has: EBUSY (validate_change / cpuset1_validate_change);
* attaching to a cpuset with empty cpus or mems: ENOSPC;
* sched_relax_domain_level accepts -1 .. sched_domain_level_max + 1 (2 on
  the measuring VM), else EINVAL;
* cpus/mems on the root are read-only: update_cpumask()/update_nodemask()
  return EACCES for top_cpuset (from the source: root files were not written).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from fakefs.model.cftype import ControlFile, Controller, Placement, WriteContext
from fakefs.model.errors import KernelError, einval
from fakefs.model.kparse import U32_MAX, bitmap_parselist, format_cpulist, kernel_strstrip, kstrtoll, kstrtoull

# Kernel configuration of the measured VM: they size the write buffers
# (cftype.max_write_len = 100 + 6 * NR_CPUS / MAX_NUMNODES) and the node
# bitmap that mems is parsed into.
NR_CPUS = 256
MAX_NUMNODES = 1 << 10
# sched_domain_level_max of the measured VM.
SCHED_DOMAIN_LEVEL_MAX = 1

# -- state ------------------------------------------------------------------

@dataclass
class CpusetState:
    cpus: frozenset[int] = frozenset()
    mems: frozenset[int] = frozenset()
    cpu_exclusive: bool = False
    mem_exclusive: bool = False
    mem_hardwall: bool = False
    memory_migrate: bool = False
    sched_load_balance: bool = True  # set in cpuset_css_alloc
    spread_page: bool = False
    spread_slab: bool = False
    relax_domain_level: int = -1
    # fmeter rate of direct reclaim; nothing feeds it in fakefs yet.
    memory_pressure: int = 0
    # Only meaningful on the root: the global cpuset_memory_pressure_enabled.
    memory_pressure_enabled: bool = False


_EXCL_FLAGS = ("cpu_exclusive", "mem_exclusive")


class Cpuset(Controller):
    name = "cpuset"

    def new_state(self, cgroup):
        parent = cgroup.parent
        if parent is None:
            host = cgroup.hierarchy.model.host
            # top_cpuset: cpus/mems track the active CPUs and N_MEMORY nodes.
            return CpusetState(cpus=frozenset(host.online_cpus), mems=frozenset(host.online_mems),
                               cpu_exclusive=True, mem_exclusive=True)
        p = self.state(parent)
        st = CpusetState(spread_page=p.spread_page, spread_slab=p.spread_slab)
        # cpuset_css_online: CGRP_CPUSET_CLONE_CHILDREN is the new cgroup's
        # flag, copied from the parent by cgroup core (core state exists
        # already: it is created first). An exclusive sibling vetoes the copy.
        clone = cgroup.state["cgroup"].clone_children
        if clone and not any(self.state(s).cpu_exclusive or self.state(s).mem_exclusive
                             for s in parent.children.values()):
            st.cpus, st.mems = p.cpus, p.mems
        return st

    # -- rules ----------------------------------------------------------------
    @staticmethod
    def _is_subset(p: CpusetState, q: CpusetState) -> bool:
        """is_cpuset_subset(): masks included, exclusive flags implied."""
        return (p.cpus <= q.cpus and p.mems <= q.mems
                and p.cpu_exclusive <= q.cpu_exclusive and p.mem_exclusive <= q.mem_exclusive)

    def validate_change(self, cg, trial: CpusetState) -> None:
        """validate_change() on a v1 hierarchy, in the kernel's order."""
        cur = self.state(cg)
        if any(not self._is_subset(self.state(c), trial) for c in cg.children.values()):
            raise KernelError(errno.EBUSY, "a child is not a subset")
        if cg.parent is not None and not self._is_subset(trial, self.state(cg.parent)):
            raise KernelError(errno.EACCES, "not a subset of the parent")
        if cg.is_root:
            return
        if cg.hierarchy.subtree_tids(cg):
            if (cur.cpus and not trial.cpus) or (cur.mems and not trial.mems):
                raise KernelError(errno.ENOSPC, "populated cpuset would be empty")
        # The top of a fake subtree (top_is_root=False) has no modelled siblings.
        for sib in cg.parent.children.values() if cg.parent is not None else ():
            if sib is cg:
                continue
            s = self.state(sib)
            if (trial.cpu_exclusive or s.cpu_exclusive) and trial.cpus & s.cpus:
                raise einval("overlaps a cpu-exclusive sibling")
            if (trial.mem_exclusive or s.mem_exclusive) and trial.mems & s.mems:
                raise einval("overlaps a mem-exclusive sibling")

    def _trial(self, cg, **changes) -> CpusetState:
        cur = self.state(cg)
        values = {k: getattr(cur, k) for k in CpusetState.__dataclass_fields__}
        values.update(changes)
        return CpusetState(**values)

    def can_attach(self, cgroup, tids):
        # cgroup_migrate skips tasks already in the destination; with none
        # left no can_attach runs at all.
        h = cgroup.hierarchy
        if all(h.cgroup_of(t) is cgroup for t in tids):
            return
        st = self.state(cgroup)
        # cpuset_can_attach_check(): v1 needs both cpus and mems.
        if not st.cpus or not st.mems:
            raise KernelError(errno.ENOSPC, "cpuset has no cpus or mems")


CPUSET = CONTROLLER = Cpuset()


def _st(cg) -> CpusetState:
    return CPUSET.state(cg)


def _mask_reader(key: str):
    # v1: effective_* always equal cpus/mems (no v2 mode mount option).
    return lambda cg: format_cpulist(getattr(_st(cg), key)) + "\n"


def _write_cpus(cg, text: str, ctx: WriteContext) -> None:
    """cpuset_write_resmask() -> update_cpumask()."""
    buf = kernel_strstrip(text)
    if cg.is_root:
        raise KernelError(errno.EACCES, "top cpuset cpus are read-only")
    host = cg.hierarchy.model.host
    cpus = frozenset(bitmap_parselist(buf, host.nr_cpu_ids)) if buf else frozenset()
    if not cpus <= host.online_cpus:
        raise einval("cpu not active")
    if cpus == _st(cg).cpus:
        return  # "Nothing to do": no validation either
    CPUSET.validate_change(cg, CPUSET._trial(cg, cpus=cpus))
    _st(cg).cpus = cpus


def _write_mems(cg, text: str, ctx: WriteContext) -> None:
    """cpuset_write_resmask() -> update_nodemask()."""
    buf = kernel_strstrip(text)
    if cg.is_root:
        raise KernelError(errno.EACCES, "top cpuset mems are read-only")
    host = cg.hierarchy.model.host
    mems = frozenset(bitmap_parselist(buf, MAX_NUMNODES)) if buf else frozenset()
    if not mems <= host.online_mems:
        raise einval("node without memory")
    if mems == _st(cg).mems:
        return
    CPUSET.validate_change(cg, CPUSET._trial(cg, mems=mems))
    _st(cg).mems = mems


def _flag_file(name: str, key: str) -> ControlFile:
    """cpuset_write_u64() -> cpuset_update_flag(): kstrtoull (no strip),
    any non-zero sets, then validate_change() on the trial."""

    def read(cg) -> str:
        return f"{int(getattr(_st(cg), key))}\n"

    def write(cg, text: str, ctx: WriteContext) -> None:
        # cpuset_update_flag() takes an int: the u64 is truncated to 32 bits.
        on = (kstrtoull(text) & U32_MAX) != 0
        CPUSET.validate_change(cg, CPUSET._trial(cg, **{key: on}))
        setattr(_st(cg), key, on)

    return ControlFile(f"cpuset.{name}", 0o644, read, write)


def _write_relax(cg, text: str, ctx: WriteContext) -> None:
    """cpuset_write_s64() -> update_relax_domain_level()."""
    value = kstrtoll(text)
    if value < -1 or value > SCHED_DOMAIN_LEVEL_MAX + 1:
        raise einval("relax domain level out of range")
    _st(cg).relax_domain_level = value


def _write_pressure_enabled(cg, text: str, ctx: WriteContext) -> None:
    _st(cg).memory_pressure_enabled = (kstrtoull(text) & U32_MAX) != 0


CPUSET.files = (
    ControlFile("cpuset.cpus", 0o644, _mask_reader("cpus"), _write_cpus,
                max_write_len=100 + 6 * NR_CPUS),
    ControlFile("cpuset.mems", 0o644, _mask_reader("mems"), _write_mems,
                max_write_len=100 + 6 * MAX_NUMNODES),
    ControlFile("cpuset.effective_cpus", 0o444, _mask_reader("cpus")),
    ControlFile("cpuset.effective_mems", 0o444, _mask_reader("mems")),
    _flag_file("cpu_exclusive", "cpu_exclusive"),
    _flag_file("mem_exclusive", "mem_exclusive"),
    _flag_file("mem_hardwall", "mem_hardwall"),
    _flag_file("sched_load_balance", "sched_load_balance"),
    ControlFile("cpuset.sched_relax_domain_level", 0o644,
                lambda cg: f"{_st(cg).relax_domain_level}\n", _write_relax),
    _flag_file("memory_migrate", "memory_migrate"),
    ControlFile("cpuset.memory_pressure", 0o444, lambda cg: f"{_st(cg).memory_pressure}\n", live=True),
    _flag_file("memory_spread_page", "spread_page"),
    _flag_file("memory_spread_slab", "spread_slab"),
    ControlFile("cpuset.memory_pressure_enabled", 0o644,
                lambda cg: f"{int(_st(cg).memory_pressure_enabled)}\n", _write_pressure_enabled,
                Placement.ROOT_ONLY),
)
