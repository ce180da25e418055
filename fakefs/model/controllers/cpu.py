"""cpu controller, v1 files (kernel/sched/core.c ``cpu_legacy_files``).

Measured on Linux 6.18: writes on the root group give EINVAL; ``cpu.shares``
clamps to [2, 262144]; an idle group shows shares 3 and refuses share
writes; CFS period is 1 ms..1 s; a quota below 1 ms is EINVAL, a negative
one means unlimited; burst may not exceed a finite quota; v1 keeps every
group's bandwidth ratio within its nearest limited ancestor's.
"""

from __future__ import annotations

from dataclasses import dataclass

from fakefs.model.cftype import ControlFile, Controller, WriteContext
from fakefs.model.errors import einval
from fakefs.model.kparse import U64_MAX, kstrtoll, kstrtoull
from fakefs.model.usage import bandwidth_stat, synced

MIN_SHARES, MAX_SHARES = 2, 1 << 18
IDLE_SHARES = 3  # scale_load_down(WEIGHT_IDLEPRIO)
RUNTIME_INF = -1
MIN_PERIOD_US, MAX_PERIOD_US = 1000, 1000000
BW_SHIFT = 20
# max_cfs_runtime = MAX_BW * NSEC_PER_USEC nanoseconds, i.e. MAX_BW microseconds.
MAX_CFS_RUNTIME_US = (1 << (64 - BW_SHIFT)) - 1
MAX_RT_PERIOD_US = U64_MAX // 1000  # tg_set_rt_bandwidth(): must survive *NSEC_PER_USEC
DEFAULT_RT_PERIOD_US = 1000000
ROOT_RT_RUNTIME_US = 950000  # sysctl_sched_rt_runtime


@dataclass
class CpuState:
    shares: int = 1024
    idle: bool = False
    period_us: int = 100000
    quota_us: int = RUNTIME_INF
    burst_us: int = 0
    rt_period_us: int = DEFAULT_RT_PERIOD_US
    rt_runtime_us: int = 0


def _ratio(period_us: int, quota_us: int) -> int:
    """to_ratio(): bandwidth as a fixed-point fraction, RUNTIME_INF unlimited."""
    if quota_us == RUNTIME_INF:
        return RUNTIME_INF
    return (quota_us << BW_SHIFT) // period_us


class Cpu(Controller):
    name = "cpu"

    def new_state(self, cgroup):
        st = CpuState()
        if cgroup.parent is None:
            st.rt_runtime_us = ROOT_RT_RUNTIME_US
        return st

    # -- bandwidth ----------------------------------------------------------
    def _check_schedulable(self, cg, period_us: int, quota_us: int) -> None:
        """tg_cfs_schedulable_down() for cgroup v1: walking down from the
        root, an unlimited group inherits its parent's effective ratio and a
        limited group may not exceed it. The candidate values replace cg's."""

        def walk(node, parent_eff: int) -> None:
            st = self.state(node)
            p, q = (period_us, quota_us) if node is cg else (st.period_us, st.quota_us)
            own = _ratio(p, q) if not node.is_root else RUNTIME_INF
            if own == RUNTIME_INF:
                eff = parent_eff
            else:
                if parent_eff != RUNTIME_INF and own > parent_eff:
                    raise einval("quota exceeds a limited parent's")
                eff = own
            for child in node.children.values():
                walk(child, eff)

        walk(cg.hierarchy.root, RUNTIME_INF)

    def set_bandwidth(self, cg, period_us: int, quota_us: int, burst_us: int) -> None:
        """tg_set_cfs_bandwidth() checks, in microseconds."""
        if cg.is_root:
            raise einval("root task group")
        if not MIN_PERIOD_US <= period_us <= MAX_PERIOD_US:
            raise einval("period out of range")
        if quota_us != RUNTIME_INF:
            if quota_us < MIN_PERIOD_US or quota_us > MAX_CFS_RUNTIME_US:
                raise einval("quota out of range")
            if burst_us > quota_us or burst_us + quota_us > MAX_CFS_RUNTIME_US:
                raise einval("burst exceeds quota")
        elif burst_us > MAX_CFS_RUNTIME_US:
            raise einval("burst out of range")
        self._check_schedulable(cg, period_us, quota_us)
        st = self.state(cg)
        st.period_us, st.quota_us, st.burst_us = period_us, quota_us, burst_us


CPU = CONTROLLER = Cpu()


def _st(cg) -> CpuState:
    return CPU.state(cg)


