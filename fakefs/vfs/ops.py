"""The filesystem operations every transport shares.

Synchronous and errno-based: a FUSE transport (fakefs.backends: pyfuse3, the
raw /dev/fuse server) translates its requests into these calls and
:class:`KernelError` into replies. Inodes are stable per model object; each
open renders one snapshot that later offsets are served from, and each
write() is one command, as on kernfs.

Caching: a node whose ``volatile`` is False changes only through these
operations. :meth:`FsOps.cache_hints` tells a transport what the kernel may
keep, ``changes`` counts the operations that may have changed something, and
such a node is rendered once per value of ``changes``, not once per open.

What the kernel keeps is kept exactly fresh here, for both transports:

- **Attributes.** Where a transport can tell the kernel to forget
  attributes (``invalidate``, FUSE_NOTIFY_INVAL_INODE without data, which
  never waits for a page lock and so may be sent from inside any request),
  a regular file that is not volatile gets its attributes for as long as
  the kernel likes. Every such file is noted under its node's ``scope``
  (for cgroups: its cgroup). An operation that may change content (a
  write, mkdir, rmdir, rename) renders again, before it returns, the noted
  files of every scope the node it went through names
  (``Node.affected_scopes``: the cgroup and its descendants) and has the
  kernel forget those whose content is not what it was told; the transport
  replies only after that. A written file is left to the kernel, which
  forgets its size and times after every write itself.
- **Pages** (``page_cache``: "stable" where the kernel keeps the pages of
  files that are not volatile, "all" where it keeps every file's, having
  been told it may skip OPEN): the kernel compares a file's mtime and size
  whenever it takes new attributes (FUSE_AUTO_INVAL_DATA) and drops the
  pages it holds when either moved. So every reply that carries a file's
  attributes carries, as mtime, the node's mtime plus a count of the
  contents this file has shown (``Shown.extra_ns``: nanoseconds, a new
  value whenever the content differs from what the last reply stood for,
  and after every write, whose bytes the kernel copies into the page it
  holds); a read request is answered from the content the last reply
  stood for, which is what the kernel's size and pages belong to. Volatile
  files get attributes that expire at once: every read asks for them, and
  sees any change.
"""

from __future__ import annotations

import copy
import errno
import itertools
import os
import stat
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable, Hashable

from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.vfs.nodes import Attr, Node

ROOT_INODE = 1
# The size a file that cannot be read shows where the kernel keeps every
# file's pages (page_cache "all"): a page, as sysfs shows, so that a read
# asks the server and gets its error (size 0 would read as empty).
UNREADABLE_SIZE = 4096


