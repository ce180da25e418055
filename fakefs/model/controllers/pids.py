"""pids controller, v1 files (kernel/cgroup/pids.c ``pids_files_legacy``).

All four files are CFTYPE_NOT_ON_ROOT. Measured on Linux 6.18:

* pids.max: strstrip, then exactly ``max`` or kstrtoll base 0
  (``max\\n``, `` max``, ``0x10``, ``010``, ``+5``, ``-0`` accepted; ``MAX``,
  ``-1``, 4194305 EINVAL; past s64 ERANGE; text after a NUL ignored);
* moving a task into a group over its limit succeeds (pids_can_attach never
  fails) and pids.current then exceeds pids.max;
* pids.peak is bumped while charging during a migration, before the source
  is uncharged: moving a task from a child up to its parent leaves the
  parent's peak one above anything pids.current ever showed;
* pids.events on v1 shows the local fork-failure count (``max N``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from fakefs.model.cftype import ControlFile, Controller, Placement, WriteContext
from fakefs.model.errors import KernelError, einval
from fakefs.model.kparse import kernel_strstrip, kstrtoll
from fakefs.model.usage import live_task_count


@dataclass
class PidsState:
    limit: int | None = None  # None is "max" (PIDS_MAX)
    watermark: int = 0
    fork_failures: int = 0  # events_local[PIDCG_FORKFAIL]


def _charged_chain(cg):
    """The groups a task in ``cg`` is charged to: cg and its ancestors,
    without the root (pids_charge stops at the root)."""
    node = cg
    while node is not None and node.parent is not None:
        yield node
        node = node.parent


class Pids(Controller):
    name = "pids"

    def new_state(self, cgroup):
        return PidsState()

    def pids_max_value(self, cgroup) -> int:
        return cgroup.hierarchy.model.host.pid_max_limit + 1  # PIDS_MAX

    def current(self, cgroup) -> int:
        """The hierarchical counter: every task of the group and below
        (through the live statistics source when there is one: threads
        included, read through its cache)."""
        live = live_task_count(cgroup)
        if live is not None:
            return live
        return len(cgroup.hierarchy.subtree_tids(cgroup))

    def peak(self, cgroup) -> int:
        """The watermark. fakefs does not see forks, so a count observed now
        also raises it (the kernel's watermark is never below a current)."""
        st = self.state(cgroup)
        st.watermark = max(st.watermark, self.current(cgroup))
        return st.watermark

    def can_attach(self, cgroup, tids):
        """pids_can_attach(): for each migrating task charge the destination
        chain (raising watermarks) then uncharge the source chain. Never
        refuses, whatever the limits."""
        h = cgroup.hierarchy
        moving = [t for t in tids if h.cgroup_of(t) is not cgroup]
        counts = {id(n): self.current(n) for n in _charged_chain(cgroup)}
        for tid in moving:
            for node in _charged_chain(cgroup):
                counts[id(node)] += 1
                st = self.state(node)
                st.watermark = max(st.watermark, counts[id(node)])
            for node in _charged_chain(h.cgroup_of(tid)):
                if id(node) in counts:
                    counts[id(node)] -= 1

    def check_fork(self, cgroup) -> None:
        """pids_can_fork(): would one more task in ``cgroup`` exceed a limit on
        the way up? If so count the failure where the fork happened (v1
        reports the local count) and raise EAGAIN."""
        for node in _charged_chain(cgroup):
            limit = self.state(node).limit
            if limit is not None and self.current(node) + 1 > limit:
                self.state(cgroup).fork_failures += 1
                raise KernelError(errno.EAGAIN, f"pids limit of {node.path}")


PIDS = CONTROLLER = Pids()


def _write_max(cg, text: str, ctx: WriteContext) -> None:
    """pids_max_write()."""
    buf = kernel_strstrip(text)
    if buf == "max":
        PIDS.state(cg).limit = None
        return
    value = kstrtoll(buf)
    if value < 0 or value >= PIDS.pids_max_value(cg):
        raise einval("pids.max out of range")
    PIDS.state(cg).limit = value


def _read_max(cg) -> str:
    limit = PIDS.state(cg).limit
    return "max\n" if limit is None else f"{limit}\n"


PIDS.files = (
    ControlFile("pids.max", 0o644, _read_max, _write_max, Placement.NOT_ON_ROOT),
    ControlFile("pids.current", 0o444, lambda cg: f"{PIDS.current(cg)}\n", None, Placement.NOT_ON_ROOT,
                live=True),
    ControlFile("pids.peak", 0o444, lambda cg: f"{PIDS.peak(cg)}\n", None, Placement.NOT_ON_ROOT, live=True),
    ControlFile("pids.events", 0o444, lambda cg: f"max {PIDS.state(cg).fork_failures}\n", None,
                Placement.NOT_ON_ROOT, live=True),
)
