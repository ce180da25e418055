"""A directory of plain files kept in step with a node tree (the same nodes
the FUSE transports serve): the tmpfs backend's state.

Everything on disk is reached relative to two directory fds on the private
tmpfs (the tree and a work directory beside it, which consumers never see):
each path component is opened ``O_DIRECTORY|O_NOFOLLOW``, so a consumer who
swaps a directory for a symlink cannot make the daemon write elsewhere.
File contents are replaced atomically (written in the work directory, then
renamed over), so a reader sees the old or the new content, never a half.

Bookkeeping, per file path relative to the tree:

* ``ours``: the bytes on disk that are accounted for (written by us, or a
  consumer's write we already handled). Disk content that differs is an
  unhandled consumer write, and is never overwritten before it is handled.
* ``rendered``: the node's rendering when it was last compared. A file is
  rewritten when the rendering changes, and after each consumer write it
  handled (taken or refused: it then reads as the kernel's file would).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from typing import Callable

from fakefs.vfs.mergedfs import DIR_FLAGS, dir_beneath
from fakefs.vfs.nodes import Node
from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# What reaching a directory a consumer removed (or replaced by a file or a
# symlink) meanwhile fails with: the directory is gone, not the mirror broken.
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
# Files where each line a consumer leaves is one write() on the kernel (one
# PID or one rule per write): a shell loop appending several ends up here.
LINE_COMMAND_FILES = frozenset({"cgroup.procs", "tasks", "devices.allow", "devices.deny"})
# Who wrote is unknown to inotify: writes are taken as root's, with no thread
# id (so "0" in cgroup.procs, meaning "the writer", cannot be honoured).
CONSUMER = WriteContext(tid=0, uid=0, gid=0)


def join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _kind(node: Node) -> str:
    # By what the node implements, not by attr(): a control file's attr()
    # renders its content (for st_size), which is the expensive part.
    kind = type(node)
    if kind.entries is not Node.entries:
        return "dir"
    if kind.readlink is not Node.readlink:
        return "link"
    return "file"


def is_live(node: Node) -> bool:
    """Content that changes by itself (processes, usage counters): kept
    fresh by the periodic refresh. Everything else changes only on writes."""
    cgroup = getattr(node, "cgroup", None)
    name = getattr(node, "name", None)
    if cgroup is None or name is None or cgroup.removed:
        return False
    spec = cgroup.hierarchy.files(cgroup).get(name)
    return bool(spec is not None and spec.live)


class Mirror:
    def __init__(self, root: Node, tree_fd: int, work_fd: int, log: Callable[[str], None] = print):
        self.root = root
        self.tree_fd = tree_fd
        self.work_fd = work_fd
        self.log = log
        self.dirs: dict[str, Node] = {}  # known directories (rel path -> node)
        self.ours: dict[str, bytes] = {}
        self.rendered: dict[str, bytes] = {}
        self._tmp_names = itertools.count()
        # Called with the rel path of each directory the mirror starts to
        # keep (the watcher adds an inotify watch), and of each it forgets.
        self.on_new_dir: Callable[[str], None] = lambda rel: None
        self.on_gone_dir: Callable[[str], None] = lambda rel: None
        self.on_moved_dir: Callable[[str, str], None] = lambda old, new: None

    # -- disk access ------------------------------------------------------------
    def _dir(self, rel: str):
        """The mirrored directory ``rel`` (never through a symlink)."""
        return dir_beneath(self.tree_fd, rel.split("/") if rel else [])

    def read_disk(self, rel: str) -> bytes | None:
        """A file's bytes on disk; None when it is missing or not a regular file."""
        parent, name = _split(rel)
        try:
            with self._dir(parent) as dfd:
                fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def disk_entries(self, rel: str) -> dict[str, str] | None:
        """name -> "dir"/"file"/"link"/"other" of a directory on disk."""
        try:
            with self._dir(rel) as dfd:
                lfd = os.open(".", DIR_FLAGS, dir_fd=dfd)
                try:
                    with os.scandir(lfd) as it:
                        out = {}
                        for e in it:
                            if e.is_symlink():
                                out[e.name] = "link"
                            elif e.is_dir(follow_symlinks=False):
                                out[e.name] = "dir"
                            elif e.is_file(follow_symlinks=False):
                                out[e.name] = "file"
                            else:
                                out[e.name] = "other"
                        return out
                finally:
                    os.close(lfd)
        except OSError:
            return None

    def _put_file(self, rel: str, node: Node, content: bytes, replace: bool = False) -> None:
        """Atomically make ``rel`` hold ``content``: a new file gets the
        node's mode and owner, a replaced one keeps what it has (a chmod or
        chown by a consumer, as cgroupfs keeps them for delegation)."""
        parent, name = _split(rel)
        with self._dir(parent) as dfd:
            if replace:
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
                except FileNotFoundError:
                    return  # deleted meanwhile: not recreated (see the package docstring)
            else:
                a = node.attr()
                mode, uid, gid = stat.S_IMODE(a.mode), a.uid, a.gid
            tmp = f"f{next(self._tmp_names)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self.work_fd)
            try:
                os.write(fd, content)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            try:
                os.rename(tmp, name, src_dir_fd=self.work_fd, dst_dir_fd=dfd)
            except OSError:
                os.unlink(tmp, dir_fd=self.work_fd)
                raise
        self.ours[rel] = content

    @staticmethod
    def _render(node: Node) -> bytes:
        try:
            return node.render()
        except KernelError:
            return b""  # write-only files (no read handler) are empty

    # -- building ---------------------------------------------------------------
    def render_all(self) -> None:
        a = self.root.attr()
        os.fchmod(self.tree_fd, stat.S_IMODE(a.mode))
        os.fchown(self.tree_fd, a.uid, a.gid)
        self._adopt_dir("", self.root)

    def _adopt_dir(self, rel: str, node: Node, disk: dict[str, str] | None = None) -> list[str]:
        """Make the directory ``rel`` (already on disk) hold the node's entries.

        Files a consumer put there first (the race between mkdir and the
        first write) are kept and returned: they are consumer writes. A
        consumer may remove the directory while it is being filled
        (``mkdir x; rm -rf x``): filling stops there, and the removal's own
        event takes it out of the model."""
        self.dirs[rel] = node
        self.on_new_dir(rel)
        if disk is None:
            disk = self.disk_entries(rel) or {}
        early: list[str] = []
        try:
            for name, child in node.entries():
                path = join(rel, name)
                try:
                    kind = _kind(child)
                except KernelError:
                    continue
                if kind == "dir":
                    if name not in disk:
                        self._mkdir(path, child)
                    early += self._adopt_dir(path, child)
                elif kind == "link":
                    if name not in disk:
                        with self._dir(rel) as dfd:
                            os.symlink(child.readlink(), name, dir_fd=dfd)
                elif name in disk:
                    content = self._render(child)
                    if self.read_disk(path) == content:
                        self.ours[path] = self.rendered[path] = content  # ours from an earlier fill
                    else:
                        early.append(path)
                else:
                    content = self._render(child)
                    self._put_file(path, child, content)
                    self.rendered[path] = content
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
        return early

    def _mkdir(self, rel: str, node: Node) -> None:
        a = node.attr()
        parent, name = _split(rel)
        with self._dir(parent) as dfd:
            os.mkdir(name, 0o700, dir_fd=dfd)
        with self._dir(rel) as fd:
            os.fchown(fd, a.uid, a.gid)
            os.fchmod(fd, stat.S_IMODE(a.mode))

    # -- consumer actions -------------------------------------------------------
    def file_written(self, rel: str) -> bool:
        """A file was closed after writing or moved into place: hand the
        content to the node as write()s. True when the model took it."""
        content = self.read_disk(rel)
        if content is None or content == self.ours.get(rel):
            return False  # gone again, or our own write
        parent, name = _split(rel)
        dnode = self.dirs.get(parent)
        node = None
        if dnode is not None:
            try:
                node = dnode.lookup(name)
                if _kind(node) != "file":
                    node = None
            except KernelError:
                node = None
        self.ours[rel] = content  # accounted for from here on
        if node is None:
            self.log(f"{rel}: not a file of the tree; left as written")
            return False
        accepted = False
        commands = content.splitlines(keepends=True) if name in LINE_COMMAND_FILES else [content]
        for command in commands or [content]:
            try:
                node.write(command, CONSUMER)
                accepted = True
            except KernelError as exc:
                self.log(f"{rel}: write {command[:60]!r} refused: "
                         f"{errno.errorcode.get(exc.errno, exc.errno)} {exc.detail}".rstrip())
        # Taken or refused, the file now reads as the kernel's file would:
        # the model's value, whole (a refused text must not stay to have the
        # next write laid over it).
        self._show(rel, node, content)
        return accepted

    def _show(self, rel: str, node: Node, handled: bytes) -> None:
        """Replace the handled consumer write at ``rel`` by the node's
        rendering, atomically (a reader sees the written text or the value,
        never a mix); not if the consumer wrote again meanwhile (that write
        is handled on its own event) or removed the file."""
        content = self._render(node)
        self.rendered[rel] = content
        if content == handled or self.read_disk(rel) != handled:
            return
        try:
            self._put_file(rel, node, content, replace=True)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise

    def dir_created(self, parent: str, name: str) -> None:
        rel = join(parent, name)
        if rel in self.dirs:
            return  # ours
        dnode = self.dirs.get(parent)
        if dnode is None:
            return
        try:
            node = dnode.mkdir(name, CONSUMER)
        except KernelError as exc:
            self.log(f"{rel}: mkdir refused by the model: {errno.errorcode.get(exc.errno, exc.errno)}; removing it")
            self._remove_tree(rel)
            return
        early = self._adopt_dir(rel, node)
        # mkdir -p: subdirectories made before this one was adopted.
        for sub, kind in sorted((self.disk_entries(rel) or {}).items()):
            if kind == "dir" and join(rel, sub) not in self.dirs:
                self.dir_created(rel, sub)
        for path in early:
            self.file_written(path)

    def dir_removed(self, parent: str, name: str) -> None:
        rel = join(parent, name)
        if rel not in self.dirs:
            return
        dnode = self.dirs.get(parent)
        try:
            if dnode is None:
                raise KernelError(errno.ENOENT, parent)
            dnode.rmdir(name, CONSUMER)
        except KernelError as exc:
            # The kernel would have refused (EBUSY: tasks or children): the
            # cgroup stays, so it comes back on disk.
            self.log(f"{rel}: rmdir refused by the model: {errno.errorcode.get(exc.errno, exc.errno)}; restoring it")
            self._forget(rel)
            try:
                node = dnode.lookup(name) if dnode is not None else None
            except KernelError:
                node = None
            if node is not None and (self.disk_entries(parent) or {}).get(name) is None:
                try:
                    self._mkdir(rel, node)
                except OSError as exc:
                    if exc.errno not in _GONE:
                        raise
                    return  # the parent went too: its own event follows
                self._adopt_dir(rel, node)
            return
        self._forget(rel)

    def dir_renamed(self, old_parent: str, old_name: str, new_parent: str, new_name: str) -> None:
        old, new = join(old_parent, old_name), join(new_parent, new_name)
        if old not in self.dirs or new in self.dirs:
            return
        try:
            src, dst = self.dirs.get(old_parent), self.dirs.get(new_parent)
            if src is None or dst is None:
                raise KernelError(errno.EXDEV, new)
            src.rename(old_name, dst, new_name, CONSUMER)
        except KernelError as exc:
            self.log(f"{old} -> {new}: rename refused by the model: {errno.errorcode.get(exc.errno, exc.errno)}; "
                     f"moving it back")
            with self._dir(new_parent) as nfd, self._dir(old_parent) as ofd:
                os.rename(new_name, old_name, src_dir_fd=nfd, dst_dir_fd=ofd)
            return
        # The nodes stay valid (they hold the model objects); only paths move.
        for table in (self.dirs, self.ours, self.rendered):
            for key in [k for k in table if k == old or k.startswith(old + "/")]:
                table[new + key[len(old):]] = table.pop(key)
        self.on_moved_dir(old, new)

    def _forget(self, rel: str) -> None:
        for table in (self.dirs, self.ours, self.rendered):
            for key in [k for k in table if k == rel or k.startswith(rel + "/")]:
                del table[key]
                if table is self.dirs:
                    self.on_gone_dir(key)

    def _remove_tree(self, rel: str) -> None:
        parent, name = _split(rel)
        disk = self.disk_entries(rel) or {}
        try:
            for sub, kind in disk.items():
                if kind == "dir":
                    self._remove_tree(join(rel, sub))
                else:
                    with self._dir(rel) as dfd:
                        os.unlink(sub, dir_fd=dfd)
            with self._dir(parent) as dfd:
                os.rmdir(name, dir_fd=dfd)
        except OSError as exc:
            if exc.errno not in _GONE:  # removed by the consumer meanwhile: done
                self.log(f"{rel}: cannot remove: {exc.strerror}")

    # -- keeping values fresh ---------------------------------------------------------
    def refresh(self, live_only: bool = False, only: set[str] | None = None) -> int:
        """Rewrite files whose rendering changed (all, the live ones, or the
        paths in ``only``); returns how many."""
        changed = 0
        dirs = self.dirs if only is None else {p: self.dirs[_split(p)[0]] for p in only
                                               if _split(p)[0] in self.dirs}
        for rel, dnode in list(dirs.items()):
            try:
                entries = dnode.entries() if only is None else [(_split(rel)[1], dnode.lookup(_split(rel)[1]))]
                rel = rel if only is None else _split(rel)[0]
            except KernelError:
                continue
            for name, child in entries:
                path = join(rel, name)
                if path in self.dirs or (live_only and not is_live(child)):
                    continue
                try:
                    if _kind(child) != "file":
                        continue
                except KernelError:
                    continue
                content = self._render(child)
                if self.rendered.get(path) == content:
                    continue
                if self.read_disk(path) != self.ours.get(path):
                    continue  # an unhandled consumer write, or deleted: not ours to replace
                try:
                    self._put_file(path, child, content, replace=True)
                except OSError as exc:
                    if exc.errno not in _GONE:  # else removed meanwhile
                        self.log(f"{path}: cannot update: {exc.strerror}")
                    continue
                self.rendered[path] = content
                changed += 1
        return changed

    def resync(self, rel: str = "") -> None:
        """Compare a directory on disk with the model (after a lost event):
        new and removed directories, unhandled writes; recursively."""
        disk = self.disk_entries(rel)
        node = self.dirs.get(rel)
        if disk is None or node is None:
            return
        for name, kind in sorted(disk.items()):
            path = join(rel, name)
            if kind == "dir" and path not in self.dirs:
                self.dir_created(rel, name)
            elif kind == "file" and self.read_disk(path) != self.ours.get(path):
                self.file_written(path)
        for path in [p for p in self.dirs if p and _split(p)[0] == rel]:
            if disk.get(_split(path)[1]) != "dir":
                self.dir_removed(rel, _split(path)[1])
            else:
                self.resync(path)


def _split(rel: str) -> tuple[str, str]:
    parent, _, name = rel.rpartition("/")
    return parent, name
