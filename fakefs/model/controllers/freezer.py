"""freezer controller, v1 (kernel/cgroup/legacy_freezer.c ``files``).

No file on the root (CFTYPE_NOT_ON_ROOT). Measured on Linux 6.18:

* freezer.state takes, after strstrip of the C string, exactly ``FROZEN``
  or ``THAWED`` (``FROZEN\\n``, `` THAWED``, ``FROZEN\\xa0``, ``THAWED\\0junk``
  accepted; ``frozen``, ``FREEZING``, ``FROZENX``, a lone newline EINVAL);
* freezing a group freezes its whole subtree: descendants read FROZEN with
  self_freezing 0 and parent_freezing 1, and a group created below a frozen
  one starts FROZEN with parent_freezing 1;
* writing THAWED to a child of a frozen group succeeds but only clears its
  own self_freezing: it stays FROZEN while an ancestor freezes it;
* thawing the parent leaves a child that froze itself FROZEN (self 1,
  parent 0); thawing it then thaws its own subtree.

State is derived like freezer_read()/update_if_frozen(): a freezing group
reads FROZEN once all its children are FROZEN and all its tasks are frozen,
else FREEZING. fakefs cannot stop real tasks; ``task_frozen`` says whether
a task counts as frozen (every task does, unless a backend replaces it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fakefs.model.cftype import ControlFile, Controller, Placement, WriteContext
from fakefs.model.errors import einval
from fakefs.model.kparse import kernel_strstrip

THAWED, FREEZING, FROZEN = "THAWED", "FREEZING", "FROZEN"


@dataclass
class FreezerState:
    self_freezing: bool = False  # CGROUP_FREEZING_SELF


class Freezer(Controller):
    name = "freezer"

    def __init__(self) -> None:
        self.task_frozen: Callable[[int], bool] = lambda tid: True

    def new_state(self, cgroup):
        return FreezerState()

    def self_freezing(self, cgroup) -> bool:
        return self.state(cgroup).self_freezing

    def parent_freezing(self, cgroup) -> bool:
        """CGROUP_FREEZING_PARENT: freezer_apply_state() pushes the parent's
        FREEZING bit down the tree, so it is set iff an ancestor freezes
        itself (the root cannot: it has no freezer.state)."""
        return any(self.state(a).self_freezing for a in cgroup.ancestors())

    def freezing(self, cgroup) -> bool:
        return self.self_freezing(cgroup) or self.parent_freezing(cgroup)

    def frozen(self, cgroup) -> bool:
        """update_if_frozen(): freezing, every child frozen, every task frozen."""
        if not self.freezing(cgroup):
            return False
        if not all(self.frozen(c) for c in cgroup.children.values()):
            return False
        return all(self.task_frozen(t) for t in cgroup.hierarchy.tids_in(cgroup))

    def state_name(self, cgroup) -> str:
        if not self.freezing(cgroup):
            return THAWED
        return FROZEN if self.frozen(cgroup) else FREEZING

    def change_state(self, cgroup, freeze: bool) -> None:
        """freezer_change_state(): only this group's SELF bit changes; the
        PARENT bits of descendants are derived from the ancestors."""
        self.state(cgroup).self_freezing = freeze


FREEZER = CONTROLLER = Freezer()


def _write_state(cg, text: str, ctx: WriteContext) -> None:
    """freezer_write(): strstrip then strcmp against the two names."""
    buf = kernel_strstrip(text)
    if buf == THAWED:
        FREEZER.change_state(cg, False)
    elif buf == FROZEN:
        FREEZER.change_state(cg, True)
    else:
        raise einval("freezer.state takes FROZEN or THAWED")


FREEZER.files = (
    ControlFile("freezer.state", 0o644, lambda cg: f"{FREEZER.state_name(cg)}\n", _write_state,
                Placement.NOT_ON_ROOT, live=True),
    ControlFile("freezer.self_freezing", 0o444, lambda cg: f"{int(FREEZER.self_freezing(cg))}\n", None,
                Placement.NOT_ON_ROOT),
    ControlFile("freezer.parent_freezing", 0o444, lambda cg: f"{int(FREEZER.parent_freezing(cg))}\n", None,
                Placement.NOT_ON_ROOT),
)
