"""pytest-trio tests of the pyfuse3 adapter's async operations, called the
way pyfuse3 calls them (bytes names, request contexts, FUSEError)."""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3
import pytest

from fakefs.vfs.cgroupfs import CgroupFsRoot
from fakefs.vfs.ops import ROOT_INODE, FsOps
from fakefs.backends.fuse import make_operations
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel


class Ctx:
    def __init__(self, pid=100, uid=0, gid=0):
        self.pid, self.uid, self.gid, self.umask = pid, uid, gid, 0o022


@pytest.fixture
def ops():
    procs = StaticProcessTable()
    procs.spawn(100)
    model = CgroupModel(HostFacts(), procs, ["cpu,cpuacct", "name=systemd"])
    return make_operations(FsOps(CgroupFsRoot(model)))


async def test_lookup_getattr_and_read(ops):
    cpu = await ops.lookup(ROOT_INODE, b"cpu,cpuacct", Ctx())
    assert stat.S_ISDIR(cpu.st_mode)
    shares = await ops.lookup(cpu.st_ino, b"cpu.shares", Ctx())
    assert shares.st_size == 5
    info = await ops.open(shares.st_ino, os.O_RDONLY, Ctx())
    assert info.keep_cache and not info.direct_io  # read through the page cache
    assert await ops.read(info.fh, 0, 4096) == b"1024\n"
    await ops.release(info.fh)


async def test_errors_become_fuse_errors(ops):
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await ops.lookup(ROOT_INODE, b"nope", Ctx())
    assert exc.value.errno == errno.ENOENT
    cpu = await ops.lookup(ROOT_INODE, b"cpu,cpuacct", Ctx())
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await ops.create(cpu.st_ino, b"f", 0o644, os.O_CREAT | os.O_WRONLY, Ctx())
    assert exc.value.errno == errno.EACCES
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await ops.mkdir(cpu.st_ino, b"a\nb", 0o755, Ctx())
    assert exc.value.errno == errno.EINVAL


async def test_write_zero_uses_the_openers_pid(ops):
    sd = await ops.lookup(ROOT_INODE, b"systemd", Ctx())
    child = await ops.mkdir(sd.st_ino, b"s", 0o755, Ctx())
    procs = await ops.lookup(child.st_ino, b"cgroup.procs", Ctx())
    info = await ops.open(procs.st_ino, os.O_WRONLY, Ctx(pid=100))
    assert await ops.write(info.fh, 0, b"0") == 1
    await ops.release(info.fh)
    rinfo = await ops.open(procs.st_ino, os.O_RDONLY, Ctx())
    assert await ops.read(rinfo.fh, 0, 100) == b"100\n"


async def test_readdir_resumes_at_offset(ops, monkeypatch):
    seen = []

    def reply(token, name, attr, next_id):
        seen.append((name, next_id))
        return len(seen) < 3  # the kernel buffer fills after 3 entries

    monkeypatch.setattr(pyfuse3, "readdir_reply", reply)
    cpu = await ops.lookup(ROOT_INODE, b"cpu,cpuacct", Ctx())
    fh = await ops.opendir(cpu.st_ino, Ctx())
    await ops.readdir(fh, 0, None)
    first = list(seen)
    seen.clear()
    await ops.readdir(fh, first[-1][1] - 1, None)  # the kernel re-asks for the refused one
    assert seen[0][0] == first[-1][0]
    assert [n for n, _ in first[:2]] != [n for n, _ in seen[:2]]


async def test_statfs(ops):
    s = await ops.statfs(Ctx())
    assert s.f_namemax == 255 and s.f_bsize == 4096
