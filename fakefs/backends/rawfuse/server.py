"""A FUSE server that speaks the kernel protocol itself over ``/dev/fuse``.

pyfuse3 (libfuse) refuses kernels that do not offer READDIRPLUS, which is
every gVisor; this transport negotiates down to whatever the kernel offers
and serves the same :class:`~fakefs.vfs.ops.FsOps` the pyfuse3 adapter
serves. No filesystem logic lives here: requests are decoded, handed to
FsOps, and its results or :class:`KernelError` encoded as replies. What the
transport adds is for the kernels it talks to: directory offsets both Linux
and gVisor resume at, and read views that survive gVisor's whole-page reads.

:class:`FuseSession` is pure (request bytes in, reply bytes out) so the
protocol handling is testable without a kernel; :func:`serve` mounts
with mount(2) on an open ``/dev/fuse`` and runs the session under trio.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import json
import os
import select
import socket
import stat
import sys
import time

import trio

from fakefs.backends import Session
from fakefs.backends.rawfuse import inodelog
from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.model.kparse import PAGE_SIZE
from fakefs.vfs.nodes import Attr
from fakefs.vfs.ops import FsOps, internal_error
from fakefs.backends.rawfuse import protocol as P
from fakefs.backends.rawfuse.protocol import Malformed, Opcode

# What the kernel may cache, from FsOps.cache_hints (as in the pyfuse3
# adapter): names that change only through this filesystem's own mkdir/
# rmdir/rename, which the kernel sees and applies to its cache itself, and
# the attributes of such directories and symlinks; those of regular files
# only where the kernel takes invalidations (the page cache mode below).
STABLE_TIMEOUT = 3600
# Largest WRITE we accept in one request (and so the read buffer size).
MAX_WRITE = 128 * 1024
# INIT flags we take when the kernel offers them. No READDIRPLUS (gVisor
# never offers it and READDIR suffices), no writeback cache.
WANTED_INIT_FLAGS = P.FUSE_BIG_WRITES | P.FUSE_MAX_PAGES
# The page cache mode (FsOps.page_cache = "all"), taken where the kernel
# offers both and the tree may be served without OPEN: OPEN is answered
# ENOSYS once, and the kernel then sends no OPEN or RELEASE for any file of
# the connection and keeps every file's pages (FUSE_NO_OPEN_SUPPORT);
# FUSE_AUTO_INVAL_DATA makes it drop them when a file's mtime or size moves
# (fakefs.vfs.ops); the attributes it keeps are invalidated with
# FUSE_NOTIFY_INVAL_INODE. gVisor offers neither: there every open and read
# reaches the server, with direct I/O, as before.
PAGE_CACHE_INIT_FLAGS = P.FUSE_NO_OPEN_SUPPORT | P.FUSE_AUTO_INVAL_DATA
# Taken with it where offered: the server "kills" set-id bits and file
# capabilities on a write itself. kernfs kills nothing on a write, and
# neither does fakefs; without it the kernel asks GETXATTR
# security.capability before every write to check.
KILLPRIV_INIT_FLAG = P.FUSE_HANDLE_KILLPRIV_V2


class InitFailed(Exception):
    """The kernel's INIT could not be accepted (protocol too old or foreign)."""


# "Everything from here on" for FsOps.read.
_TO_EOF = 1 << 62


class _ReadView:
    """The rest of a read-only handle's snapshot from ``base``, as FsOps
    returned it, so that reads and FUSE_GETATTR_FH agree on its size.

    Why the transport keeps it: FsOps continues a snapshot only for a read
    starting where the previous one ended (seq_file), but gVisor ignores
    FOPEN_DIRECT_IO, reads whole pages and hands the caller a prefix: its
    next READ starts inside what it was already given. A READ starting
    within the bytes already served continues the snapshot; any other
    offset (pread at 0 by a monitor keeping its fd) asks FsOps, which
    renders anew."""

    __slots__ = ("inode", "base", "data", "fresh")

    def __init__(self, inode: int, data: bytes):
        self.inode, self.base, self.data = inode, 0, data
        self.fresh = True  # the snapshot taken at open, not yet read

    @property
    def size(self) -> int:
        return self.base + len(self.data)


