"""The whole cgroup v1 model: which hierarchies exist and how they are laid
out under the mount point (one directory per hierarchy, co-mounted
controllers joined by commas, symlinks for each member, as systemd does).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from fakefs.model.cgroup import Hierarchy
from fakefs.model.controllers import CONTROLLERS
from fakefs.model.errors import einval
from fakefs.model.host import HostFacts, ProcessTable, StaticProcessTable

# The systemd layout of a cgroup v1 host, in the order systemd mounts them.
DEFAULT_HIERARCHIES: tuple[str, ...] = (
    "cpu,cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls,net_prio",
    "perf_event",
    "rdma",
    "name=systemd",
)


def parse_hierarchy_spec(spec: str) -> tuple[list[str], str | None]:
    """``"cpu,cpuacct"`` -> (["cpu", "cpuacct"], None); ``"name=systemd"``
    -> ([], "systemd"). Unknown controllers are a one-line error."""
    controllers: list[str] = []
    name = None
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("name="):
            name = part[5:]
            if not name or "/" in name:
                raise einval(f"bad hierarchy name in {spec!r}")
        elif part in CONTROLLERS:
            controllers.append(part)
        else:
            raise einval(f"unknown cgroup controller {part!r}")
    if not controllers and not name:
        raise einval(f"empty hierarchy {spec!r}")
    return controllers, name


@dataclass
class MountedHierarchy:
    dirname: str  # directory under the mount point
    hierarchy: Hierarchy
    aliases: list[str] = field(default_factory=list)  # symlinks -> dirname


class CgroupModel:
    def __init__(self, host: HostFacts | None = None, processes: ProcessTable | None = None,
                 hierarchies: tuple[str, ...] | list[str] = DEFAULT_HIERARCHIES, top_is_root: bool = True):
        # top_is_root=False: every hierarchy is a subtree mounted below a real
        # (non-root) cgroup, e.g. for container runtimes (model/subtree.py).
        self.host = host or HostFacts()
        self.processes: ProcessTable = processes if processes is not None else StaticProcessTable()
        self._serials = itertools.count(1)
        self.generation = 0
        # Called with the tids each attach placed (fakefs/forkwatch.py notes
        # who they are while they surely exist).
        self.on_attach = None
        # Called after every change (a write, mkdir, rmdir, move): whatever
        # mirrors the model's values elsewhere (the /proc view copies).
        self.on_change: list = []
        self.mounts: list[MountedHierarchy] = []
        seen: set[str] = set()
        for spec in hierarchies:
            names, hname = parse_hierarchy_spec(spec)
            dup = seen.intersection(names)
            if dup:
                raise einval(f"controller {sorted(dup)[0]} in two hierarchies")
            seen.update(names)
            h = Hierarchy(self, [CONTROLLERS[n] for n in names], hname, top_is_root=top_is_root)
            dirname = ",".join(names) if names else hname
            aliases = names if len(names) > 1 else []
            self.mounts.append(MountedHierarchy(dirname, h, aliases))

    def next_serial(self) -> int:
        return next(self._serials)

    def changed(self) -> None:
        self.generation += 1
        for listener in self.on_change:
            listener()

    def forked(self, parent_tid: int, child_tid: int) -> None:
        """Process events (fakefs/forkwatch.py): fork inherits membership."""
        if [m.hierarchy.forked(parent_tid, child_tid) for m in self.mounts].count(True):
            self.changed()

    def exited(self, tid: int) -> None:
        if [m.hierarchy.exited(tid) for m in self.mounts].count(True):
            self.changed()

    def hierarchy(self, key: str) -> Hierarchy:
        """By directory name, alias or controller name."""
        for m in self.mounts:
            if key == m.dirname or key in m.aliases or m.hierarchy.controller(key) is not None:
                return m.hierarchy
        raise KeyError(key)

    def entries(self) -> dict[str, str | Hierarchy]:
        """Names at the mount root: hierarchy directories and alias symlinks."""
        out: dict[str, str | Hierarchy] = {}
        for m in self.mounts:
            out[m.dirname] = m.hierarchy
            for a in m.aliases:
                out[a] = m.dirname
        return out
