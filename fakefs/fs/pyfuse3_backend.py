"""The pyfuse3 transport: a thin async adapter from pyfuse3's Operations to
:class:`fakefs.fs.ops.FsOps`. No filesystem logic lives here."""

from __future__ import annotations

import errno
import functools
import os
import stat

import pyfuse3

from ..model.cftype import WriteContext
from ..model.errors import KernelError
from .nodes import Attr
from .ops import FsOps

# Every file's content may change at any time: let the kernel cache nothing
# for long. (Performance work may raise these with precise invalidation.)
ENTRY_TIMEOUT = 0.0
ATTR_TIMEOUT = 0.0


def _errno_wrap(fn):
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KernelError as exc:
            raise pyfuse3.FUSEError(exc.errno) from None

    return wrapper


def _ctx(ctx: pyfuse3.RequestContext | None) -> WriteContext:
    if ctx is None:
        return WriteContext()
    return WriteContext(tid=ctx.pid, uid=ctx.uid, gid=ctx.gid)


class Pyfuse3Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, ops: FsOps):
        super().__init__()
        self.ops = ops
        # pyfuse3 gives write() no request context; the writer's identity is
        # the opener's (cgroup.procs' "0" means the writer: for the usual
        # open-then-write that is the same process).
        self._openers: dict[int, WriteContext] = {}

    def _entry(self, inode: int, a: Attr) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = inode
        e.generation = 0
        e.entry_timeout = ENTRY_TIMEOUT
        e.attr_timeout = ATTR_TIMEOUT
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = 0
        e.st_size = a.size
        e.st_blksize = 4096
        e.st_blocks = 0
        e.st_atime_ns = e.st_mtime_ns = e.st_ctime_ns = a.mtime_ns
        return e

    @_errno_wrap
    def lookup(self, parent_inode, name, ctx=None):
        ino, a = self.ops.lookup(parent_inode, os.fsdecode(name))
        return self._entry(ino, a)

    @_errno_wrap
    def getattr(self, inode, ctx=None):
        return self._entry(inode, self.ops.getattr(inode))

    @_errno_wrap
    def setattr(self, inode, attr, fields, fh, ctx):
        a = self.ops.setattr(
            inode,
            mode=stat.S_IMODE(attr.st_mode) if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
        )
        return self._entry(inode, a)

    @_errno_wrap
    def readlink(self, inode, ctx):
        return os.fsencode(self.ops.readlink(inode))

    @_errno_wrap
    def opendir(self, inode, ctx):
        if not self.ops.node(inode).is_dir:
            raise KernelError(errno.ENOTDIR)
        return inode

    @_errno_wrap
    def readdir(self, fh, start_id, token):
        # start_id is the index after the last entry already returned.
        entries = self.ops.readdir(fh)
        for index in range(start_id, len(entries)):
            name, ino, a = entries[index]
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._entry(ino, a), index + 1):
                break

    async def releasedir(self, fh):
        return None

    @_errno_wrap
    def open(self, inode, flags, ctx):
        fh = self.ops.open(inode, flags, _ctx(ctx))
        self._openers[fh] = _ctx(ctx)
        # direct_io: never serve from the page cache, every read reaches the
        # daemon (the size we report is exact, for clients that clamp to it).
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    @_errno_wrap
    def read(self, fh, off, size):
        return self.ops.read(fh, off, size)

    @_errno_wrap
    def write(self, fh, off, buf):
        return self.ops.write(fh, off, bytes(buf), self._openers.get(fh, WriteContext()))

    async def flush(self, fh):
        return None

    async def release(self, fh):
        self._openers.pop(fh, None)
        self.ops.release(fh)

    @_errno_wrap
    def mkdir(self, parent_inode, name, mode, ctx):
        ino, a = self.ops.mkdir(parent_inode, os.fsdecode(name), _ctx(ctx))
        return self._entry(ino, a)

    @_errno_wrap
    def rmdir(self, parent_inode, name, ctx):
        self.ops.rmdir(parent_inode, os.fsdecode(name), _ctx(ctx))

    @_errno_wrap
    def unlink(self, parent_inode, name, ctx):
        self.ops.unlink(parent_inode, os.fsdecode(name), _ctx(ctx))

    @_errno_wrap
    def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        self.ops.rename(parent_inode_old, os.fsdecode(name_old), parent_inode_new,
                        os.fsdecode(name_new), _ctx(ctx))

    @_errno_wrap
    def create(self, parent_inode, name, mode, flags, ctx):
        self.ops.create(parent_inode, os.fsdecode(name), _ctx(ctx))
        raise KernelError(errno.EACCES)

    async def symlink(self, parent_inode, name, target, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = s.f_bfree = s.f_bavail = 0
        s.f_files = s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    async def forget(self, inode_list):
        for inode, _ in inode_list:
            self.ops.forget(inode)


def make_operations(ops: FsOps) -> pyfuse3.Operations:
    return Pyfuse3Operations(ops)
