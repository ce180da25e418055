"""The node interface the operations layer serves.

A tree (the cgroup hierarchies, the /proc/sys overlays, the /proc views)
exposes directories, files and symlinks as nodes. Nodes are cheap views over the model, created on
demand; ``key`` identifies the object behind a node so that the inode table
can give it the same inode every time.
"""

from __future__ import annotations

import errno
import stat
from dataclasses import dataclass
from typing import Hashable, Iterable

from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError


@dataclass
class Attr:
    mode: int  # including the file type bits
    uid: int = 0
    gid: int = 0
    size: int = 0
    nlink: int = 1
    mtime_ns: int = 0
    # None: the same as mtime_ns (nodes that keep one time only).
    atime_ns: int | None = None
    ctime_ns: int | None = None

    @property
    def times_ns(self) -> tuple[int, int, int]:
        """(atime, mtime, ctime) in nanoseconds."""
        m = self.mtime_ns
        return (m if self.atime_ns is None else self.atime_ns, m, m if self.ctime_ns is None else self.ctime_ns)


class Node:
    key: Hashable

    def attr(self) -> Attr:
        raise NotImplementedError

    def attr_for(self, ctx: WriteContext) -> Attr:
        """The attributes as the caller ``ctx`` sees them (see render_for)."""
        return self.attr()

    def snapshot(self, ctx: WriteContext) -> tuple[Attr, bytes | KernelError]:
        """A file's attributes and its content (or the error reading it
        gives) as ``ctx`` sees them now, from one rendering where a node
        can (its size is the length of its content)."""
        try:
            content: bytes | KernelError = self.render_for(ctx)
        except KernelError as exc:
            content = exc
        return self.attr_for(ctx), content

    @property
    def gone(self) -> bool:
        """Removed (its object no longer exists): the inode may be dropped
        once the kernel forgets it."""
        try:
            self.attr()
        except KernelError:
            return True
        return False

    def render_key(self) -> Hashable | None:
        """For a volatile file: a value that stays the same for as long as
        its rendering does (the operations layer renders it once per value);
        None: render it every time."""
        return None

    @property
    def file_type(self) -> int:
        """S_IFDIR, S_IFREG, S_IFLNK, ... (a listing needs no more)."""
        return stat.S_IFMT(self.attr().mode)

    # Directories -------------------------------------------------------
    def lookup(self, name: str) -> "Node":
        raise KernelError(errno.ENOTDIR)

    def entries(self) -> list[tuple[str, "Node"]]:
        raise KernelError(errno.ENOTDIR)

    def mkdir(self, name: str, ctx: WriteContext) -> "Node":
        raise KernelError(errno.EPERM)

    def rmdir(self, name: str, ctx: WriteContext) -> None:
        raise KernelError(errno.EPERM)

    def unlink(self, name: str, ctx: WriteContext) -> None:
        # VFS gives EPERM when the directory has no ->unlink (kernfs, procfs).
        raise KernelError(errno.EPERM)

    def create(self, name: str, ctx: WriteContext) -> "Node":
        # lookup_open(): no ->create in the directory -> EACCES.
        raise KernelError(errno.EACCES)

    def rename(self, name: str, new_dir: "Node", new_name: str, ctx: WriteContext) -> None:
        raise KernelError(errno.EPERM)

    # Files --------------------------------------------------------------
    def check_open(self, writing: bool, ctx: WriteContext) -> None:
        """Refusals beyond the mode bits (e.g. sysctl's own check)."""

    def render(self) -> bytes:
        raise KernelError(errno.EISDIR)

    def render_for(self, ctx: WriteContext) -> bytes:
        """The content as the caller ``ctx`` sees it (the same for everyone
        but a file rendered per reader, such as the /proc views)."""
        return self.render()

    def write(self, data: bytes, ctx: WriteContext) -> int:
        raise KernelError(errno.EISDIR)

    def truncate(self, size: int) -> None:
        """``echo x > file`` truncates first; control files accept and ignore it."""

    def chmod_chown(self, mode: int | None, uid: int | None, gid: int | None) -> None:
        raise KernelError(errno.EPERM)

    def set_times(self, atime_ns: int | None, mtime_ns: int | None) -> None:
        """utime(2) (None: leave that time). Nodes that keep no times of
        their own accept it and keep showing theirs."""

    # Extended attributes ---------------------------------------------------
    # (how many, how many value bytes) of user.* attributes a node holds at
    # most, or None for no limit of the filesystem's own.
    user_xattr_limits: tuple[int, int] | None = None

    def xattrs(self) -> dict[str, bytes]:
        """The node's extended attributes, name -> value (read only: change
        them with set_xattr). EOPNOTSUPP where the filesystem has none
        (procfs)."""
        raise KernelError(errno.EOPNOTSUPP)

    def set_xattr(self, name: str, value: bytes | None) -> None:
        """Store (or with None remove) one extended attribute; the rules
        (namespaces, flags, limits) are FsOps's."""
        raise KernelError(errno.EOPNOTSUPP)

    # Symlinks -----------------------------------------------------------
    def readlink(self) -> str:
        raise KernelError(errno.EINVAL)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.attr().mode)

    # Volatile content changes without any operation of the filesystem (live
    # figures, per-reader renderings, real files underneath): the kernel may
    # keep its attributes for no time at all.
    volatile: bool = True

    # Caching by change scopes (fakefs.vfs.ops): a change made through a
    # node (a write to it, mkdir/rmdir/rename in it) may change the content
    # of the files in ``affected_scopes()``; each file belongs to ``scope``.
    @property
    def scope(self) -> Hashable:
        return self.key

    def affected_scopes(self) -> Iterable[Hashable]:
        return (self.scope,)

    # Set on the root of a tree that may be served without FUSE OPEN (the
    # kernel then keeps every file's pages, fakefs.vfs.ops): no node checks
    # an open beyond the mode bits (check_open) or renders per reader.
    serves_without_open: bool = False