def one_line(text: str) -> str:
    """``text`` safe for a one-line log entry: newlines, other control
    characters and the surrogates that stand for undecodable name bytes
    are shown escaped (a cgroup may be called ``"a\\nb"`` or ``b"\\xff"``)."""
    if text.isprintable():  # lone surrogates are not
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def internal_error(op: str, exc: BaseException, log: Callable[[str], None] = log_to_stderr,
                   outcome: str = "answered EIO") -> KernelError:
    """The answer to a request that failed with anything but a KernelError:
    a bug, or an input nothing foresaw. No caller may kill a server, so each
    transport turns such a failure into EIO for that one request (this
    function's KernelError), logged as one line that says where it was
    raised; the server goes on with the next request."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    log(one_line(f"{op} failed, {outcome}: {type(exc).__name__}: {exc}{where}"))
    return KernelError(errno.EIO, f"internal error in {op}")


def _same(a: bytes | KernelError, b: bytes | KernelError) -> bool:
    """Would a reader see the same: the same bytes, or the same error."""
    if isinstance(a, KernelError) or isinstance(b, KernelError):
        return isinstance(a, KernelError) and isinstance(b, KernelError) and a.errno == b.errno
    return a == b


@dataclass
class Handle:
    node: Node
    snapshot: bytes | None = None
    error: KernelError | None = None
    writable: bool = False
    inode: int = 0
    # Where the last read ended (seq_file's read_pos).
    pos: int = 0
    # Who opened it: content rendered per reader is rendered for the opener.
    ctx: WriteContext | None = None
    # Read through the kernel's page cache: reads are served from what the
    # kernel was last told the file holds (FsOps.read_shown).
    shared: bool = False


@dataclass(slots=True)
class Shown:
    """What the kernel was last told of a regular file whose pages or
    attributes it may keep."""

    content: bytes | KernelError
    # Added to the node's own mtime: one more for each new content.
    extra_ns: int
    node_mtime_ns: int
    scope: Hashable
    # Its attributes were given for as long as the kernel likes (noted in
    # FsOps._kept under ``scope`` until a change makes the kernel forget).
    kept: bool = False
    # Written to: the next reply carries a new mtime even if the content is
    # the same (the written bytes are in the page the kernel holds).
    written: bool = False


class FsOps:
    def __init__(self, root: Node):
        self.root = root
        self._inodes: dict[int, Node] = {ROOT_INODE: root}
        self._by_key: dict[Hashable, int] = {root.key: ROOT_INODE}
        self._next_inode = itertools.count(ROOT_INODE + 1)
        # Where each inode was found (names from the root), so that a server
        # restarted on a connection the kernel kept (supervisor.py) can give
        # the kernel's node ids their nodes again: restore_inodes().
        self._paths: dict[int, tuple[str, ...]] = {ROOT_INODE: ()}
        # The directory each inode was found in, for the ".." of a listing.
        self._parents: dict[int, int] = {ROOT_INODE: ROOT_INODE}
        # Set to a list to collect what a restart needs, as it happens:
        # ("inode", ino, path) and ("rename", old_path, new_path).
        self.path_events: list | None = None
        self._handles: dict[int, Handle] = {}
        self._next_fh = itertools.count(1)
        # Bumped by every operation that may change a node (also when it
        # fails: a refused command may have done part of its work).
        self.changes = 0
        # Renderings of non-volatile nodes, valid while ``changes`` stays.
        self._renders: dict[int, bytes] = {}
        self._renders_at = 0
        # Set by the transport (see the module doc): which files' pages the
        # kernel keeps (None, "stable" or "all"), and how it is told to
        # forget the attributes of some inodes (None: it keeps no
        # attributes of regular files that are not volatile).
        self.page_cache: str | None = None
        self.invalidate: Callable[[list[int]], None] | None = None
        self._shown: dict[int, Shown] = {}
        # Volatile files' last snapshot, by inode: (Node.render_key, attr, content).
        self._memo: dict[int, tuple] = {}
        # scope -> inodes whose attributes the kernel keeps until told (a
        # list: a scope holds a cgroup's few files, and a list of one costs
        # a quarter of a set of one, times 10,000 cgroups).
        self._kept: dict[Hashable, list[int]] = {}

    def _changed(self) -> None:
        self.changes += 1

    def cache_hints(self, inode: int) -> tuple[bool, bool]:
        """(entry, attributes): may the kernel keep the name -> inode binding,
        and this inode's attributes, until told otherwise? Entries of a tree
        whose names change only through these operations can be kept (the
        kernel sees every mkdir/rmdir/rename); attributes only of nodes that
        are not volatile (their content changes only through a write here),
        and of a regular file only where the kernel can be told to forget
        them (``invalidate``)."""
        node = self._inodes.get(inode)
        if node is None:
            return False, False
        try:
            volatile = node.volatile
            if not volatile and self.invalidate is None:
                volatile = node.file_type == stat.S_IFREG
        except KernelError:
            return False, False
        return bool(getattr(node, "entry_stable", not node.volatile)), not volatile

    # -- inode table --------------------------------------------------------
    def inode_of(self, node: Node, parent: int | None = None, name: str | None = None) -> int:
        ino = self._by_key.get(node.key)
        if ino is None:
            ino = next(self._next_inode)
            self._by_key[node.key] = ino
        self._inodes[ino] = node
        if parent is not None:
            self._parents[ino] = parent
        if parent is not None and ino not in self._paths:
            base = self._paths.get(parent)
            if base is not None:
                self._paths[ino] = path = (*base, name)
                if self.path_events is not None:
                    self.path_events.append(("inode", ino, path))
        return ino

    def restore_inodes(self, paths: dict[int, tuple[str, ...]]) -> int:
        """Give inode numbers a previous server handed out their nodes again,
        found by the names they were reached by; a path that no longer
        resolves (removed meanwhile) is skipped. New inodes are numbered
        after all of them. Returns how many were restored."""
        restored = 0
        for ino, path in sorted(paths.items()):
            if ino == ROOT_INODE:
                continue
            node = self.root
            try:
                for part in path:
                    node = node.lookup(part)
            except KernelError:
                continue
            old = self._by_key.get(node.key)
            if old is not None and old != ino:
                self._inodes.pop(old, None)
                self._paths.pop(old, None)
            self._by_key[node.key] = ino
            self._inodes[ino] = node
            self._paths[ino] = tuple(path)
            restored += 1
        top = max([ROOT_INODE, *paths, *self._inodes])
        self._next_inode = itertools.count(top + 1)
        return restored

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
        self._unkeep(inode)
        self._shown.pop(inode, None)
        self._memo.pop(inode, None)
        if node.gone:
            del self._inodes[inode]
            self._paths.pop(inode, None)
            self._parents.pop(inode, None)
            self._by_key.pop(node.key, None)

    # -- metadata -------------------------------------------------------------
    def getattr(self, inode: int, ctx: WriteContext | None = None) -> Attr:
        """``ctx``: who asks (a file rendered per reader reports the size of
        what that reader reads)."""
        return self._report(inode, self.node(inode), ctx)

    def lookup(self, parent: int, name: str, ctx: WriteContext | None = None) -> tuple[int, Attr]:
        if name == ".":
            return parent, self.getattr(parent, ctx)
        child = self.node(parent).lookup(name)
        ino = self.inode_of(child, parent, name)
        return ino, self._report(ino, child, ctx)

    def readdir(self, inode: int, start: int = 0) -> list[tuple[str, int, Attr]]:
        """Entries from index ``start`` on, with their attributes
        (READDIRPLUS): "." and ".." first as every Linux filesystem lists
        them (dir_emit_dots(); ".." of the root is the root)."""
        out = []
        for name, ino, child in self._entries(inode)[start:]:
            try:
                out.append((name, ino, self._report(ino, child, None)))
            except KernelError:
                continue  # removed between listing and stat
        return out

    def _parent_of(self, inode: int) -> int:
        parent = self._parents.get(inode)
        if parent is None:
            # Restored by a restarted server (restore_inodes) and not looked
            # up since: found by its path, once.
            path = self._paths.get(inode)
            parent = next((i for i, p in self._paths.items() if path and p == path[:-1] and i in self._inodes),
                          ROOT_INODE)
            self._parents[inode] = parent
        return parent

    def listdir(self, inode: int) -> list[tuple[str, int, int]]:
        """Entries with their file type (S_IFDIR, ...) only (READDIR): no
        file is rendered."""
        out = []
        for name, ino, child in self._entries(inode):
            try:
                out.append((name, ino, child.file_type))
            except KernelError:
                continue
        return out

    def _entries(self, inode: int) -> list[tuple[str, int, Node]]:
        """(name, inode, node) of a directory's entries, "." and ".." first."""
        node = self.node(inode)
        children = node.entries()
        parent = self._parent_of(inode)
        return [(".", inode, node), ("..", parent, self.node(parent)),
                *((name, self.inode_of(child, inode, name), child) for name, child in children)]

    def _report(self, inode: int, node: Node, ctx: WriteContext | None) -> Attr:
        """The attributes a reply hands the kernel. For a regular file whose
        pages or attributes the kernel may keep, what they stand for is
        noted (Shown) and the mtime moves with the content (module doc)."""
        ctx = ctx or WriteContext()
        if node.file_type != stat.S_IFREG:
            return node.attr_for(ctx)
        pages = self._pages_kept(node)
        keep = self.invalidate is not None and not node.volatile
        if not (pages or keep):
            key = node.render_key()
            return node.attr_for(ctx) if key is None else self._memoized(inode, node, ctx, key)[0]
        attr, content = self._snapshot(inode, node, ctx)
        shown = self._shown.get(inode)
        if shown is None:
            shown = self._shown[inode] = Shown(content, 0, attr.mtime_ns, node.scope)
        elif shown.written or not _same(shown.content, content) or shown.node_mtime_ns != attr.mtime_ns:
            # A new content, or a new mtime of the node's own (utime): the
            # kernel's pages no longer stand for what the file holds.
            shown.extra_ns = 0 if shown.node_mtime_ns != attr.mtime_ns else shown.extra_ns + 1
            shown.content, shown.node_mtime_ns, shown.written = content, attr.mtime_ns, False
        if pages:
            attr.mtime_ns += shown.extra_ns
            if isinstance(content, KernelError) and self.page_cache == "all":
                # A read of this file fails; the kernel asks only for bytes
                # below the size, and nothing below it reaches the page cache.
                attr.size = UNREADABLE_SIZE
        if keep:
            self._keep(inode, shown)
        return attr

    def _pages_kept(self, node: Node) -> bool:
        return self.page_cache == "all" or (self.page_cache == "stable" and not node.volatile)

    def _keep(self, inode: int, shown: Shown) -> None:
        if not shown.kept:
            shown.kept = True
            self._kept.setdefault(shown.scope, []).append(inode)

    def _unkeep(self, inode: int) -> None:
        shown = self._shown.get(inode)
        if shown is not None and shown.kept:
            shown.kept = False
            kept = self._kept[shown.scope]
            kept.remove(inode)
            if not kept:
                del self._kept[shown.scope]

    def _settle(self, scopes: Iterable[Hashable], written: int = 0) -> None:
        """After an operation that may have changed content, before its
        reply: the kernel forgets the attributes it keeps of every file in
        ``scopes`` whose content is no longer what it was told. ``written``:
        the file a write went to (the kernel forgets its size and times
        itself after the write; its next reply carries a new mtime)."""
        if written:
            shown = self._shown.get(written)
            if shown is not None:
                shown.written = True
                self._unkeep(written)
        if self.invalidate is None:
            return
        stale = []
        for scope in scopes:
            for ino in list(self._kept.get(scope, ())):
                if not _same(self._shown[ino].content, self._content_now(ino)):
                    stale.append(ino)
                    self._unkeep(ino)
        if stale:
            self.invalidate(stale)

    def _content_now(self, inode: int) -> bytes | KernelError:
        node = self._inodes.get(inode)
        if node is None:
            return KernelError(errno.ENOENT)
        try:
            return self._snapshot(inode, node, WriteContext())[1]
        except KernelError as exc:  # removed
            return exc

    def _snapshot(self, inode: int, node: Node, ctx: WriteContext) -> tuple[Attr, bytes | KernelError]:
        """node.snapshot(), once per render_key of a volatile file (three
        requests of one open+read+read of a statistics file render once)."""
        key = node.render_key()
        if key is None:
            return node.snapshot(ctx)
        return self._memoized(inode, node, ctx, key)

    def _memoized(self, inode: int, node: Node, ctx: WriteContext, key) -> tuple[Attr, bytes | KernelError]:
        memo = self._memo.get(inode)
        if memo is None or memo[0] != key:
            attr, content = node.snapshot(ctx)
            memo = self._memo[inode] = (key, attr, content)
        # The attributes are shared with later calls: a copy to change.
        return copy.copy(memo[1]), memo[2]

    def read_shown(self, inode: int, offset: int, size: int, ctx: WriteContext | None = None) -> bytes:
        """A read through the kernel's page cache: the bytes of the content
        its size and pages stand for (a reply told it so); a file it was
        told nothing of is rendered now."""
        shown = self._shown.get(inode)
        if shown is None:
            self.getattr(inode, ctx)
            shown = self._shown.get(inode)
            if shown is None:
                raise KernelError(errno.EBADF, "not a file the kernel keeps pages of")
        content = shown.content
        if isinstance(content, KernelError):
            raise content
        return content[offset:offset + size]

    def readlink(self, inode: int) -> str:
        return self.node(inode).readlink()

    def setattr(self, inode: int, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                size: int | None = None, atime_ns: int | None = None, mtime_ns: int | None = None) -> Attr:
        # What it changes is in its reply (mode, owner, times); truncation
        # is accepted and ignored by control files.
        node = self.node(inode)
        self._changed()
        if size is not None:
            node.truncate(size)
        if mode is not None or uid is not None or gid is not None:
            node.chmod_chown(mode, uid, gid)
        if atime_ns is not None or mtime_ns is not None:
            node.set_times(atime_ns, mtime_ns)
        return self._report(inode, node, None)

    # -- extended attributes ------------------------------------------------------
    # The VFS has checked what it checks for every filesystem before a
    # request gets here (name and value sizes, trusted.* only for
    # CAP_SYS_ADMIN, user.* only on files and directories, write permission,
    # system.posix_acl_*); what is left is the filesystem's handlers: kernfs
    # (and tmpfs) have one for each of these namespaces.
    XATTR_NAMESPACES = ("security.", "trusted.", "user.")

    @classmethod
    def _xattr_namespace(cls, name: str) -> str:
        """xattr_resolve_name(): no handler for the prefix is EOPNOTSUPP,
        the bare prefix EINVAL."""
        prefix = next((p for p in cls.XATTR_NAMESPACES if name.startswith(p)), None)
        if prefix is None:
            raise KernelError(errno.EOPNOTSUPP, name)
        if name == prefix:
            raise KernelError(errno.EINVAL, f"empty {prefix} attribute name")
        return prefix

    def getxattr(self, inode: int, name: str) -> bytes:
        node = self.node(inode)
        self._xattr_namespace(name)
        value = node.xattrs().get(name)
        if value is None:
            raise KernelError(errno.ENODATA, name)
        return value

    def listxattr(self, inode: int, ctx: WriteContext) -> list[str]:
        """Names of the node's attributes; trusted.* only to root (kernfs'
        simple_xattr_list() leaves them out for callers without
        CAP_SYS_ADMIN). A filesystem without attributes lists none."""
        node = self.node(inode)
        try:
            names = sorted(node.xattrs())
        except KernelError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise
            return []
        return names if ctx.uid == 0 else [n for n in names if not n.startswith("trusted.")]

    def setxattr(self, inode: int, name: str, value: bytes, flags: int, ctx: WriteContext) -> None:
        node = self.node(inode)
        prefix = self._xattr_namespace(name)
        table = node.xattrs()
        if prefix == "user." and node.user_xattr_limits is not None:
            # kernfs_vfs_user_xattr_add(): counted as one more attribute and
            # its whole value before it looks whether the name exists.
            most, most_bytes = node.user_xattr_limits
            users = [v for n, v in table.items() if n.startswith("user.")]
            if len(users) + 1 > most or sum(map(len, users)) + len(value) > most_bytes:
                raise KernelError(errno.ENOSPC, f"{prefix} attributes full")
        if flags & os.XATTR_CREATE and name in table:
            raise KernelError(errno.EEXIST, name)
        if flags & os.XATTR_REPLACE and name not in table:
            raise KernelError(errno.ENODATA, name)
        self._changed()
        node.set_xattr(name, bytes(value))

    def removexattr(self, inode: int, name: str, ctx: WriteContext) -> None:
        node = self.node(inode)
        self._xattr_namespace(name)
        if name not in node.xattrs():
            raise KernelError(errno.ENODATA, name)
        self._changed()
        node.set_xattr(name, None)

    # -- namespace changes ------------------------------------------------------
    def mkdir(self, parent: int, name: str, ctx: WriteContext) -> tuple[int, Attr]:
        self._changed()
        node = self.node(parent)
        try:
            child = node.mkdir(name, ctx)
        finally:
            self._settle(node.affected_scopes())
        ino = self.inode_of(child, parent, name)
        return ino, self._report(ino, child, ctx)

    def rmdir(self, parent: int, name: str, ctx: WriteContext) -> None:
        self._changed()
        node = self.node(parent)
        try:
            gone = node.lookup(name)
        except KernelError:
            gone = None
        try:
            node.rmdir(name, ctx)
        finally:
            # The removed cgroup's files now fail as the kernel's do.
            self._settle([*node.affected_scopes(), *(gone.affected_scopes() if gone is not None else ())])

    def unlink(self, parent: int, name: str, ctx: WriteContext) -> None:
        node = self.node(parent)
        target = node.lookup(name)
        if target.is_dir:
            raise KernelError(errno.EISDIR, name)
        self._changed()
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
        self._changed()
        node.create(name, ctx)

    def rename(self, parent: int, name: str, new_parent: int, new_name: str, ctx: WriteContext) -> None:
        self._changed()
        node, new_node = self.node(parent), self.node(new_parent)
        try:
            node.rename(name, new_node, new_name, ctx)
        finally:
            self._settle([*node.affected_scopes(), *new_node.affected_scopes()])
        base, new_base = self._paths.get(parent), self._paths.get(new_parent)
        if base is None or new_base is None:
            return
        old, new = (*base, name), (*new_base, new_name)
        for ino, path in list(self._paths.items()):
            if path[:len(old)] == old:
                self._paths[ino] = new + path[len(old):]
        if self.path_events is not None:
            self.path_events.append(("rename", old, new))

    # -- file I/O ---------------------------------------------------------------
    def open(self, inode: int, flags: int, ctx: WriteContext) -> int:
        node = self.node(inode)
        if node.is_dir:
            raise KernelError(errno.EISDIR)
        accmode = flags & os.O_ACCMODE
        writing = accmode in (os.O_WRONLY, os.O_RDWR)
        # O_TRUNC asks for MAY_WRITE whatever the access mode (build_open_flags).
        node.check_open(writing or bool(flags & os.O_TRUNC), ctx)
        handle = Handle(node, writable=writing, inode=inode, ctx=ctx)
        if accmode in (os.O_RDONLY, os.O_RDWR):
            self._take_snapshot(handle)
            # Through the page cache unless a read of it fails (the error
            # must reach the reader: only a direct read asks the server).
            handle.shared = accmode == os.O_RDONLY and self._pages_kept(node) and handle.error is None
        fh = next(self._next_fh)
        self._handles[fh] = handle
        return fh

    def shares_pages(self, fh: int) -> bool:
        """Whether reads through this handle may come from the kernel's
        page cache (else: direct I/O from the handle's snapshot)."""
        return self._handle(fh).shared

    def _take_snapshot(self, handle: Handle) -> None:
        try:
            handle.snapshot = self._render(handle)
            handle.error = None
        except KernelError as exc:
            handle.snapshot, handle.error = None, exc

    def _render(self, handle: Handle) -> bytes:
        node = handle.node
        if node.volatile or not handle.inode:
            if not handle.inode:
                return node.render_for(handle.ctx or WriteContext())
            content = self._snapshot(handle.inode, node, handle.ctx or WriteContext())[1]
            if isinstance(content, KernelError):
                raise content
            return content
        if self._renders_at != self.changes:
            self._renders.clear()
            self._renders_at = self.changes
        data = self._renders.get(handle.inode)
        if data is None:
            data = self._renders[handle.inode] = node.render()
        return data

    def read(self, fh: int, offset: int, size: int) -> bytes:
        handle = self._handle(fh)
        if handle.shared:
            return self.read_shown(handle.inode, offset, size, handle.ctx)
        if handle.snapshot is not None and (offset != handle.pos or (offset == 0 and handle.writable)):
            # seq_file: reading on where the last read ended continues the
            # snapshot; a read anywhere else (pread(fd, n, 0) of a monitor
            # that keeps its fd) renders anew, as kernfs does. A read-write
            # handle also sees its own writes from the start.
            self._take_snapshot(handle)
        if handle.error is not None:
            raise handle.error
        if handle.snapshot is None:
            raise KernelError(errno.EBADF)
        data = handle.snapshot[offset:offset + size]
        handle.pos = offset + len(data)
        return data

    def write(self, fh: int, offset: int, data: bytes, ctx: WriteContext) -> int:
        handle = self._handle(fh)
        if not handle.writable:
            raise KernelError(errno.EBADF)
        return self._write(handle.inode, handle.node, data, ctx)

    def write_inode(self, inode: int, offset: int, data: bytes, ctx: WriteContext) -> int:
        """A write the kernel sends without an open handle (no OPEN: the
        kernel checked the file's mode bits when it was opened)."""
        node = self.node(inode)
        if node.is_dir:
            raise KernelError(errno.EISDIR)
        return self._write(inode, node, data, ctx)

    def _write(self, inode: int, node: Node, data: bytes, ctx: WriteContext) -> int:
        # One command per write(); also a refused one may have done part of
        # its work, so what it may have changed is settled either way.
        self._changed()
        try:
            return node.write(data, ctx)
        finally:
            self._settle(node.affected_scopes(), written=inode)

    def handle_inode(self, fh: int) -> int:
        """The inode an open file handle is for (0 when unknown)."""
        handle = self._handles.get(fh)
        return handle.inode if handle is not None else 0

    def release(self, fh: int) -> None:
        self._handles.pop(fh, None)

    def _handle(self, fh: int) -> Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise KernelError(errno.EBADF) from None