class _DirHandle:
    __slots__ = ("inode", "listing")

    def __init__(self, inode: int):
        self.inode = inode
        self.listing: list[tuple[str, int, int]] | None = None


def _ctx(hdr) -> WriteContext:
    return WriteContext(tid=hdr.pid, uid=hdr.uid, gid=hdr.gid)


def _name(body: memoryview, offset: int = 0) -> tuple[str, int]:
    """A NUL-terminated name at ``offset``; returns it and the offset after the NUL."""
    raw = bytes(body[offset:])
    end = raw.find(b"\0")
    if end < 0:
        raise Malformed("name without terminating NUL")
    if end == 0:
        raise KernelError(errno.EINVAL, "empty name")
    return os.fsdecode(raw[:end]), offset + end + 1


class FuseSession:
    """The protocol state of one connection: the negotiated version,
    directory handles with their listings, and read views of open files."""

    def __init__(self, ops: FsOps, max_write: int = MAX_WRITE, log=None):
        self.ops = ops
        self.max_write = max_write
        self.log = log or (lambda msg: print(f"fakefs[fuse-raw]: {msg}", file=sys.stderr, flush=True))
        self.proto_minor: int | None = None
        self.init_flags = 0
        self.initialized = False
        self.init_error: str | None = None
        self.destroyed = False
        # A session continuing a connection another server negotiated
        # (adopt()): the first request unique it read itself.
        self.adopted = False
        self.first_unique: int | None = None
        # An fd of inodelog.py's log, when a supervisor may restart us.
        self.path_log: int | None = None
        # The page cache mode (PAGE_CACHE_INIT_FLAGS), and the notifications
        # to write before the reply of the request being handled.
        self.page_cache = False
        self.notices: list[bytes] = []
        self._dirs: dict[int, _DirHandle] = {}
        self._next_dir_fh = itertools.count(1)
        # Read-only file handles -> what this session has of their snapshot.
        self._views: dict[int, _ReadView] = {}
        self._handlers = {
            Opcode.INIT: self._init,
            Opcode.LOOKUP: self._lookup,
            Opcode.FORGET: self._forget,
            Opcode.BATCH_FORGET: self._batch_forget,
            Opcode.GETATTR: self._getattr,
            Opcode.SETATTR: self._setattr,
            Opcode.READLINK: self._readlink,
            Opcode.OPEN: self._open,
            Opcode.READ: self._read,
            Opcode.WRITE: self._write,
            Opcode.FLUSH: self._flush,
            Opcode.RELEASE: self._release,
            Opcode.OPENDIR: self._opendir,
            Opcode.READDIR: self._readdir,
            Opcode.RELEASEDIR: self._releasedir,
            Opcode.MKDIR: self._mkdir,
            Opcode.RMDIR: self._rmdir,
            Opcode.CREATE: self._create,
            Opcode.UNLINK: self._unlink,
            Opcode.RENAME: self._rename,
            Opcode.RENAME2: self._rename2,
            Opcode.STATFS: self._statfs,
            Opcode.ACCESS: self._access,
            Opcode.GETXATTR: self._getxattr,
            Opcode.LISTXATTR: self._listxattr,
            Opcode.SETXATTR: self._setxattr,
            Opcode.REMOVEXATTR: self._removexattr,
            Opcode.INTERRUPT: self._interrupt,
            Opcode.DESTROY: self._destroy,
            # cgroupfs (kernfs) has no ->symlink/->link/->mknod: the VFS says EPERM.
            Opcode.SYMLINK: self._eperm,
            Opcode.LINK: self._eperm,
            Opcode.MKNOD: self._eperm,
        }

    # -- dispatch -------------------------------------------------------------------
    def handle(self, buf: bytes) -> bytes | None:
        """One request buffer as read from /dev/fuse -> the reply to write, or
        None when the request takes no reply (or cannot be answered at all)."""
        try:
            hdr = P.IN_HEADER.unpack(buf)
        except Malformed as exc:
            self.log(f"dropped a request shorter than its header: {exc}")
            return None
        if hdr.len != len(buf):
            self.log(f"request {hdr.unique}: header says {hdr.len} bytes, read {len(buf)}")
            return P.reply(hdr.unique, -errno.EIO)
        if not self.initialized and hdr.opcode != Opcode.INIT:
            return P.reply(hdr.unique, -errno.EIO)
        if self.adopted:
            lost = self._lost_request(hdr, buf)
            if lost is not None:
                return lost
        handler = self._handlers.get(hdr.opcode)
        if handler is None:
            return P.reply(hdr.unique, -errno.ENOSYS)
        no_reply = hdr.opcode in P.NO_REPLY or hdr.opcode == Opcode.INTERRUPT
        body = memoryview(buf)[P.IN_HEADER.size:]
        try:
            payload = handler(hdr, body)
        except KernelError as exc:
            return None if no_reply else P.reply(hdr.unique, -exc.errno)
        except Malformed as exc:
            self.log(f"malformed {self._opname(hdr.opcode)} request: {exc}")
            return None if no_reply else P.reply(hdr.unique, -errno.EINVAL)
        except Exception as exc:  # a bug must cost one request, never the mount
            error = internal_error(self._opname(hdr.opcode), exc, self.log)
            return None if no_reply else P.reply(hdr.unique, -error.errno)
        if no_reply or payload is None:
            return None
        return P.reply(hdr.unique, 0, payload)

    def adopt(self, minor: int, flags: int, generation: int) -> None:
        """Continue a connection whose INIT an earlier server answered (the
        kernel sends INIT once per connection). Handles get numbers of their
        own per generation, so that an fd opened under a dead server gets
        EBADF, never another file's handle."""
        self.proto_minor, self.init_flags, self.initialized = minor, flags, True
        self.adopted = True
        if flags & P.FUSE_AUTO_INVAL_DATA:
            self._use_page_cache()
        base = (generation << 40) + 1
        self._next_dir_fh = itertools.count(base)
        self.ops._next_fh = itertools.count(base)

    def _lost_request(self, hdr, buf: bytes) -> bytes | None:
        """In an adopted session: an INTERRUPT for a request the dead server
        had read but never answered. Its caller waits for that answer
        (uninterruptibly once it was read), so it gets EINTR now."""
        if hdr.opcode != Opcode.INTERRUPT:
            if self.first_unique is None:
                self.first_unique = hdr.unique
            return None
        try:
            target = P.INTERRUPT_IN.unpack(memoryview(buf)[P.IN_HEADER.size:]).unique
        except Malformed:
            return None
        if self.first_unique is None or target < self.first_unique:
            return P.reply(target, -errno.EINTR)
        return None

    @staticmethod
    def _opname(opcode: int) -> str:
        try:
            return Opcode(opcode).name
        except ValueError:
            return f"opcode {opcode}"

    # -- encoding -------------------------------------------------------------------
    @staticmethod
    def _attr(inode: int, a: Attr) -> bytes:
        (asec, ansec), (msec, mnsec), (csec, cnsec) = (divmod(t, 1_000_000_000) for t in a.times_ns)
        return P.ATTR.pack(ino=inode, size=a.size, blocks=0, atime=asec, mtime=msec, ctime=csec, atimensec=ansec,
                           mtimensec=mnsec, ctimensec=cnsec, mode=a.mode, nlink=a.nlink, uid=a.uid, gid=a.gid,
                           rdev=0, blksize=PAGE_SIZE)

    def _timeouts(self, inode: int, a: Attr) -> tuple[int, int]:
        entry_stable, attr_stable = self.ops.cache_hints(inode)
        return STABLE_TIMEOUT if entry_stable else 0, STABLE_TIMEOUT if attr_stable else 0

    # -- the page cache mode -------------------------------------------------------------
    def _use_page_cache(self) -> None:
        self.page_cache = True
        self.ops.page_cache = "all"
        self.ops.invalidate = self.invalidate_attrs

    def invalidate_attrs(self, inodes) -> None:
        """FsOps.invalidate: attributes only (off -1), which the kernel
        applies without waiting for any page lock, so it is written before
        the reply of the request that changed something."""
        self.notices.extend(P.notification(P.NOTIFY_INVAL_INODE, P.NOTIFY_INVAL_INODE_OUT.pack(ino=ino, off=-1))
                            for ino in inodes)

    def take_notices(self) -> list[bytes]:
        notices, self.notices = self.notices, []
        return notices

    def _entry(self, inode: int, a: Attr) -> bytes:
        entry_valid, attr_valid = self._timeouts(inode, a)
        return P.ENTRY_OUT_HEAD.pack(nodeid=inode, generation=0, entry_valid=entry_valid,
                                     attr_valid=attr_valid) + self._attr(inode, a)

    def _attr_out(self, inode: int, a: Attr) -> bytes:
        return P.ATTR_OUT_HEAD.pack(attr_valid=self._timeouts(inode, a)[1]) + self._attr(inode, a)

    # -- session ----------------------------------------------------------------------
    def _init(self, hdr, body):
        if self.initialized:
            raise KernelError(errno.EPROTO, "second INIT")
        init = P.INIT_IN.unpack(body)
        if init.major > P.FUSE_KERNEL_VERSION:
            # Protocol: answer with our major only; the kernel retries INIT with it.
            return P.INIT_OUT.pack(major=P.FUSE_KERNEL_VERSION, minor=P.SERVER_MINOR)[:P.FUSE_COMPAT_INIT_OUT_SIZE]
        minor = min(init.minor, P.SERVER_MINOR)
        if init.major < P.FUSE_KERNEL_VERSION or minor < P.MIN_MINOR:
            self.init_error = f"kernel FUSE protocol {init.major}.{init.minor} is older than 7.{P.MIN_MINOR}"
            raise KernelError(errno.EPROTO, self.init_error)
        flags = init.flags & WANTED_INIT_FLAGS
        if init.flags & PAGE_CACHE_INIT_FLAGS == PAGE_CACHE_INIT_FLAGS and self.ops.root.serves_without_open:
            flags |= P.FUSE_AUTO_INVAL_DATA | (init.flags & KILLPRIV_INIT_FLAG)
        out = P.INIT_OUT.pack(
            major=P.FUSE_KERNEL_VERSION, minor=minor, max_readahead=init.max_readahead, flags=flags,
            max_write=self.max_write, time_gran=1,
            max_pages=self.max_write // PAGE_SIZE if flags & P.FUSE_MAX_PAGES else 0)
        if minor < 5:
            out = out[:P.FUSE_COMPAT_INIT_OUT_SIZE]
        elif minor < 23:
            out = out[:P.FUSE_COMPAT_22_INIT_OUT_SIZE]
        self.proto_minor, self.init_flags, self.initialized = minor, flags, True
        if flags & P.FUSE_AUTO_INVAL_DATA:
            self._use_page_cache()
        return out

    def _destroy(self, hdr, body):
        self.destroyed = True
        return b""

    def _interrupt(self, hdr, body):
        # Requests are answered one at a time, in order: by the time an
        # INTERRUPT is read its target has been answered or will be answered
        # promptly (nothing here blocks), so there is nothing to abort.
        P.INTERRUPT_IN.unpack(body)
        return None

    def _forget(self, hdr, body):
        P.FORGET_IN.unpack(body)
        self.ops.forget(hdr.nodeid)
        return None

    def _batch_forget(self, hdr, body):
        head = P.BATCH_FORGET_IN.unpack(body)
        offset = P.BATCH_FORGET_IN.size
        for _ in range(head.count):
            if len(body) - offset < P.FORGET_ONE.size:
                break  # a short batch: forget what is there
            one = P.FORGET_ONE.unpack(body, offset)
            offset += P.FORGET_ONE.size
            self.ops.forget(one.nodeid)
        return None

    # -- metadata -----------------------------------------------------------------------
    def _lookup(self, hdr, body):
        name, _ = _name(body)
        inode, a = self.ops.lookup(hdr.nodeid, name, _ctx(hdr))
        return self._entry(inode, a)

    def _getattr(self, hdr, body):
        # Before 7.9 GETATTR had no body; tolerate its absence.
        flags, fh = (0, 0)
        if len(body) >= P.GETATTR_IN.size:
            gin = P.GETATTR_IN.unpack(body)
            flags, fh = gin.getattr_flags, gin.fh
        a = self.ops.getattr(hdr.nodeid, _ctx(hdr))
        size = self._snapshot_size(hdr.nodeid, fh if flags & P.FUSE_GETATTR_FH else None)
        if size is not None:
            a = dataclasses.replace(a, size=size)
        return self._attr_out(hdr.nodeid, a)

    def _snapshot_size(self, inode: int, fh: int | None) -> int | None:
        """With FUSE_GETATTR_FH on a read-only handle: the size of the
        snapshot that handle reads, so that st_size and the bytes read agree
        (gVisor asks this way before it cuts a read at st_size; Linux for
        lseek(SEEK_END))."""
        view = self._views.get(fh) if fh is not None else None
        if view is None or view.inode != inode:
            return None
        return view.size

    def _setattr(self, hdr, body):
        s = P.SETATTR_IN.unpack(body)
        a = self.ops.setattr(
            hdr.nodeid,
            mode=stat.S_IMODE(s.mode) if s.valid & P.FATTR_MODE else None,
            uid=s.uid if s.valid & P.FATTR_UID else None,
            gid=s.gid if s.valid & P.FATTR_GID else None,
            size=s.size if s.valid & P.FATTR_SIZE else None,
            atime_ns=_time_set(s.valid, P.FATTR_ATIME, P.FATTR_ATIME_NOW, s.atime, s.atimensec),
            mtime_ns=_time_set(s.valid, P.FATTR_MTIME, P.FATTR_MTIME_NOW, s.mtime, s.mtimensec),
        )
        return self._attr_out(hdr.nodeid, a)

    # -- extended attributes --------------------------------------------------------------
    def _getxattr(self, hdr, body):
        size = P.GETXATTR_IN.unpack(body).size
        name, _ = _name(body, P.GETXATTR_IN.size)
        return _sized(self.ops.getxattr(hdr.nodeid, name), size)

    def _listxattr(self, hdr, body):
        size = P.GETXATTR_IN.unpack(body).size
        return _sized(b"".join(os.fsencode(n) + b"\0" for n in self.ops.listxattr(hdr.nodeid, _ctx(hdr))), size)

    def _setxattr(self, hdr, body):
        s = P.SETXATTR_IN.unpack(body)
        name, offset = _name(body, P.SETXATTR_IN.size)
        value = bytes(body[offset:offset + s.size])
        if len(value) != s.size:
            raise Malformed(f"SETXATTR of {s.size} bytes carries {len(value)}")
        self.ops.setxattr(hdr.nodeid, name, value, s.flags, _ctx(hdr))
        return b""

    def _removexattr(self, hdr, body):
        name, _ = _name(body)
        self.ops.removexattr(hdr.nodeid, name, _ctx(hdr))
        return b""

    def _readlink(self, hdr, body):
        return os.fsencode(self.ops.readlink(hdr.nodeid))

    def _statfs(self, hdr, body):
        return P.KSTATFS.pack(bsize=PAGE_SIZE, frsize=PAGE_SIZE, namelen=255)

    def _access(self, hdr, body):
        mask = P.ACCESS_IN.unpack(body).mask
        a = self.ops.getattr(hdr.nodeid)
        if not _permitted(a, mask, hdr.uid, hdr.gid):
            raise KernelError(errno.EACCES)
        return b""

    # -- namespace ----------------------------------------------------------------------
    def _mkdir(self, hdr, body):
        P.MKDIR_IN.unpack(body)
        name, _ = _name(body, P.MKDIR_IN.size)
        inode, a = self.ops.mkdir(hdr.nodeid, name, _ctx(hdr))
        return self._entry(inode, a)

    def _rmdir(self, hdr, body):
        name, _ = _name(body)
        self.ops.rmdir(hdr.nodeid, name, _ctx(hdr))
        return b""

    def _unlink(self, hdr, body):
        name, _ = _name(body)
        self.ops.unlink(hdr.nodeid, name, _ctx(hdr))
        return b""

    def _create(self, hdr, body):
        P.CREATE_IN.unpack(body)
        name, _ = _name(body, P.CREATE_IN.size)
        self.ops.create(hdr.nodeid, name, _ctx(hdr))
        # The trees never make regular files: a directory without ->create
        # answers EACCES (lookup_open), as the pyfuse3 adapter does.
        raise KernelError(errno.EACCES)

    def _rename(self, hdr, body):
        newdir = P.RENAME_IN.unpack(body).newdir
        return self._do_rename(hdr, body, P.RENAME_IN.size, newdir)

    def _rename2(self, hdr, body):
        r = P.RENAME2_IN.unpack(body)
        if r.flags:
            # kernfs_iop_rename(): any RENAME_* flag is EINVAL.
            raise KernelError(errno.EINVAL, "rename flags")
        return self._do_rename(hdr, body, P.RENAME2_IN.size, r.newdir)

    def _do_rename(self, hdr, body, offset, newdir):
        old, offset = _name(body, offset)
        new, _ = _name(body, offset)
        self.ops.rename(hdr.nodeid, old, newdir, new, _ctx(hdr))
        return b""

    @staticmethod
    def _eperm(hdr, body):
        raise KernelError(errno.EPERM)

    # -- files ----------------------------------------------------------------------------
    def _open(self, hdr, body):
        flags = P.OPEN_IN.unpack(body).flags
        if self.page_cache:
            # Once: the kernel then opens every file without asking (and
            # without RELEASE), having checked the mode bits itself.
            raise KernelError(errno.ENOSYS)
        fh = self.ops.open(hdr.nodeid, flags, _ctx(hdr))
        if flags & os.O_ACCMODE == os.O_RDONLY:
            try:
                self._views[fh] = _ReadView(hdr.nodeid, self.ops.read(fh, 0, _TO_EOF))
            except KernelError:
                pass  # a file that cannot be read: each READ reports FsOps' error
        # direct_io: every read reaches the snapshot, never the page cache.
        return P.OPEN_OUT.pack(fh=fh, open_flags=P.FOPEN_DIRECT_IO)

    def _read(self, hdr, body):
        r = P.READ_IN.unpack(body)
        if self.page_cache:
            return self.ops.read_shown(hdr.nodeid, r.offset, r.size, _ctx(hdr))
        view = self._views.get(r.fh)
        if view is None:
            return self.ops.read(r.fh, r.offset, r.size)
        continues = view.base <= r.offset if view.fresh else view.base < r.offset <= view.size
        if not continues:
            view.data, view.base = self.ops.read(r.fh, r.offset, _TO_EOF), r.offset
        view.fresh = False
        start = r.offset - view.base
        return view.data[start:start + r.size]

    def _write(self, hdr, body):
        w = P.WRITE_IN.unpack(body)
        data = bytes(body[P.WRITE_IN.size:P.WRITE_IN.size + w.size])
        if len(data) != w.size:
            raise Malformed(f"WRITE of {w.size} bytes carries {len(data)}")
        if self.page_cache:
            written = self.ops.write_inode(hdr.nodeid, w.offset, data, _ctx(hdr))
        else:
            written = self.ops.write(w.fh, w.offset, data, _ctx(hdr))
        return P.WRITE_OUT.pack(size=written)

    def _flush(self, hdr, body):
        P.FLUSH_IN.unpack(body)
        if self.page_cache:
            # Once: the kernel then sends no FLUSH on close (each write is
            # complete when its reply is sent).
            raise KernelError(errno.ENOSYS)
        return b""

    def _release(self, hdr, body):
        fh = P.RELEASE_IN.unpack(body).fh
        self._views.pop(fh, None)
        self.ops.release(fh)
        return b""

    # -- directories ------------------------------------------------------------------------
    def _opendir(self, hdr, body):
        if not self.ops.node(hdr.nodeid).is_dir:
            raise KernelError(errno.ENOTDIR)
        fh = next(self._next_dir_fh)
        self._dirs[fh] = _DirHandle(hdr.nodeid)
        return P.OPEN_OUT.pack(fh=fh, open_flags=0)

    def _readdir(self, hdr, body):
        r = P.READ_IN.unpack(body)
        handle = self._dirs.get(r.fh)
        if handle is None or handle.inode != hdr.nodeid:
            raise KernelError(errno.EBADF)
        if r.offset == 0 or handle.listing is None:
            # One listing per pass through the directory (rewind refreshes it),
            # so offsets keep meaning the same entries across READDIRs.
            handle.listing = self.ops.listdir(handle.inode)
        # Entry i is given d_off 2*(i+1) and offset o resumes at entry o//2:
        # Linux resumes at the d_off of the last entry it consumed, gVisor at
        # that d_off + 1 (its IterDirents adds one); both land on entry i+1.
        out = []
        used = 0
        for index in range(r.offset // 2, len(handle.listing)):
            name, inode, file_type = handle.listing[index]
            raw = os.fsencode(name)
            size = P.dirent_size(len(raw))
            if used + size > r.size:
                break
            out.append(P.pack_dirent(inode, 2 * (index + 1), file_type >> 12, raw))
            used += size
        return b"".join(out)

    def _releasedir(self, hdr, body):
        self._dirs.pop(P.RELEASE_IN.unpack(body).fh, None)
        return b""


def _time_set(valid: int, given: int, now: int, sec: int, nsec: int) -> int | None:
    """A time SETATTR asks for, or None. Linux sends UTIME_NOW as FATTR_*_NOW
    along with the time of day it read; a request with the flag alone gets
    ours."""
    if valid & given:
        return sec * 1_000_000_000 + nsec
    return time.time_ns() if valid & now else None


def _sized(data: bytes, size: int) -> bytes:
    """GETXATTR/LISTXATTR: with size 0 the caller asks only how much there
    is (fuse_getxattr_out); a buffer too small is ERANGE."""
    if size == 0:
        return P.GETXATTR_OUT.pack(size=len(data))
    if len(data) > size:
        raise KernelError(errno.ERANGE)
    return data


def _permitted(a: Attr, mask: int, uid: int, gid: int) -> bool:
    """access(2) against the mode bits (the VFS's generic_permission, minus
    supplementary groups and capabilities beyond root's override)."""
    mask &= P.MAY_READ | P.MAY_WRITE | P.MAY_EXEC
    if uid == 0:
        # root may read and write anything; execute needs some x bit on a file
        return not (mask & P.MAY_EXEC) or stat.S_ISDIR(a.mode) or bool(a.mode & 0o111)
    if uid == a.uid:
        bits = (a.mode >> 6) & 7
    elif gid == a.gid:
        bits = (a.mode >> 3) & 7
    else:
        bits = a.mode & 7
    return mask & ~bits == 0


# -- the device side ---------------------------------------------------------------------------
def read_buffer_size(max_write: int = MAX_WRITE) -> int:
    """Room for the largest WRITE plus its headers (fuse_dev_do_read refuses less)."""
    return max(P.FUSE_MIN_READ_BUFFER, max_write + PAGE_SIZE)


def _read_request(fd: int, bufsize: int) -> bytes | None:
    """One request, or None when there is none right now (or it vanished)."""
    try:
        return os.read(fd, bufsize)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # the request was interrupted before we read it
            return None
        raise


def _write_reply(session: FuseSession, fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError as exc:
        # ENOENT: the request was interrupted or aborted meanwhile; nobody waits.
        if exc.errno != errno.ENOENT:
            session.log(f"reply refused by the kernel: {exc.strerror}")


def _write_notice(fd: int, notice: bytes) -> None:
    try:
        os.write(fd, notice)
    except OSError:
        pass  # ENOENT: the kernel no longer knows the inode: nothing to forget


def _resend_lost_requests(session: FuseSession, fd: int) -> None:
    """Requests the dead server had read but not answered: the kernel queues
    them again on FUSE_NOTIFY_RESEND (Linux 6.9), so their callers get an
    answer instead of waiting for a signal. An operation the dead server had
    done then answers as done again (an existing cgroup: EEXIST). Kernels
    without it (gVisor) refuse the notification: there, a lost request's
    caller gets EINTR once signalled (FuseSession._lost_request)."""
    try:
        os.write(fd, P.OUT_HEADER.pack(len=P.OUT_HEADER.size, error=P.NOTIFY_RESEND, unique=0))
    except OSError as exc:
        session.log(f"lost requests not resent: {exc.strerror}")


def complete_init(session: FuseSession, fd: int, timeout: float = 10.0) -> None:
    """Answer requests until INIT has been negotiated; raises InitFailed or
    OSError. The mount is only reported ready after this."""
    bufsize = read_buffer_size(session.max_write)
    deadline = time.monotonic() + timeout
    while not session.initialized:
        left = deadline - time.monotonic()
        if left <= 0:
            raise InitFailed(f"the kernel sent no INIT within {timeout:.0f}s")
        readable, _, _ = select.select([fd], [], [], left)
        if not readable:
            continue
        buf = _read_request(fd, bufsize)
        if buf is None:
            continue
        reply = session.handle(buf)
        if reply is not None:
            _write_reply(session, fd, reply)
        if session.init_error:
            raise InitFailed(session.init_error)


async def serve_fd(session: FuseSession, fd: int) -> None:
    """Serve requests until the filesystem is unmounted (ENODEV) or destroyed."""
    bufsize = read_buffer_size(session.max_write)
    while not session.destroyed:
        try:
            buf = _read_request(fd, bufsize)
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ECONNABORTED):
                return  # unmounted, or the connection was aborted
            raise
        if buf is None:
            await trio.lowlevel.wait_readable(fd)
            continue
        reply = session.handle(buf)
        events = session.ops.path_events
        if events and session.path_log is not None:
            # Before the reply hands the node ids to the kernel (inodelog.py).
            inodelog.append(session.path_log, events)
            events.clear()
        for notice in session.take_notices():
            _write_notice(fd, notice)
        if reply is not None:
            _write_reply(session, fd, reply)
        # Let signals and cancellation in between requests under load.
        await trio.lowlevel.checkpoint()


def serve(session: Session) -> None:
    """The ``fuse-raw`` backend: mount session.target, report readiness once
    INIT has completed, serve until unmounted or SIGTERM/SIGINT.

    Under a supervisor (session.supervisor_conn) the connection is handed to
    it once INIT is done, and a server it restarts gets the connection in
    ``session.held_connection``: it answers the kernel's node ids from the
    inode log instead of mounting (see inodelog.py)."""
    fuse = FuseSession(FsOps(session.root))
    held = session.held_connection
    log_path = session.inode_log
    if held is not None:
        fd = held["fd"]
        fuse.adopt(held["minor"], held["flags"], held["generation"])
        paths = inodelog.replay(log_path)
        restored = fuse.ops.restore_inodes(paths)
        fuse.log(f"continuing the connection of a crashed server ({restored} inodes restored)")
        if fuse.page_cache:
            # What the kernel keeps came from the dead server, and the state
            # restored may differ from what it was told (a change journaled
            # but not yet invalidated): it forgets every inode's attributes,
            # and with them, at the next look, the pages (new mtimes).
            fuse.invalidate_attrs(paths)
            for notice in fuse.take_notices():
                _write_notice(fd, notice)
        _resend_lost_requests(fuse, fd)
    else:
        fd = session.mount_fuse()
        try:
            complete_init(fuse, fd)
        except (InitFailed, OSError) as exc:
            session.unmount()
            os.close(fd)
            raise session.fail(f"FUSE INIT at {session.target} failed: {exc}") from None
    conn = session.supervisor_conn
    if conn is not None:
        fuse.ops.path_events = []
        fuse.path_log = inodelog.open_log(log_path, fresh=held is None)
        if held is None:
            # Before readiness: the supervisor takes it along with "ok".
            socket.send_fds(conn, [json.dumps({"minor": fuse.proto_minor, "flags": fuse.init_flags}).encode()],
                            [fd])

    session.on_mounted("fuse-raw")
    try:
        session.ready_before_serving()
        os.set_blocking(fd, False)
        session.run_serving(lambda: serve_fd(fuse, fd), None)
    finally:
        session.unmount()
        os.close(fd)
        if fuse.path_log is not None:
            os.close(fuse.path_log)
            inodelog.remove(log_path)
