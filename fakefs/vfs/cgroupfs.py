"""Nodes over the cgroup model, laid out as a cgroup v1 host's /sys/fs/cgroup:
a tmpfs-like root holding one directory per hierarchy plus alias symlinks.
"""

from __future__ import annotations

import errno
import stat
import time

from fakefs.model.cftype import FileAttrs, WriteContext
from fakefs.model.cgroup import Cgroup, Hierarchy
from fakefs.model.errors import KernelError
from fakefs.model.kernfs import kernfs_order
from fakefs.model.tree import CgroupModel
from fakefs.vfs.nodes import Attr, Node

# Caching (see fakefs.vfs.ops): every name here is made and removed only
# through the filesystem's own operations, so the kernel may keep entries;
# directories, links and control files that are not ``live`` change only by
# a write/mkdir/rmdir/rename/chmod here, so their attributes may be kept too.
# A cgroup's files are one change scope: a write to one of them may change
# any file of that cgroup and of its descendants (cpuset's effective masks,
# devices' propagated exceptions), never of another cgroup.

# kernfs' limits on user.* attributes per node (KERNFS_MAX_USER_XATTRS,
# KERNFS_USER_XATTR_SIZE_LIMIT; measured: the 129th, or a value past 128 KiB
# in all, is ENOSPC).
KERNFS_USER_XATTR_LIMITS = (128, 128 << 10)


class CgroupFsRoot(Node):
    """The mount point: like the tmpfs a systemd host mounts at /sys/fs/cgroup."""

    volatile = False
    entry_stable = True
    is_dir = True
    file_type = stat.S_IFDIR
    # Every file is the same for every reader, and opening one checks only
    # its mode bits.
    serves_without_open = True

    def __init__(self, model: CgroupModel, mount_points: tuple[str, ...] = ()):
        self.model = model
        # Empty directories on which the daemon binds authentic mounts back
        # (cgroup2, v1 hierarchies the model does not serve).
        self.mount_points = tuple(mount_points)
        self.key = ("cgroupfs-root",)
        self.mtime_ns = time.time_ns()
        # A tmpfs keeps these in the inode, for as long as it is mounted:
        # here for as long as the daemon runs (the state file has cgroups).
        self._meta = FileAttrs()  # times and xattrs

    def attr(self) -> Attr:
        return _with_times(Attr(stat.S_IFDIR | 0o755, nlink=2 + len(self.model.mounts) + len(self.mount_points),
                                mtime_ns=self.mtime_ns), self._meta)

    def set_times(self, atime_ns: int | None, mtime_ns: int | None) -> None:
        self._meta.set_times(atime_ns, mtime_ns, time.time_ns())

    def xattrs(self) -> dict[str, bytes]:
        return self._meta.xattrs

    def set_xattr(self, name: str, value: bytes | None) -> None:
        self._meta.set_xattr(name, value)

    def lookup(self, name: str) -> Node:
        if name in self.mount_points:
            return MountPointDir(name, self.mtime_ns)
        target = self.model.entries().get(name)
        if target is None:
            raise KernelError(errno.ENOENT, name)
        if isinstance(target, str):
            return AliasLink(name, target, self.mtime_ns)
        return CgroupDir(target.root, self.mtime_ns)

    def entries(self) -> list[tuple[str, Node]]:
        return [(name, self.lookup(name)) for name in [*self.model.entries(), *self.mount_points]]

    def mkdir(self, name: str, ctx: WriteContext) -> Node:
        # The layout is fixed by the model's hierarchies.
        raise KernelError(errno.EPERM, "hierarchies are configured at mount time")


class MountPointDir(Node):
    """An empty directory, as systemd makes on its tmpfs for a mount."""

    volatile = False
    entry_stable = True
    is_dir = True

    def __init__(self, name: str, mtime_ns: int):
        self.key = ("mount-point", name)
        self.mtime_ns = mtime_ns

    def attr(self) -> Attr:
        return Attr(stat.S_IFDIR | 0o755, nlink=2, mtime_ns=self.mtime_ns)

    def lookup(self, name: str) -> Node:
        raise KernelError(errno.ENOENT, name)

    def entries(self) -> list[tuple[str, Node]]:
        return []


