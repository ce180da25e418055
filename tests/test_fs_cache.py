"""What the kernel may cache, and that caching never shows a stale value.

Three levels: the shared operations (cache hints, the change counter, one
rendering per change), the pyfuse3 adapter (timeouts in replies, attribute
invalidation before a write's reply), and a real FUSE mount (a write is seen
by the very next read and stat, a process that exited is gone on the next
read, kernfs' rewind-renders-anew rule)."""

from __future__ import annotations

import os
import stat
import subprocess

import pyfuse3
import pytest

from fakefs.backends import fuse as pyfuse3_backend
from fakefs.vfs.cgroupfs import CgroupFsRoot, ControlNode
from fakefs.vfs.nodes import Attr, Node
from fakefs.vfs.ops import ROOT_INODE, FsOps
from fakefs.model.cftype import WriteContext
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel

ROOT = WriteContext(tid=1, uid=0)


@pytest.fixture
def procs():
    table = StaticProcessTable()
    table.spawn(100)
    table.spawn(200)
    return table


@pytest.fixture
def fs(procs):
    return FsOps(CgroupFsRoot(CgroupModel(HostFacts(), procs, ["cpu,cpuacct", "name=systemd"])))


def lookup_path(fs: FsOps, *parts: str) -> int:
    ino = ROOT_INODE
    for part in parts:
        ino, _ = fs.lookup(ino, part)
    return ino


def read_all(fs: FsOps, ino: int) -> bytes:
    fh = fs.open(ino, os.O_RDONLY, ROOT)
    try:
        return fs.read(fh, 0, 1 << 16)
    finally:
        fs.release(fh)


def write(fs: FsOps, ino: int, data: bytes) -> None:
    fh = fs.open(ino, os.O_WRONLY, ROOT)
    try:
        fs.write(fh, 0, data, ROOT)
    finally:
        fs.release(fh)


# -- the shared operations ------------------------------------------------------

def test_cache_hints_follow_what_can_change_behind_the_kernels_back(fs):
    cpu = lookup_path(fs, "cpu,cpuacct")
    assert fs.cache_hints(ROOT_INODE) == (True, True)
    assert fs.cache_hints(cpu) == (True, True)
    assert fs.cache_hints(lookup_path(fs, "cpu")) == (True, True)  # the alias symlink
    assert fs.cache_hints(lookup_path(fs, "cpu,cpuacct", "cpu.shares")) == (True, True)
    # live files: membership and statistics change without any operation here
    assert fs.cache_hints(lookup_path(fs, "cpu,cpuacct", "cgroup.procs")) == (True, False)
    assert fs.cache_hints(lookup_path(fs, "cpu,cpuacct", "cpuacct.usage")) == (True, False)
    assert fs.cache_hints(12345) == (False, False)  # unknown inode


def test_nodes_of_other_trees_are_not_cached_by_default():
    class Plain(Node):
        key = ("plain",)

        def attr(self) -> Attr:
            return Attr(stat.S_IFDIR | 0o755)

    ops = FsOps(Plain())
    assert ops.cache_hints(ROOT_INODE) == (False, False)


def test_every_changing_operation_counts_even_when_refused(fs):
    cpu = lookup_path(fs, "cpu,cpuacct")
    shares = lookup_path(fs, "cpu,cpuacct", "cpu.shares")
    seen = fs.changes
    d, _ = fs.mkdir(cpu, "g", ROOT)
    assert fs.changes > seen
    seen = fs.changes
    with pytest.raises(Exception):
        write(fs, shares, b"5")  # the root's cpu.shares refuses writes (EINVAL)
    assert fs.changes > seen
    seen = fs.changes
    fs.setattr(d, mode=0o700)
    assert fs.changes > seen
    seen = fs.changes
    fs.rmdir(cpu, "g", ROOT)
    assert fs.changes > seen
    seen = fs.changes
    read_all(fs, shares)
    fs.getattr(shares)
    assert fs.changes == seen  # reading changes nothing


def test_a_stable_file_is_rendered_once_per_change(fs, monkeypatch):
    cpu = lookup_path(fs, "cpu,cpuacct")
    d, _ = fs.mkdir(cpu, "g", ROOT)
    shares, _ = fs.lookup(d, "cpu.shares")
    renders = []
    original = ControlNode.render

    def counting(self):
        renders.append(self.name)
        return original(self)

    monkeypatch.setattr(ControlNode, "render", counting)
    assert [read_all(fs, shares) for _ in range(3)] == [b"1024\n"] * 3
    assert renders == ["cpu.shares"]
    write(fs, shares, b"2048")
    assert read_all(fs, shares) == b"2048\n"  # the next read after a write
    assert read_all(fs, shares) == b"2048\n"
    assert renders == ["cpu.shares", "cpu.shares"]


