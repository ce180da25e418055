"""Files every v1 cgroup has (kernel/cgroup/cgroup-v1.c ``cgroup1_base_files``)."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from fakefs.model.cftype import ControlFile, Controller, Placement, WriteContext, flag_file
from fakefs.model.errors import KernelError
from fakefs.model.kparse import PATH_MAX, kernel_strstrip


@dataclass
class CoreState:
    clone_children: bool = False
    notify_on_release: bool = False


class Core(Controller):
    name = "cgroup"

    def new_state(self, cgroup):
        parent = cgroup.parent
        if parent is None:
            return CoreState()
        p = self.state(parent)
        # cgroup1: a child copies notify_on_release and clone_children from its
        # parent at creation (cgroup_create / cgroup1 flags inheritance).
        return CoreState(clone_children=p.clone_children, notify_on_release=p.notify_on_release)


CORE = Core()


def _read_procs(cg) -> str:
    return "".join(f"{p}\n" for p in cg.hierarchy.tgids_in(cg))


def _read_tasks(cg) -> str:
    return "".join(f"{t}\n" for t in cg.hierarchy.tids_in(cg))


def _write_procs(cg, text: str, ctx: WriteContext) -> None:
    h = cg.hierarchy
    h.attach(cg, h.parse_pid_write(text, ctx), threadgroup=True, writer_uid=ctx.uid)


def _write_tasks(cg, text: str, ctx: WriteContext) -> None:
    h = cg.hierarchy
    h.attach(cg, h.parse_pid_write(text, ctx), threadgroup=False, writer_uid=ctx.uid)


def _read_release_agent(cg) -> str:
    return cg.hierarchy.release_agent + "\n"


def _write_release_agent(cg, text: str, ctx: WriteContext) -> None:
    # Stored, never executed: fakefs does not run release agents.
    if ctx.uid != 0:
        raise KernelError(errno.EPERM, "release_agent needs CAP_SYS_ADMIN")
    cg.hierarchy.release_agent = kernel_strstrip(text)


CORE.files = (
    ControlFile("cgroup.procs", 0o644, _read_procs, _write_procs, live=True),
    ControlFile("tasks", 0o644, _read_tasks, _write_tasks, live=True),
    flag_file("cgroup.clone_children", "clone_children", CORE),
    flag_file("notify_on_release", "notify_on_release", CORE),
    ControlFile("release_agent", 0o644, _read_release_agent, _write_release_agent,
                Placement.ROOT_ONLY, max_write_len=PATH_MAX - 1),
    ControlFile("cgroup.sane_behavior", 0o444, lambda cg: "0\n", None, Placement.ROOT_ONLY),
)