class AliasLink(Node):
    volatile = False
    entry_stable = True
    is_dir = False
    file_type = stat.S_IFLNK

    def __init__(self, name: str, target: str, mtime_ns: int):
        self.key = ("alias", name)
        self.target = target
        self.mtime_ns = mtime_ns

    def attr(self) -> Attr:
        return Attr(stat.S_IFLNK | 0o777, size=len(self.target), mtime_ns=self.mtime_ns)

    def readlink(self) -> str:
        return self.target


class CgroupDir(Node):
    volatile = False
    entry_stable = True
    user_xattr_limits = KERNFS_USER_XATTR_LIMITS
    # Known from the class: Node.is_dir would stat (a file's stat renders it).
    is_dir = True
    file_type = stat.S_IFDIR

    def __init__(self, cgroup: Cgroup, mtime_ns: int):
        self.cgroup = cgroup
        self.key = ("cgroup", cgroup.serial)
        self.mtime_ns = mtime_ns

    @property
    def hierarchy(self) -> Hierarchy:
        return self.cgroup.hierarchy

    @property
    def gone(self) -> bool:
        return self.cgroup.removed

    def _alive(self) -> Cgroup:
        cg = self.cgroup
        if cg.removed:
            raise KernelError(errno.ENOENT, "cgroup removed")
        return cg

    def attr(self) -> Attr:
        cg = self._alive()
        # Hierarchy roots are dr-xr-xr-x, children drwxr-xr-x (measured).
        mode = 0o555 if cg.is_root else 0o755
        a = cg.attrs.get(".")
        if a is not None and a.mode is not None:
            mode = a.mode
        return _with_times(Attr(stat.S_IFDIR | mode, uid=a.uid if a else 0, gid=a.gid if a else 0,
                                nlink=2 + len(cg.children), mtime_ns=self.mtime_ns), a)

    def lookup(self, name: str) -> Node:
        cg = self._alive()
        child = cg.children.get(name)
        if child is not None:
            return CgroupDir(child, self.mtime_ns)
        if name in self.hierarchy.files(cg):
            return ControlNode(cg, name, self.mtime_ns)
        raise KernelError(errno.ENOENT, name)

    def entries(self) -> list[tuple[str, Node]]:
        cg = self._alive()
        # In the kernel's readdir order, control files and child cgroups mixed.
        return [(n, CgroupDir(cg.children[n], self.mtime_ns) if n in cg.children else ControlNode(cg, n, self.mtime_ns))
                for n in kernfs_order([*self.hierarchy.files(cg), *cg.children])]

    def mkdir(self, name: str, ctx: WriteContext) -> Node:
        return CgroupDir(self.hierarchy.mkdir(self._alive(), name), self.mtime_ns)

    def rmdir(self, name: str, ctx: WriteContext) -> None:
        cg = self._alive()
        child = cg.children.get(name)
        if child is None:
            raise KernelError(errno.ENOTDIR if name in self.hierarchy.files(cg) else errno.ENOENT, name)
        self.hierarchy.rmdir(child)

    def rename(self, name: str, new_dir: Node, new_name: str, ctx: WriteContext) -> None:
        cg = self._alive()
        child = cg.children.get(name)
        if child is None:
            # kernfs refuses to rename a file: cgroup1_rename -> ENOTDIR
            raise KernelError(errno.ENOTDIR if name in self.hierarchy.files(cg) else errno.ENOENT, name)
        if not isinstance(new_dir, CgroupDir) or new_dir.hierarchy is not self.hierarchy:
            raise KernelError(errno.EXDEV)
        self.hierarchy.rename(child, new_dir.cgroup, new_name)

    def chmod_chown(self, mode: int | None, uid: int | None, gid: int | None) -> None:
        cg = self._alive()
        cg.hierarchy.set_attrs(cg, ".", mode, uid, gid, time.time_ns())

    def set_times(self, atime_ns: int | None, mtime_ns: int | None) -> None:
        cg = self._alive()
        cg.hierarchy.set_times(cg, ".", atime_ns, mtime_ns, time.time_ns())

    def xattrs(self) -> dict[str, bytes]:
        return _xattrs_of(self._alive(), ".")

    def set_xattr(self, name: str, value: bytes | None) -> None:
        cg = self._alive()
        cg.hierarchy.set_xattr(cg, ".", name, value)


def _with_times(a: Attr, kept: FileAttrs | None) -> Attr:
    if kept is not None:
        if kept.mtime_ns is not None:
            a.mtime_ns = kept.mtime_ns
        a.atime_ns, a.ctime_ns = kept.atime_ns, kept.ctime_ns
    return a


