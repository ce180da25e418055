"""The whole cgroup v1 model: which hierarchies exist and how they are laid
out under the mount point: one directory per hierarchy, by default named as
systemd names it (co-mounted controllers joined by commas, a symlink for
each member); a caller that copies a host's layout gives the directory
names and symlinks instead (fakefs/manager/layout.py).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from fakefs.model.cgroup import Hierarchy
from fakefs.model.controllers import CONTROLLERS
from fakefs.model.errors import KernelError, einval
from fakefs.model.host import HostFacts, ProcessTable, StaticProcessTable
from fakefs.model.usage import StatsSource

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


# cgroup v1 mount options that name no member of the hierarchy
# (cgroup1_parse_param in kernel/cgroup/cgroup-v1.c; "rw"/"ro" are the
# superblock's), as they appear among a mount's super options in mountinfo.
V1_MOUNT_OPTIONS = frozenset({"rw", "ro", "none", "all", "noprefix", "clone_children", "xattr",
                              "cpuset_v2_mode", "favordynmods"})


def spec_of_super_options(super_options: str) -> tuple[str | None, str]:
    """A cgroup v1 mount's super options as mountinfo shows them
    (``rw,cpu,cpuacct``, ``rw,xattr,release_agent=/x,name=systemd``) -> the
    hierarchy spec fakefs serves for it (``cpu,cpuacct``, ``name=systemd``),
    or None and why it cannot."""
    keys, unknown = [], []
    for opt in super_options.split(","):
        if not opt or opt in V1_MOUNT_OPTIONS or opt.startswith("release_agent="):
            continue
        (keys if opt in CONTROLLERS or opt.startswith("name=") else unknown).append(opt)
    if unknown:
        return None, f"controller {unknown[0]} is not modelled by fakefs"
    if not keys:
        return None, "no controller in its mount options"
    spec = ",".join(keys)
    try:
        parse_hierarchy_spec(spec)
    except KernelError as exc:
        return None, exc.detail
    return spec, "cgroup v1 hierarchy"


def hierarchy_keys(spec: str) -> list[str]:
    """``"cpu,cpuacct,name=x"`` -> ["cpu", "cpuacct", "name=x"]: what the
    spec holds, each as /proc/self/cgroup and mount options name it."""
    controllers, name = parse_hierarchy_spec(spec)
    return controllers + ([f"name={name}"] if name else [])


def default_dirname(spec: str) -> str:
    """The directory systemd gives a hierarchy: its controllers joined by
    commas, or its name for a named hierarchy without controllers."""
    controllers, name = parse_hierarchy_spec(spec)
    return ",".join(controllers) if controllers else name


# MAX_CGROUP_ROOT_NAMELEN (64) with its NUL: the longest name= value.
MAX_HIERARCHY_NAME = 63
# The bytes cgroup1_parse_param() takes in a name=: isalnum() of the
# kernel's ctype table, which counts Latin-1 letters (0xC0-0xFF but for
# the signs 0xD7 and 0xF7) as letters, and '_', '.', '-'. Measured with
# mount -t cgroup -o none,name=...: b"\xe9" is taken, UTF-8 "é" (C3 A9) is
# not (0xA9 is a sign), nor a space, a newline, '+' or ':'.
_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
                        + bytes(range(0xC0, 0x100))) - {0xD7, 0xF7}


def check_hierarchy_name(name: str) -> None:
    """name= as cgroup1_parse_param() checks it: 1-63 bytes of [A-Za-z0-9_.-]
    and Latin-1 letters (the name as the CLI got it: os.fsdecode'd bytes)."""
    raw = os.fsencode(name)
    if not raw:
        raise einval("empty hierarchy name (name=)")
    if len(raw) > MAX_HIERARCHY_NAME:
        raise einval(f"hierarchy name {name[:20]!r}... is {len(raw)} bytes, the kernel takes at most "
                     f"{MAX_HIERARCHY_NAME}")
    bad = next((b for b in raw if b not in _NAME_BYTES), None)
    if bad is not None:
        raise einval(f"hierarchy name {name!r}: the kernel takes only letters, digits, '_', '.' and '-' "
                     f"(not {bytes([bad])!r})")


def parse_hierarchy_spec(spec: str) -> tuple[list[str], str | None]:
    """``"cpu,cpuacct"`` -> (["cpu", "cpuacct"], None); ``"name=systemd"``
    (or ``"none,name=systemd"``) -> ([], "systemd"). The kernel's rules for
    the mount options; anything else is a one-line error."""
    controllers: list[str] = []
    name = None
    none = False
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("name="):
            if name is not None:
                raise einval(f"two names in {spec!r}")
            name = part[5:]
            check_hierarchy_name(name)
        elif part == "none":
            none = True
        elif part in CONTROLLERS:
            controllers.append(part)
        else:
            raise einval(f"unknown cgroup controller {part!r} (known: {', '.join(sorted(CONTROLLERS))}, "
                         f"or name=NAME)")
    if none and controllers:
        raise einval(f"'none' with controllers in {spec!r}")
    if not controllers and not name:
        raise einval(f"empty hierarchy {spec!r}")
    return controllers, name


def parse_hierarchies(specs) -> list[tuple[list[str], str | None]]:
    """Every spec parsed, and what the kernel refuses between hierarchies:
    a controller in two of them, a name given twice (a second mount with
    the name of an existing hierarchy and other controllers is EBUSY)."""
    parsed = [parse_hierarchy_spec(spec) for spec in specs]
    seen: set[str] = set()
    names: set[str] = set()
    for controllers, name in parsed:
        dup = seen.intersection(controllers)
        if dup:
            raise einval(f"controller {sorted(dup)[0]} in two hierarchies")
        seen.update(controllers)
        if name is not None:
            if name in names:
                raise einval(f"hierarchy name {name!r} given twice")
            names.add(name)
    return parsed


def lay_out(specs, dirnames: dict[str, str] | None = None,
            links: dict[str, str] | None = None) -> list[tuple[list[str], str | None, str, list[str]]]:
    """(controllers, name, directory, symlinks) of each hierarchy under the
    mount point: the directories given (a host's layout) or systemd's, and
    the symlinks given or a symlink for each member of a co-mounted
    hierarchy. Every entry of the mount must be a distinct name a directory
    can hold: the kernel takes name=. and name=.., no directory is called so."""
    out = []
    for spec, (names, hname) in zip(specs, parse_hierarchies(specs)):
        dirname = (dirnames or {}).get(spec) or default_dirname(spec)
        if "/" in dirname or dirname in (".", ".."):
            raise einval(f"{dirname!r} cannot be a directory of the mount (hierarchy {spec!r})")
        out.append((names, hname, dirname, (names if len(names) > 1 else []) if links is None else []))
    dirs = [d for _, _, d, _ in out]
    if len(set(dirs)) != len(dirs):
        raise einval("two hierarchies in one directory")
    entries = set(dirs)
    for link, dirname in (links or {}).items():
        if dirname not in entries or "/" in link or link in (".", ".."):
            raise einval(f"bad symlink {link!r} -> {dirname!r}")
        next(item for item in out if item[2] == dirname)[3].append(link)
    for link in [link for _, _, _, aliases in out for link in aliases]:
        if link in entries:
            raise einval(f"two entries of the mount named {link!r}")
        entries.add(link)
    return out


@dataclass
class MountedHierarchy:
    dirname: str  # directory under the mount point
    hierarchy: Hierarchy
    aliases: list[str] = field(default_factory=list)  # symlinks -> dirname


class CgroupModel:
    def __init__(self, host: HostFacts | None = None, processes: ProcessTable | None = None,
                 hierarchies: tuple[str, ...] | list[str] = DEFAULT_HIERARCHIES, top_is_root: bool = True,
                 stats: StatsSource | None = None, dirnames: dict[str, str] | None = None,
                 links: dict[str, str] | None = None):
        # top_is_root=False: every hierarchy is a subtree mounted below a real
        # (non-root) cgroup, e.g. for container runtimes (model/subtree.py).
        # dirnames (spec -> directory) and links (symlink -> directory) copy a
        # host's layout; without them, systemd's: default_dirname, and a
        # symlink for each member of a co-mounted hierarchy.
        self.host = host or HostFacts()
        self.processes: ProcessTable = processes if processes is not None else StaticProcessTable()
        self._serials = itertools.count(1)
        self.generation = 0
        # One more for every process event (fork, exit) of the machine,
        # placed or not: the root's membership follows them too.
        self.process_events = 0
        # Where live statistics come from (model/usage.py; the daemon gives
        # host.stats.LiveStats): None serves only what was written.
        self.stats = stats
        # Called with every acknowledged change (CgroupModel.changed) before
        # the operation returns: the daemon writes it down, so that nothing a
        # caller saw succeed is lost when the server dies (runtime/statefile.py).
        self.journal = None
        # Called with the tids each attach placed (host/forkwatch.py notes
        # who they are while they surely exist).
        self.on_attach = None
        # Called before a live file (membership, statistics) is rendered:
        # applies the process events already queued (host/forkwatch.py), so
        # that a fork or exit that returned before the read shows in it.
        self.refresh = None
        # Called after every change (a write, mkdir, rmdir, move): whatever
        # mirrors the model's values elsewhere (the /proc view copies).
        self.on_change: list = []
        self.mounts: list[MountedHierarchy] = []
        for names, hname, dirname, aliases in lay_out(hierarchies, dirnames, links):
            h = Hierarchy(self, [CONTROLLERS[n] for n in names], hname, top_is_root=top_is_root)
            self.mounts.append(MountedHierarchy(dirname, h, aliases))

    def next_serial(self) -> int:
        return next(self._serials)

    def changed(self, record: dict | None = None) -> None:
        """Something in the tree changed. ``record``: the change as an
        operation the state can be brought forward by (model/state.py
        replay), for the journal of acknowledged operations."""
        self.generation += 1
        if record is not None and self.journal is not None:
            self.journal(record)
        for listener in self.on_change:
            listener()

    def forked(self, parent_tid: int, child_tid: int) -> None:
        """Process events (host/forkwatch.py): fork inherits membership."""
        self.process_events += 1
        if [m.hierarchy.forked(parent_tid, child_tid) for m in self.mounts].count(True):
            self.changed()

    def exited(self, tid: int) -> None:
        self.process_events += 1
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
