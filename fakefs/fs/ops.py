"""The filesystem operations every transport shares.

Synchronous and errno-based: a transport (pyfuse3 today, a raw /dev/fuse
server later) translates its requests into these calls and
:class:`KernelError` into replies. Inodes are stable per model object; each
open renders one snapshot that later offsets are served from, and each
write() is one command, as on kernfs.
"""

from __future__ import annotations

import errno
import itertools
import os
from dataclasses import dataclass
from typing import Hashable

from ..model.cftype import WriteContext
from ..model.errors import KernelError
from .nodes import Attr, Node

ROOT_INODE = 1


@dataclass
class Handle:
    node: Node
    snapshot: bytes | None = None
    error: KernelError | None = None
    writable: bool = False


class FsOps:
    def __init__(self, root: Node):
        self.root = root
        self._inodes: dict[int, Node] = {ROOT_INODE: root}
        self._by_key: dict[Hashable, int] = {root.key: ROOT_INODE}
        self._next_inode = itertools.count(ROOT_INODE + 1)
        self._handles: dict[int, Handle] = {}
        self._next_fh = itertools.count(1)

    # -- inode table --------------------------------------------------------
    def inode_of(self, node: Node) -> int:
        ino = self._by_key.get(node.key)
        if ino is None:
            ino = next(self._next_inode)
            self._by_key[node.key] = ino
        self._inodes[ino] = node
        return ino

    def node(self, inode: int) -> Node:
        try:
            return self._inodes[inode]
        except KeyError:
            raise KernelError(errno.ENOENT, f"inode {inode}") from None

    def forget(self, inode: int) -> None:
        """The kernel dropped its last reference; a removed object's entry can go."""
        if inode == ROOT_INODE:
            return
        node = self._inodes.get(inode)
        if node is None:
            return
        try:
            node.attr()
        except KernelError:
            del self._inodes[inode]
            self._by_key.pop(node.key, None)

    # -- metadata -------------------------------------------------------------
    def getattr(self, inode: int) -> Attr:
        return self.node(inode).attr()

    def lookup(self, parent: int, name: str) -> tuple[int, Attr]:
        if name == ".":
            return parent, self.getattr(parent)
        child = self.node(parent).lookup(name)
        return self.inode_of(child), child.attr()

    def readdir(self, inode: int) -> list[tuple[str, int, Attr]]:
        out = []
        for name, child in self.node(inode).entries():
            try:
                out.append((name, self.inode_of(child), child.attr()))
            except KernelError:
                continue  # removed between listing and stat
        return out

    def readlink(self, inode: int) -> str:
        return self.node(inode).readlink()

    def setattr(self, inode: int, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                size: int | None = None) -> Attr:
        node = self.node(inode)
        if size is not None:
            node.truncate(size)
        if mode is not None or uid is not None or gid is not None:
            node.chmod_chown(mode, uid, gid)
        return node.attr()

    # -- namespace changes ------------------------------------------------------
    def mkdir(self, parent: int, name: str, ctx: WriteContext) -> tuple[int, Attr]:
        child = self.node(parent).mkdir(name, ctx)
        return self.inode_of(child), child.attr()

    def rmdir(self, parent: int, name: str, ctx: WriteContext) -> None:
        self.node(parent).rmdir(name, ctx)

    def unlink(self, parent: int, name: str, ctx: WriteContext) -> None:
        node = self.node(parent)
        target = node.lookup(name)
        if target.is_dir:
            raise KernelError(errno.EISDIR, name)
        node.unlink(name, ctx)

    def create(self, parent: int, name: str, ctx: WriteContext) -> None:
        node = self.node(parent)
        try:
            node.lookup(name)
        except KernelError as exc:
            if exc.errno != errno.ENOENT:
                raise
        else:
            raise KernelError(errno.EEXIST, name)
        node.create(name, ctx)

    def rename(self, parent: int, name: str, new_parent: int, new_name: str, ctx: WriteContext) -> None:
        self.node(parent).rename(name, self.node(new_parent), new_name, ctx)

    # -- file I/O ---------------------------------------------------------------
    def open(self, inode: int, flags: int, ctx: WriteContext) -> int:
        node = self.node(inode)
        if node.is_dir:
            raise KernelError(errno.EISDIR)
        accmode = flags & os.O_ACCMODE
        writing = accmode in (os.O_WRONLY, os.O_RDWR)
        node.check_open(writing, ctx)
        handle = Handle(node, writable=writing)
        if accmode in (os.O_RDONLY, os.O_RDWR):
            self._take_snapshot(handle)
        fh = next(self._next_fh)
        self._handles[fh] = handle
        return fh

    @staticmethod
    def _take_snapshot(handle: Handle) -> None:
        try:
            handle.snapshot = handle.node.render()
            handle.error = None
        except KernelError as exc:
            handle.snapshot, handle.error = None, exc

    def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self._handle(fh)
        if offset == 0 and handle.snapshot is not None and handle.writable:
            # A read-write handle sees its own writes: re-render from the start.
            self._take_snapshot(handle)
        if handle.error is not None:
            raise handle.error
        if handle.snapshot is None:
            raise KernelError(errno.EBADF)
        return handle.snapshot[offset:offset + size]

    def write(self, fh: int, offset: int, data: bytes, ctx: WriteContext) -> int:
        handle = self._handle(fh)
        if not handle.writable:
            raise KernelError(errno.EBADF)
        return handle.node.write(data, ctx)

    def release(self, fh: int) -> None:
        self._handles.pop(fh, None)

    def _handle(self, fh: int) -> Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise KernelError(errno.EBADF) from None