def _xattrs_of(cg: Cgroup, name: str) -> dict[str, bytes]:
    a = cg.attrs.get(name)
    return a.xattrs if a is not None else {}


class ControlNode(Node):
    entry_stable = True
    user_xattr_limits = KERNFS_USER_XATTR_LIMITS
    is_dir = False
    file_type = stat.S_IFREG

    def __init__(self, cgroup: Cgroup, name: str, mtime_ns: int):
        self.cgroup = cgroup
        self.name = name
        self.key = ("cgfile", cgroup.serial, name)
        self.mtime_ns = mtime_ns

    @property
    def gone(self) -> bool:
        # (without rendering the file, as attr() would)
        return self.cgroup.removed or self.name not in self.cgroup.hierarchy.files(self.cgroup)

    @property
    def scope(self):
        return ("cgroup", self.cgroup.serial)

    def affected_scopes(self):
        cg = self.cgroup
        yield ("cgroup", cg.serial)
        for d in cg.descendants():
            yield ("cgroup", d.serial)

    @property
    def volatile(self) -> bool:  # type: ignore[override]
        """Live files (processes, time) change without any operation here."""
        spec = self.cgroup.hierarchy.files(self.cgroup).get(self.name)
        return spec is None or spec.live or self.cgroup.removed

    def _spec(self):
        cg = self.cgroup
        if cg.removed:
            raise KernelError(errno.ENOENT, "cgroup removed")
        spec = cg.hierarchy.files(cg).get(self.name)
        if spec is None:
            raise KernelError(errno.ENOENT, self.name)
        return spec

    def attr(self) -> Attr:
        return self.snapshot(WriteContext())[0]

    def snapshot(self, ctx: WriteContext) -> tuple[Attr, bytes | KernelError]:
        spec = self._spec()
        a = self.cgroup.attrs.get(self.name)
        mode = a.mode if a is not None and a.mode is not None else spec.mode
        content: bytes | KernelError
        try:
            content = self._render(spec)
        except KernelError as exc:
            content = exc
        size = len(content) if isinstance(content, bytes) else 0
        return _with_times(Attr(stat.S_IFREG | mode, uid=a.uid if a else 0, gid=a.gid if a else 0,
                                size=size, mtime_ns=self.mtime_ns), a), content

    def render(self) -> bytes:
        return self._render(self._spec())

    def _render(self, spec) -> bytes:
        if spec.live:
            # Processes that forked or exited just now are placed (or gone)
            # before a membership or statistics file is rendered.
            refresh = self.cgroup.hierarchy.model.refresh
            if refresh is not None:
                refresh()
        return spec.render(self.cgroup).encode("latin-1")

    def render_key(self):
        """A live file renders the same while the model, the machine's
        processes (events from the fork watcher; without it, every read
        renders anew) and the statistics window stay the same."""
        model = self.cgroup.hierarchy.model
        if model.refresh is None:
            return None
        model.refresh()
        epoch = model.stats.epoch() if model.stats is not None else 0
        if epoch is None:
            return None
        return model.generation, model.process_events, epoch

    def write(self, data: bytes, ctx: WriteContext) -> int:
        if self.cgroup.removed:
            # kernfs_fop_write_iter(): a handle whose cgroup was removed is
            # no longer active (measured: ENODEV).
            raise KernelError(errno.ENODEV, "cgroup removed")
        self._spec()
        return self.cgroup.hierarchy.write_file(self.cgroup, self.name, data, ctx)

    def chmod_chown(self, mode: int | None, uid: int | None, gid: int | None) -> None:
        self._spec()
        self.cgroup.hierarchy.set_attrs(self.cgroup, self.name, mode, uid, gid, time.time_ns())

    def set_times(self, atime_ns: int | None, mtime_ns: int | None) -> None:
        self._spec()
        self.cgroup.hierarchy.set_times(self.cgroup, self.name, atime_ns, mtime_ns, time.time_ns())

    def xattrs(self) -> dict[str, bytes]:
        self._spec()
        return _xattrs_of(self.cgroup, self.name)

    def set_xattr(self, name: str, value: bytes | None) -> None:
        self._spec()
        self.cgroup.hierarchy.set_xattr(self.cgroup, self.name, name, value)
