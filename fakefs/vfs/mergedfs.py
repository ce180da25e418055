"""Nodes that overlay a REAL directory with SYNTHETIC entries.

fakefs mounts its own view over a few real directories (/proc/sys/kernel,
/proc/sys/net/netfilter, /sys/module/nf_conntrack/parameters, ...) to add
entries a sandbox lacks, without hiding what is really there:

* :class:`RealDir`, :class:`RealFile`, :class:`RealSymlink` are a passthrough
  view of a real directory. Every access is relative to a directory fd
  (``openat``/``fstatat``/``fdopendir``), the top one opened by the caller
  BEFORE anything is mounted over the path, so the view keeps reaching the
  real directory underneath the mount, and never follows a symlink: every
  component is opened with ``O_NOFOLLOW`` relative to its parent's fd, and
  real symlinks are shown as symlinks (the sandbox's kernel resolves them in
  its own namespace, as it would without fakefs).
* :class:`MergedDir` shows real entries plus synthetic ones; authentic
  first: a synthetic entry replaces a real one of the same name only if it
  says so (``overrides_real``). Synthetic subdirectories given as dicts merge
  recursively with the real subdirectory of the same name, if any.
* :class:`SyntheticFile` is a small generic synthetic file.
* :class:`StagingRoot` is a plain root whose children are the merged views,
  so one FUSE mount serves several overlays that are then bind-mounted over
  their real paths.

Namespace changes inside merged directories fail like procfs (measured on
Linux 6.18 as root): proc_sys_lookup() returns -ENOENT for an unknown name
instead of a negative dentry, so mkdir/creat of a new name give ENOENT; for an
existing entry, may_delete()/may_create() ask proc_sys_permission(), whose
sysctl_perm() refuses MAY_WRITE on a 0555 directory even to root, so
rmdir/unlink/rename give EACCES; chmod/chown give EPERM (proc_sys_setattr()).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from contextlib import contextmanager
from typing import Callable, Hashable, Iterator, Mapping, Union

from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.vfs.nodes import Attr, Node

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: if a real file was swapped for a FIFO, opening it must not hang
# the daemon (the fstat check below then refuses it). Harmless on procfs.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_READ_CHUNK = 1 << 16


def _kerr(exc: OSError, detail: str = "") -> KernelError:
    return KernelError(exc.errno or errno.EIO, detail or str(exc))


def _check_name(name: str) -> None:
    # The kernel never sends these, but a lookup of ".." relative to the top
    # fd would leave the covered directory.
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise KernelError(errno.ENOENT, repr(name))


class DirFd:
    """Owner of the directory fd a real view is relative to.

    Open it before mounting anything over ``path``; afterwards the fd still
    designates the directory underneath the mount."""

    def __init__(self, fd: int, owned: bool = True):
        self.fd = fd
        self.owned = owned
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory fd")
        # Identifies the real directory in inode keys: two views of different
        # directories never share a key, and the same view keeps its keys.
        self.token = (st.st_dev, st.st_ino)

    @classmethod
    def open(cls, path: str) -> "DirFd":
        return cls(os.open(path, DIR_FLAGS))

    def close(self) -> None:
        if self.owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> "DirFd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _owner(dirfd_owner: "DirFd | int") -> DirFd:
    return dirfd_owner if isinstance(dirfd_owner, DirFd) else DirFd(dirfd_owner, owned=False)


def _split(relpath: str) -> tuple[str, ...]:
    parts = tuple(p for p in relpath.split("/") if p)
    for p in parts:
        _check_name(p)
    return parts


def open_dir_beneath(top_fd: int, parts) -> int:
    """An fd for the directory ``parts`` below ``top_fd``, each component
    opened O_DIRECTORY|O_NOFOLLOW relative to its parent, so a directory
    replaced by a symlink is never entered. Returns ``top_fd`` itself for no
    parts (the caller closes any other fd); raises the failing os.open's
    OSError, whose filename is the component."""
    fd = top_fd
    try:
        for part in parts:
            nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            if fd != top_fd:
                os.close(fd)
            fd = nfd
    except BaseException:
        if fd != top_fd:
            os.close(fd)
        raise
    return fd


@contextmanager
def dir_beneath(top_fd: int, parts) -> Iterator[int]:
    """open_dir_beneath() for the length of a ``with`` block."""
    fd = open_dir_beneath(top_fd, parts)
    try:
        yield fd
    finally:
        if fd != top_fd:
            os.close(fd)


@contextmanager
def _open_dir(owner: DirFd, parts: tuple[str, ...]) -> Iterator[int]:
    """dir_beneath() of the owner's fd, with failures as the view's errnos."""
    if owner.fd < 0:
        raise KernelError(errno.ENOENT, "real view closed")
    try:
        fd = open_dir_beneath(owner.fd, parts)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            # The directory this node stood for is gone (now a symlink or a
            # file): the node no longer exists.
            raise KernelError(errno.ENOENT, exc.filename) from None
        raise _kerr(exc, exc.filename) from None
    try:
        yield fd
    finally:
        if fd != owner.fd:
            os.close(fd)


def _attr_of(st: os.stat_result, size: int | None = None) -> Attr:
    return Attr(st.st_mode, uid=st.st_uid, gid=st.st_gid,
                size=st.st_size if size is None else size, nlink=st.st_nlink, mtime_ns=st.st_mtime_ns)


def _real_node(owner: DirFd, parts: tuple[str, ...], st: os.stat_result) -> Node | None:
    if stat.S_ISDIR(st.st_mode):
        return RealDir(owner, "/".join(parts))
    if stat.S_ISREG(st.st_mode):
        return RealFile(owner, "/".join(parts))
    if stat.S_ISLNK(st.st_mode):
        return RealSymlink(owner, "/".join(parts))
    # FIFOs, sockets and devices are not served: opening them could block or
    # act on a device. /proc/sys and sysfs parameter dirs have none.
    return None


class _RealEntry(Node):
    kind = "?"

    def __init__(self, dirfd_owner: "DirFd | int", relpath: str = ""):
        self.owner = _owner(dirfd_owner)
        self.parts = _split(relpath)
        self.relpath = "/".join(self.parts)
        # By path and kind, not by the real inode number: procfs allocates a
        # new inode number whenever a dentry is re-instantiated. The kind
        # keeps a name that changed type from reusing the old inode.
        self.key = ("real", self.owner.token, self.relpath, self.kind)

    def _parent(self):
        return _open_dir(self.owner, self.parts[:-1])

    def _lstat(self, want) -> os.stat_result:
        with self._parent() as pfd:
            try:
                st = os.stat(self.parts[-1], dir_fd=pfd, follow_symlinks=False)
            except OSError as exc:
                raise _kerr(exc, self.relpath) from None
        if not want(st.st_mode):
            raise KernelError(errno.ENOENT, f"{self.relpath} changed type")
        return st

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.relpath!r})"


class _ProcfsDirRules:
    """Namespace changes in a covered directory are refused as procfs refuses
    them (see the module docstring): ENOENT for new names, EACCES otherwise."""

    def mkdir(self, name: str, ctx: WriteContext) -> Node:
        return _refuse_create(self, name)

    def create(self, name: str, ctx: WriteContext) -> Node:
        return _refuse_create(self, name)

    def rmdir(self, name: str, ctx: WriteContext) -> None:
        _refuse_remove(self, name)

    def unlink(self, name: str, ctx: WriteContext) -> None:
        _refuse_remove(self, name)

    def rename(self, name: str, new_dir: Node, new_name: str, ctx: WriteContext) -> None:
        _refuse_remove(self, name)


class RealDir(_ProcfsDirRules, _RealEntry):
    """A real directory, seen through fds only."""

    kind = "dir"

    def attr(self) -> Attr:
        with _open_dir(self.owner, self.parts) as fd:
            return _attr_of(os.fstat(fd))

    def lookup(self, name: str) -> Node:
        _check_name(name)
        with _open_dir(self.owner, self.parts) as fd:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise _kerr(exc, name) from None
        node = _real_node(self.owner, self.parts + (name,), st)
        if node is None:
            raise KernelError(errno.ENOENT, name)
        return node

    def names(self) -> list[str]:
        with _open_dir(self.owner, self.parts) as fd:
            # A fresh open file description for the listing: os.scandir(fd)
            # would dup() the shared fd and move its offset under other users.
            lfd = os.open(".", DIR_FLAGS, dir_fd=fd)
            try:
                with os.scandir(lfd) as it:
                    return [e.name for e in it]
            finally:
                os.close(lfd)

    def entries(self) -> list[tuple[str, Node]]:
        out = []
        for name in self.names():
            try:
                out.append((name, self.lookup(name)))
            except KernelError:
                continue  # vanished between listing and stat, or not served
        return out



class RealFile(_RealEntry):
    """A real regular file: real mode and owner, content read now."""

    kind = "file"

    def _open(self, flags: int) -> int:
        with self._parent() as pfd:
            try:
                fd = os.open(self.parts[-1], flags | _FILE_FLAGS, dir_fd=pfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # became a symlink: not ours to follow
                    raise KernelError(errno.ENOENT, self.relpath) from None
                raise _kerr(exc, self.relpath) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise KernelError(errno.ENOENT, f"{self.relpath} changed type")
        return fd

    def attr(self) -> Attr:
        st = self._lstat(stat.S_ISREG)
        # procfs reports st_size 0, and gVisor's FUSE client cuts reads at
        # st_size: report the length of what a read gives now.
        try:
            size = len(self.render())
        except KernelError:
            size = 0
        return _attr_of(st, size)

    def check_open(self, writing: bool, ctx: WriteContext) -> None:
        # The real open decides: sysctl_perm() refuses even root a write on
        # a read-only entry (cap_last_cap: EACCES), or a read of 0200
        # drop_caches. Our open runs with the daemon's credentials; the
        # caller's own DAC check is the kernel's, on the real mode/uid/gid.
        os.close(self._open(os.O_WRONLY if writing else os.O_RDONLY))

    def render(self) -> bytes:
        fd = self._open(os.O_RDONLY)
        try:
            chunks = []
            while True:
                try:
                    chunk = os.read(fd, _READ_CHUNK)
                except OSError as exc:
                    raise _kerr(exc, self.relpath) from None
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(fd)

    def write(self, data: bytes, ctx: WriteContext) -> int:
        # One write() here is one write() on the real file, at position 0 of
        # a fresh open file: the real handler parses exactly this buffer and
        # its errno or short count passes through.
        fd = self._open(os.O_WRONLY)
        try:
            return os.write(fd, data)
        except OSError as exc:
            raise _kerr(exc, self.relpath) from None
        finally:
            os.close(fd)

    def truncate(self, size: int) -> None:
        # ``echo x > file``: procfs accepts and ignores the truncation
        # (proc_sys_setattr), a plain file really truncates; either way the
        # real file decides.
        fd = self._open(os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
        except OSError as exc:
            raise _kerr(exc, self.relpath) from None
        finally:
            os.close(fd)


class RealSymlink(_RealEntry):
    """A real symlink, shown as a symlink and never followed by fakefs."""

    kind = "link"

    def attr(self) -> Attr:
        st = self._lstat(stat.S_ISLNK)
        return _attr_of(st)

    def readlink(self) -> str:
        with self._parent() as pfd:
            try:
                return os.readlink(self.parts[-1], dir_fd=pfd)
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # no longer a symlink
                    raise KernelError(errno.ENOENT, self.relpath) from None
                raise _kerr(exc, self.relpath) from None


# --- synthetic ------------------------------------------------------------------

Renderer = Callable[[], Union[bytes, str]]
Writer = Callable[[bytes, WriteContext], Union[int, None]]
OpenCheck = Callable[[bool, WriteContext], None]


class SyntheticFile(Node):
    """A generic synthetic file: content from ``render_fn``, writes to
    ``write_fn(data, ctx)`` (returns the count, or None for all of it).

    Without ``write_fn`` an open for writing gives EACCES even to root, as
    sysctl_perm() does for a read-only sysctl; ``check_open_fn(writing, ctx)``
    replaces that rule. ``overrides_real`` lets it replace a real entry of
    the same name in a :class:`MergedDir`."""

    def __init__(self, key: Hashable, mode: int, render_fn: Renderer, write_fn: Writer | None = None,
                 check_open_fn: OpenCheck | None = None, overrides_real: bool = False,
                 uid: int = 0, gid: int = 0):
        # Namespaced so a synthetic key can never equal a real one.
        self.key = ("synthetic", key)
        self.mode = mode if stat.S_IFMT(mode) else stat.S_IFREG | mode
        self.render_fn = render_fn
        self.write_fn = write_fn
        self.check_open_fn = check_open_fn
        self.overrides_real = overrides_real
        self.uid, self.gid = uid, gid
        self.mtime_ns = time.time_ns()

    @classmethod
    def text(cls, key: Hashable, content: str, mode: int = 0o444, **kw) -> "SyntheticFile":
        """A static file (e.g. /sys/module/nf_conntrack/parameters/hashsize)."""
        data = content.encode("latin-1")
        return cls(key, mode, lambda: data, **kw)

    def attr(self) -> Attr:
        try:
            size = len(self.render())
        except KernelError:
            size = 0
        return Attr(self.mode, uid=self.uid, gid=self.gid, size=size, mtime_ns=self.mtime_ns)

    def check_open(self, writing: bool, ctx: WriteContext) -> None:
        if self.check_open_fn is not None:
            self.check_open_fn(writing, ctx)
        elif writing and self.write_fn is None:
            raise KernelError(errno.EACCES, "read-only")

    def truncate(self, size: int) -> None:
        # truncate(2) needs MAY_WRITE, which sysctl_perm() refuses on a
        # read-only entry even to root (the kernel has already applied the
        # mode bits to everyone else): root's own check decides.
        self.check_open(True, WriteContext())

    def render(self) -> bytes:
        out = self.render_fn()
        return out.encode("latin-1") if isinstance(out, str) else bytes(out)

    def write(self, data: bytes, ctx: WriteContext) -> int:
        if self.write_fn is None:
            raise KernelError(errno.EINVAL, "no write handler")
        n = self.write_fn(data, ctx)
        return len(data) if n is None else n


# --- merged ---------------------------------------------------------------------

Synthetic = Mapping[str, Union[Node, "Synthetic"]]
# Directories that exist only synthetically look like /proc/sys directories.
SYNTHETIC_DIR_MODE = 0o555


class MergedDir(_ProcfsDirRules, Node):
    """Real entries plus synthetic ones (see the module docstring)."""

    def __init__(self, real: RealDir | None, synthetic: Synthetic, key: Hashable | None = None):
        self.real = real
        self.synthetic = synthetic
        if key is None:
            key = ("merged", real.key) if real is not None else ("merged", "anon", id(self))
        self.key = key
        self.mtime_ns = time.time_ns()

    def attr(self) -> Attr:
        extra_dirs = [n for n, s in self.synthetic.items() if isinstance(s, Mapping)]
        if self.real is None:
            return Attr(stat.S_IFDIR | SYNTHETIC_DIR_MODE, nlink=2 + len(extra_dirs), mtime_ns=self.mtime_ns)
        a = self.real.attr()
        real_names = set(self.real.names()) if extra_dirs else set()
        a.nlink += sum(1 for n in extra_dirs if n not in real_names)
        return a

    def _real_lookup(self, name: str) -> Node | None:
        if self.real is None:
            return None
        try:
            return self.real.lookup(name)
        except KernelError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    def _resolve(self, name: str, real: Node | None) -> Node | None:
        syn = self.synthetic.get(name)
        if isinstance(syn, Node) and getattr(syn, "overrides_real", False):
            return syn
        if isinstance(syn, Mapping):
            if real is None:
                return MergedDir(None, syn, key=("merged", self.key, name))
            if isinstance(real, RealDir):
                return MergedDir(real, syn, key=("merged", self.key, name))
            return real  # a real file or symlink of that name: authentic first
        return real if real is not None else syn

    def lookup(self, name: str) -> Node:
        _check_name(name)
        syn = self.synthetic.get(name)
        if isinstance(syn, Node) and getattr(syn, "overrides_real", False):
            return syn  # no need to look at the real entry
        node = self._resolve(name, self._real_lookup(name))
        if node is None:
            raise KernelError(errno.ENOENT, name)
        return node

    def entries(self) -> list[tuple[str, Node]]:
        out: list[tuple[str, Node]] = []
        seen = set()
        if self.real is not None:
            for name, real in self.real.entries():
                seen.add(name)
                node = self._resolve(name, real)
                if node is not None:
                    out.append((name, node))
        for name in self.synthetic:
            if name not in seen:
                node = self._resolve(name, None)
                if node is not None:
                    out.append((name, node))
        return out



def _refuse_create(d: Node, name: str) -> Node:
    try:
        d.lookup(name)
    except KernelError as exc:
        if exc.errno != errno.ENOENT:
            raise
        # proc_sys_lookup(): an unknown name is an error, not a negative
        # dentry, so mkdir/creat never reach a ->mkdir/->create.
        raise KernelError(errno.ENOENT, name) from None
    raise KernelError(errno.EEXIST, name)


def _refuse_remove(d: Node, name: str) -> None:
    d.lookup(name)  # ENOENT first, as the VFS looks the name up first
    # may_delete() -> proc_sys_permission(): sysctl_perm() refuses MAY_WRITE
    # on the 0555 directory even to root (measured: rmdir kernel/keys and
    # rmdir kernel/osrelease both give EACCES).
    raise KernelError(errno.EACCES, name)


class StagingRoot(Node):
    """A plain 0755 root whose children are merged views: one FUSE mount
    serves them all, each then bind-mounted over its real path."""

    def __init__(self, children: Mapping[str, Node]):
        for name in children:
            _check_name(name)
        self.children = dict(children)
        self.key = ("staging-root",)
        self.mtime_ns = time.time_ns()

    def attr(self) -> Attr:
        return Attr(stat.S_IFDIR | 0o755, nlink=2 + len(self.children), mtime_ns=self.mtime_ns)

    def lookup(self, name: str) -> Node:
        try:
            return self.children[name]
        except KeyError:
            raise KernelError(errno.ENOENT, name) from None

    def entries(self) -> list[tuple[str, Node]]:
        return list(self.children.items())