def test_live_files_are_rendered_on_every_open(fs, procs, monkeypatch):
    sd = lookup_path(fs, "systemd")
    d, _ = fs.mkdir(sd, "job", ROOT)
    cgprocs, _ = fs.lookup(d, "cgroup.procs")
    write(fs, cgprocs, b"200")
    assert read_all(fs, cgprocs) == b"200\n"
    procs.exit(200)  # no operation on the filesystem: only the next read can tell
    assert read_all(fs, cgprocs) == b""


def test_a_rewind_renders_anew_as_kernfs_does(fs):
    cpu = lookup_path(fs, "cpu,cpuacct")
    d, _ = fs.mkdir(cpu, "g", ROOT)
    ino, _ = fs.lookup(d, "cpu.cfs_period_us")
    fh = fs.open(ino, os.O_RDONLY, ROOT)
    assert fs.read(fh, 0, 2) == b"10"
    write(fs, ino, b"2000")
    assert fs.read(fh, 2, 100) == b"0000\n"  # reading on: the open-time snapshot
    assert fs.read(fh, 8, 100) == b""  # where the last read ended: still that snapshot (EOF)
    assert fs.read(fh, 0, 100) == b"2000\n"  # pread(fd, n, 0): rendered anew
    write(fs, ino, b"3000")
    assert fs.read(fh, 2, 100) == b"00\n"  # any other offset too, from the new value
    fs.release(fh)


# -- the pyfuse3 adapter ----------------------------------------------------------

class Ctx:
    def __init__(self, pid=100, uid=0, gid=0):
        self.pid, self.uid, self.gid, self.umask = pid, uid, gid, 0o022


class _Attr:
    def __init__(self, mode=0, uid=0, gid=0, size=0):
        self.st_mode, self.st_uid, self.st_gid, self.st_size = mode, uid, gid, size


class _Fields:
    def __init__(self, update_mode=False, update_uid=False, update_gid=False, update_size=False):
        self.update_mode, self.update_uid = update_mode, update_uid
        self.update_gid, self.update_size = update_gid, update_size
        self.update_atime = self.update_mtime = False


@pytest.fixture
def adapter(fs, monkeypatch):
    invalidated: list[int] = []

    def invalidate(inode, attr_only=False):
        assert attr_only, "only attributes: data invalidation could deadlock in a handler"
        invalidated.append(inode)

    monkeypatch.setattr(pyfuse3, "invalidate_inode", invalidate)
    ops = pyfuse3_backend.make_operations(fs)
    ops.invalidated = invalidated
    return ops


async def test_replies_carry_timeouts_by_what_may_change(adapter):
    cpu = await adapter.lookup(ROOT_INODE, b"cpu,cpuacct", Ctx())
    assert cpu.entry_timeout == cpu.attr_timeout == pyfuse3_backend.STABLE_TIMEOUT
    shares = await adapter.lookup(cpu.st_ino, b"cpu.shares", Ctx())
    assert shares.entry_timeout == pyfuse3_backend.STABLE_TIMEOUT
    assert shares.attr_timeout == pyfuse3_backend.STABLE_FILE_ATTR_TIMEOUT
    live = await adapter.lookup(cpu.st_ino, b"cgroup.procs", Ctx())
    assert live.entry_timeout == pyfuse3_backend.STABLE_TIMEOUT
    assert live.attr_timeout == 0  # its size changes when a process exits