def _write_shares(cg, text: str, ctx: WriteContext) -> None:
    value = kstrtoull(text)
    if cg.is_root or _st(cg).idle:
        raise einval("shares of the root or an idle group")
    _st(cg).shares = max(MIN_SHARES, min(MAX_SHARES, value))


def _read_shares(cg) -> str:
    st = _st(cg)
    return f"{IDLE_SHARES if st.idle else st.shares}\n"


def _write_idle(cg, text: str, ctx: WriteContext) -> None:
    value = kstrtoll(text)
    if cg.is_root or value not in (0, 1):
        raise einval("idle is 0 or 1, not on the root")
    _st(cg).idle = bool(value)


def _write_period(cg, text: str, ctx: WriteContext) -> None:
    value = kstrtoull(text)
    st = _st(cg)
    CPU.set_bandwidth(cg, value, st.quota_us, st.burst_us)


def _write_quota(cg, text: str, ctx: WriteContext) -> None:
    value = kstrtoll(text)
    st = _st(cg)
    CPU.set_bandwidth(cg, st.period_us, RUNTIME_INF if value < 0 else value, st.burst_us)


def _write_burst(cg, text: str, ctx: WriteContext) -> None:
    value = kstrtoull(text)
    st = _st(cg)
    CPU.set_bandwidth(cg, st.period_us, st.quota_us, value)


def _write_rt_runtime(cg, text: str, ctx: WriteContext) -> None:
    value = kstrtoll(text)
    st = _st(cg)
    runtime = -1 if value < 0 else value
    _check_rt(cg, st.rt_period_us, runtime)
    st.rt_runtime_us = runtime


def _write_rt_period(cg, text: str, ctx: WriteContext) -> None:
    value = kstrtoull(text)
    if value == 0 or value > MAX_RT_PERIOD_US:
        raise einval("rt period 0 or too large")
    st = _st(cg)
    _check_rt(cg, value, st.rt_runtime_us)
    st.rt_period_us = value


def _check_rt(cg, period_us: int, runtime_us: int) -> None:
    """tg_rt_schedulable(): a group's rt ratio may not exceed its parent's and
    the children's ratios may not sum above it."""
    if runtime_us != -1 and runtime_us > period_us:
        raise einval("rt runtime above period")

    def ratio(p: int, r: int) -> int:
        return (1 << BW_SHIFT) if r == -1 else (r << BW_SHIFT) // p

    mine = ratio(period_us, runtime_us)
    if cg.parent is not None:
        pst = _st(cg.parent)
        siblings = sum(ratio(_st(s).rt_period_us, _st(s).rt_runtime_us)
                       for s in cg.parent.children.values() if s is not cg)
        if mine + siblings > ratio(pst.rt_period_us, pst.rt_runtime_us):
            raise einval("rt bandwidth above parent")
    kids = sum(ratio(_st(c).rt_period_us, _st(c).rt_runtime_us) for c in cg.children.values())
    if kids > mine:
        raise einval("children's rt bandwidth above new value")


def _read_stat(cg) -> str:
    """cpu_cfs_stat_show (v1). Nothing is throttled for real: with live
    statistics the counters are what the quota would have counted for the
    CPU time the group used (model/usage.py); bursts are never counted."""
    bw = bandwidth_stat(cg)
    return (f"nr_periods {bw.nr_periods}\nnr_throttled {bw.nr_throttled}\n"
            f"throttled_time {bw.throttled_ns}\nnr_bursts 0\nburst_time 0\n")


CPU.files = (
    ControlFile("cpu.shares", 0o644, _read_shares, _write_shares),
    ControlFile("cpu.idle", 0o644, lambda cg: f"{int(_st(cg).idle)}\n", _write_idle),
    ControlFile("cpu.cfs_period_us", 0o644, lambda cg: f"{_st(cg).period_us}\n", _write_period),
    ControlFile("cpu.cfs_quota_us", 0o644, lambda cg: f"{_st(cg).quota_us}\n", _write_quota),
    ControlFile("cpu.cfs_burst_us", 0o644, lambda cg: f"{_st(cg).burst_us}\n", _write_burst),
    ControlFile("cpu.rt_period_us", 0o644, lambda cg: f"{_st(cg).rt_period_us}\n", _write_rt_period),
    ControlFile("cpu.rt_runtime_us", 0o644, lambda cg: f"{_st(cg).rt_runtime_us}\n", _write_rt_runtime),
    ControlFile("cpu.stat", 0o444, synced(_read_stat), live=True),
    ControlFile("cpu.stat.local", 0o444, lambda cg: "throttled_time 0\n", live=True),
)
