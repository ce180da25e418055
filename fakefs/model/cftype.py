"""How a controller declares its control files (the kernel's ``struct cftype``).

Each controller module builds a table of :class:`ControlFile` entries, in the
style of gVisor's cgroupfs and the kernel's ``cgroup1_base_files``: a name, a
mode, where it appears, how it reads and how a write is parsed and checked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from fakefs.model.errors import einval
from fakefs.model.kparse import PAGE_SIZE, kstrtoull

if TYPE_CHECKING:
    from fakefs.model.cgroup import Cgroup


class Placement(enum.Enum):
    EVERYWHERE = "everywhere"
    ROOT_ONLY = "root-only"  # CFTYPE_ONLY_ON_ROOT
    NOT_ON_ROOT = "not-on-root"  # CFTYPE_NOT_ON_ROOT

    def allows(self, is_root: bool) -> bool:
        if self is Placement.ROOT_ONLY:
            return is_root
        if self is Placement.NOT_ON_ROOT:
            return not is_root
        return True


@dataclass(frozen=True)
class WriteContext:
    """Who is writing: FUSE gives us the caller's thread id and credentials."""

    tid: int = 0
    uid: int = 0
    gid: int = 0


Reader = Callable[["Cgroup"], str]
Writer = Callable[["Cgroup", str, WriteContext], None]


@dataclass(frozen=True)
class ControlFile:
    """One control file. ``read``/``write`` of None mean the kernel has no such
    handler: the open still succeeds for root (DAC override) but the read or
    write fails with EINVAL, exactly as on cgroupfs."""

    name: str
    mode: int
    read: Reader | None = None
    write: Writer | None = None
    placement: Placement = Placement.EVERYWHERE
    max_write_len: int = PAGE_SIZE
    # Content depends on processes or time, not only on stored values.
    live: bool = False

    def render(self, cgroup: "Cgroup") -> str:
        if self.read is None:
            raise einval("file has no read handler")
        return self.read(cgroup)


class Controller:
    """A cgroup v1 subsystem: a table of files plus per-cgroup state.

    Subclasses set ``name`` and ``files`` and implement ``new_state`` (called
    when a cgroup is created; ``cgroup.parent`` is already set, None for the
    root). Optional hooks let a controller veto attaching tasks or removal.
    """

    name: str = ""
    files: tuple[ControlFile, ...] = ()

    def new_state(self, cgroup: "Cgroup") -> Any:
        return None

    def files_for(self, host) -> tuple[ControlFile, ...]:
        """The file table on this machine; override when it depends on the host."""
        return self.files

    def can_attach(self, cgroup: "Cgroup", tids: list[int]) -> None:
        """Raise KernelError to refuse moving ``tids`` into ``cgroup``."""

    def account_live(self, hierarchy, source, members: dict) -> None:
        """Bring this controller's live figures up to ``source`` (a
        model.usage.StatsSource) for ``members`` (tid -> cgroup); see
        model/usage.py. Controllers without live figures do nothing."""

    def state(self, cgroup: "Cgroup") -> Any:
        return cgroup.state[self.name]


@dataclass
class FileAttrs:
    """What kernfs keeps per file beyond the file table (kernfs_iattrs):
    chmod/chown overrides (cgroupfs lets root change these: delegation),
    times set by utime/chmod/chown (None: the mount's time), and extended
    attributes (trusted., security., user.: name -> value)."""

    mode: int | None = None
    uid: int = 0
    gid: int = 0
    atime_ns: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    xattrs: dict[str, bytes] = field(default_factory=dict)

    def set_times(self, atime_ns: int | None, mtime_ns: int | None, ctime_ns: int | None) -> None:
        """utime (None: that time stays); ``ctime_ns``: when (notify_change()
        makes any change of attributes a change of the inode)."""
        if atime_ns is not None:
            self.atime_ns = atime_ns
        if mtime_ns is not None:
            self.mtime_ns = mtime_ns
        if ctime_ns is not None:
            self.ctime_ns = ctime_ns

    def set_xattr(self, name: str, value: bytes | None) -> None:
        """Store one extended attribute, or remove it (None)."""
        if value is None:
            self.xattrs.pop(name, None)
        else:
            self.xattrs[name] = value


def u64_reader(getter: Callable[["Cgroup"], int]) -> Reader:
    return lambda cg: f"{getter(cg)}\n"


def flag_file(name: str, key: str, controller: Controller, placement: Placement = Placement.EVERYWHERE,
              mode: int = 0o644) -> ControlFile:
    """A 0/1 flag stored as attribute ``key`` of the controller's state; any
    non-zero u64 sets it (write_u64 semantics)."""

    def read(cg: "Cgroup") -> str:
        return f"{int(bool(getattr(controller.state(cg), key)))}\n"

    def write(cg: "Cgroup", text: str, ctx: WriteContext) -> None:
        setattr(controller.state(cg), key, kstrtoull(text) != 0)

    return ControlFile(name, mode, read, write, placement)


__all__ = ["Placement", "WriteContext", "ControlFile", "Controller", "FileAttrs",
           "u64_reader", "flag_file", "field"]