async def test_a_write_invalidates_cached_file_attributes_before_its_reply(adapter):
    cpu = await adapter.lookup(ROOT_INODE, b"cpu,cpuacct", Ctx())
    child = await adapter.mkdir(cpu.st_ino, b"g", 0o755, Ctx())
    shares = await adapter.lookup(child.st_ino, b"cpu.shares", Ctx())
    period = await adapter.lookup(child.st_ino, b"cpu.cfs_period_us", Ctx())
    await adapter.lookup(child.st_ino, b"cgroup.procs", Ctx())  # live: never cached, never invalidated
    info = await adapter.open(shares.st_ino, os.O_WRONLY, Ctx())
    assert await adapter.write(info.fh, 0, b"123456") == 6
    # the written file itself is left to the kernel: it drops that size after every write
    assert adapter.invalidated == [period.st_ino]
    # the kernel asks again and gets the new size
    assert (await adapter.getattr(shares.st_ino, Ctx())).st_size == len(b"123456\n")
    # reads change nothing: no invalidation without a change
    adapter.invalidated.clear()
    rinfo = await adapter.open(shares.st_ino, os.O_RDONLY, Ctx())
    assert await adapter.read(rinfo.fh, 0, 100) == b"123456\n"
    await adapter.release(rinfo.fh)
    assert adapter.invalidated == []
    # a refused write still invalidates (a command may fail after a partial change)
    await adapter.lookup(child.st_ino, b"cpu.cfs_period_us", Ctx())
    with pytest.raises(pyfuse3.FUSEError):
        await adapter.write(info.fh, 0, b"junk")
    assert adapter.invalidated == [period.st_ino]
    await adapter.release(info.fh)
    # other changes invalidate every stable file the kernel may hold
    adapter.invalidated.clear()
    await adapter.lookup(child.st_ino, b"cpu.cfs_period_us", Ctx())
    await adapter.setattr(child.st_ino, _Attr(mode=0o700), _Fields(update_mode=True), None, Ctx())
    assert sorted(adapter.invalidated) == sorted([shares.st_ino, period.st_ino])


async def test_expired_and_forgotten_attributes_are_not_invalidated(adapter, monkeypatch):
    cpu = await adapter.lookup(ROOT_INODE, b"cpu,cpuacct", Ctx())
    child = await adapter.mkdir(cpu.st_ino, b"g", 0o755, Ctx())
    shares = await adapter.lookup(child.st_ino, b"cpu.shares", Ctx())
    period = await adapter.lookup(child.st_ino, b"cpu.cfs_period_us", Ctx())
    await adapter.forget([(period.st_ino, 1)])
    monkeypatch.setattr(pyfuse3_backend, "STABLE_FILE_ATTR_TIMEOUT", 0.0)
    quota = await adapter.lookup(child.st_ino, b"cpu.cfs_quota_us", Ctx())  # expires at once
    with pytest.raises(pyfuse3.FUSEError):
        await adapter.mkdir(child.st_ino, b"cpu.shares", 0o755, Ctx())  # EEXIST, still a change
    assert shares.st_ino in adapter.invalidated
    assert period.st_ino not in adapter.invalidated and quota.st_ino not in adapter.invalidated


async def test_attributes_in_a_changing_reply_stay_tracked(adapter):
    # chmod's reply carries the file's new attributes, which the kernel
    # keeps: a later change elsewhere must still invalidate them.
    cpu = await adapter.lookup(ROOT_INODE, b"cpu,cpuacct", Ctx())
    child = await adapter.mkdir(cpu.st_ino, b"g", 0o755, Ctx())
    shares = await adapter.lookup(child.st_ino, b"cpu.shares", Ctx())
    period = await adapter.lookup(child.st_ino, b"cpu.cfs_period_us", Ctx())
    adapter.invalidated.clear()
    reply = await adapter.setattr(shares.st_ino, _Attr(mode=0o600), _Fields(update_mode=True), None, Ctx())
    assert stat.S_IMODE(reply.st_mode) == 0o600
    assert adapter.invalidated == [period.st_ino]  # not shares: its reply is current
    adapter.invalidated.clear()
    info = await adapter.open(period.st_ino, os.O_WRONLY, Ctx())
    await adapter.write(info.fh, 0, b"200000")
    await adapter.release(info.fh)
    assert adapter.invalidated == [shares.st_ino]


async def test_flush_is_left_to_the_kernel(adapter):
    # ENOSYS once: the kernel then stops sending FLUSH on every close.
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await adapter.flush(1)
    assert exc.value.errno == __import__("errno").ENOSYS


# -- a real mount -------------------------------------------------------------------

@pytest.mark.fuse
def test_a_write_through_one_fd_is_seen_through_another_at_once(cgmount):
    os.mkdir(cgmount.p("cpu,cpuacct", "w"))
    path = cgmount.p("cpu,cpuacct", "w", "cpu.shares")
    try:
        keeper = os.open(path, os.O_RDONLY)  # a monitor that keeps its fd
        try:
            assert os.read(keeper, 100) == b"1024\n"
            assert os.stat(path).st_size == 5
            for value in (b"3", b"123456", b"77"):
                writer = os.open(path, os.O_WRONLY)
                os.write(writer, value)
                os.close(writer)
                assert os.pread(keeper, 100, 0) == value + b"\n"
                with open(path, "rb") as f:
                    assert f.read() == value + b"\n"
                assert os.stat(path).st_size == len(value) + 1
                assert os.fstat(keeper).st_size == len(value) + 1
        finally:
            os.close(keeper)
    finally:
        os.rmdir(cgmount.p("cpu,cpuacct", "w"))


@pytest.mark.fuse
def test_a_write_that_changes_another_file_is_seen_in_its_size(cgmount):
    # devices.deny on a parent propagates to its children (propagate_exception):
    # the child's devices.list changes though nobody wrote to it.
    parent = cgmount.p("devices", "p")
    os.mkdir(parent)
    try:
        cgmount.write("devices/p/devices.deny", b"a")
        cgmount.write("devices/p/devices.allow", b"c 1:3 r")
        os.mkdir(os.path.join(parent, "c"))
        listing = os.path.join(parent, "c", "devices.list")
        assert os.stat(listing).st_size == len(b"c 1:3 r\n")
        cgmount.write("devices/p/devices.deny", b"c 1:3 r")
        assert os.stat(listing).st_size == 0
        with open(listing, "rb") as f:
            assert f.read() == b""
    finally:
        if os.path.isdir(os.path.join(parent, "c")):
            os.rmdir(os.path.join(parent, "c"))
        os.rmdir(parent)


@pytest.mark.fuse
def test_chmod_and_mkdir_are_seen_at_once(cgmount):
    base = cgmount.p("cpu,cpuacct")
    links = os.stat(base).st_nlink
    os.mkdir(os.path.join(base, "m"))
    try:
        assert os.stat(base).st_nlink == links + 1
        path = os.path.join(base, "m", "cpu.shares")
        os.chmod(path, 0o600)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        os.rename(os.path.join(base, "m"), os.path.join(base, "n"))
        assert not os.path.exists(path)
        assert stat.S_IMODE(os.stat(os.path.join(base, "n", "cpu.shares")).st_mode) == 0o600
    finally:
        for name in ("m", "n"):
            if os.path.isdir(os.path.join(base, name)):
                os.rmdir(os.path.join(base, name))
    assert os.stat(base).st_nlink == links
    assert not os.path.exists(os.path.join(base, "n"))


@pytest.mark.fuse
def test_a_process_that_exited_is_gone_on_the_next_read(cgmount):
    d = cgmount.p("systemd", "exit")
    os.mkdir(d)
    procs = os.path.join(d, "cgroup.procs")
    child = subprocess.Popen(["sleep", "30"])
    try:
        cgmount.write("systemd/exit/cgroup.procs", str(child.pid))
        with open(procs) as f:
            assert f.read().split() == [str(child.pid)]
        size_with = os.stat(procs).st_size
        assert size_with == len(f"{child.pid}\n")
    finally:
        child.kill()
        child.wait()
    # no write happened: nothing was invalidated, yet the next stat and read see it
    assert os.stat(procs).st_size == 0
    with open(procs) as f:
        assert f.read() == ""
    os.rmdir(d)


# -- pyfuse3's session loop ---------------------------------------------------------

async def test_a_ready_fuse_fd_is_not_waited_for_yet_other_tasks_still_run():
    import trio

    pyfuse3_backend.make_operations(FsOps(CgroupFsRoot(CgroupModel(HostFacts(), StaticProcessTable(),
                                                                   ["name=systemd"]))))
    lowlevel = pyfuse3.trio.lowlevel
    assert isinstance(lowlevel, pyfuse3_backend._TrioLowlevelSkippingReadyWaits)
    assert trio.lowlevel.wait_readable is not lowlevel.wait_readable  # only pyfuse3's view changes
    r, w = os.pipe()
    try:
        # nothing queued: it really waits
        with trio.move_on_after(0.05) as scope:
            await lowlevel.wait_readable(r)
        assert scope.cancelled_caught
        os.write(w, b"x")
        reached = False
        with trio.CancelScope() as scope:
            scope.cancel()
            for _ in range(lowlevel.STREAK):
                await lowlevel.wait_readable(r)  # queued: returns at once, not even a checkpoint
            reached = True
            # a streak ends with a real wait through trio, a checkpoint: other
            # tasks (signals, fork events) get their turn, here the cancellation
            await lowlevel.wait_readable(r)
            pytest.fail("the wait after a streak did not go through trio")
        assert reached and scope.cancelled_caught
    finally:
        os.close(r)
        os.close(w)
