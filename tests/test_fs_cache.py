"""What the kernel may cache, and that caching never shows a stale value.

Three levels: the shared operations (cache hints, the change counter, one
rendering per change, change scopes and the invalidations they send, mtimes
that move with the content, reads served from what the kernel was told),
the pyfuse3 adapter (timeouts in replies, page cache or direct I/O per
open, invalidation before a write's reply), and a real FUSE mount
(tests/test_freshness.py has the rest)."""

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
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from fakefs.model.usage import NullStats

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

@pytest.fixture
def kernel(fs):
    """An FsOps as a transport that keeps pages and attributes sets it up;
    ``kernel.forgotten`` collects the inodes it is told to forget."""
    forgotten: list[int] = []
    fs.page_cache = "all"
    fs.invalidate = forgotten.extend
    fs.forgotten = forgotten
    return fs


def test_cache_hints_follow_what_can_change_behind_the_kernels_back(kernel):
    fs = kernel
    cpu = lookup_path(fs, "cpu,cpuacct")
    assert fs.cache_hints(ROOT_INODE) == (True, True)
    assert fs.cache_hints(cpu) == (True, True)
    assert fs.cache_hints(lookup_path(fs, "cpu")) == (True, True)  # the alias symlink
    assert fs.cache_hints(lookup_path(fs, "cpu,cpuacct", "cpu.shares")) == (True, True)
    # live files: membership and statistics change without any operation here
    assert fs.cache_hints(lookup_path(fs, "cpu,cpuacct", "cgroup.procs")) == (True, False)
    assert fs.cache_hints(lookup_path(fs, "cpu,cpuacct", "cpuacct.usage")) == (True, False)
    assert fs.cache_hints(12345) == (False, False)  # unknown inode


def test_without_invalidations_no_file_attributes_are_kept(fs):
    # gVisor's FUSE client takes no invalidations: a file's size must be asked.
    assert fs.cache_hints(lookup_path(fs, "cpu,cpuacct")) == (True, True)
    assert fs.cache_hints(lookup_path(fs, "cpu,cpuacct", "cpu.shares")) == (True, False)


def test_nodes_of_other_trees_are_not_cached_by_default():
    class Plain(Node):
        key = ("plain",)

        def attr(self) -> Attr:
            return Attr(stat.S_IFDIR | 0o755)

    ops = FsOps(Plain())
    assert ops.cache_hints(ROOT_INODE) == (False, False)
    assert not Plain.serves_without_open and CgroupFsRoot.serves_without_open


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


def test_a_live_file_renders_once_per_change_of_what_it_shows(fs, procs, monkeypatch):
    # With the fork watcher running (model.refresh), every process event and
    # every model change moves the render key; between them, the three
    # requests of one open+read+read share one rendering.
    model = fs.root.model
    refreshed = []
    model.refresh = lambda: refreshed.append(1)
    model.stats = NullStats()
    sd = lookup_path(fs, "systemd")
    d, _ = fs.mkdir(sd, "job", ROOT)
    cgprocs, _ = fs.lookup(d, "cgroup.procs")
    write(fs, cgprocs, b"200")
    renders = []
    original = ControlNode.snapshot

    def counting(self, ctx):
        renders.append(self.name)
        return original(self, ctx)

    monkeypatch.setattr(ControlNode, "snapshot", counting)
    assert [fs.getattr(cgprocs).size for _ in range(3)] == [4] * 3
    assert renders == ["cgroup.procs"] and refreshed  # events applied before each look
    model.exited(200)  # an exit event, as the watcher applies it
    procs.exit(200)
    assert fs.getattr(cgprocs).size == 0
    model.forked(1, 300)  # an unplaced process's event moves the key too (the root lists it)
    assert len(renders) == 2
    fs.getattr(cgprocs)
    assert len(renders) == 3


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


def test_a_change_makes_the_kernel_forget_what_it_changed_in_its_scope(kernel):
    fs = kernel
    cpuset = None  # the cgroup tree of this fixture has cpu,cpuacct and systemd
    cpu = lookup_path(fs, "cpu,cpuacct")
    a, _ = fs.mkdir(cpu, "a", ROOT)
    b, _ = fs.mkdir(cpu, "b", ROOT)
    a_shares, _ = fs.lookup(a, "cpu.shares")
    a_period, _ = fs.lookup(a, "cpu.cfs_period_us")
    a_quota, _ = fs.lookup(a, "cpu.cfs_quota_us")
    b_shares, _ = fs.lookup(b, "cpu.shares")
    fs.lookup(a, "cgroup.procs")  # live: its attributes are never kept
    assert cpuset is None and fs.forgotten == []
    fs.write_inode(a_period, 0, b"200000", ROOT)
    # Only what changed: a's period (left to the kernel: it forgets a written
    # file's size itself); a's shares and quota and all of b stay.
    assert fs.forgotten == []
    fs.write_inode(a_quota, 0, b"50000", ROOT)
    assert fs.forgotten == []
    # The written file's next reply carries a new mtime; the others' stay.
    before = {i: fs.getattr(i).mtime_ns for i in (a_shares, a_period, b_shares)}
    assert fs.getattr(a_shares).mtime_ns == before[a_shares]
    # A refused write changes nothing, and its file is still left to the kernel.
    with pytest.raises(KernelError):
        fs.write_inode(a_shares, 0, b"junk", ROOT)
    assert fs.forgotten == []
    # chmod of a's period: its reply carries the new mode.
    assert stat.S_IMODE(fs.setattr(a_period, mode=0o600).mode) == 0o600


def test_a_write_makes_descendants_forget_what_follows_it():
    # devices.deny on a parent takes the exception from every child
    # (propagate_exception): the children's devices.list change too.
    forgotten: list[int] = []
    fs = FsOps(CgroupFsRoot(CgroupModel(HostFacts(), StaticProcessTable(), ["devices", "cpu,cpuacct"])))
    fs.page_cache, fs.invalidate = "all", forgotten.extend
    dev = lookup_path(fs, "devices")
    p, _ = fs.mkdir(dev, "p", ROOT)
    allow, _ = fs.lookup(p, "devices.allow")
    deny, _ = fs.lookup(p, "devices.deny")
    fs.write_inode(deny, 0, b"a", ROOT)
    fs.write_inode(allow, 0, b"c 1:3 r", ROOT)
    c, _ = fs.mkdir(p, "c", ROOT)
    c_list, attr = fs.lookup(c, "devices.list")
    p_list, _ = fs.lookup(p, "devices.list")
    other, _ = fs.lookup(c, "devices.allow")
    assert attr.size == len(b"c 1:3 r\n")
    forgotten.clear()
    fs.write_inode(deny, 0, b"c 1:3 r", ROOT)
    assert sorted(forgotten) == sorted([c_list, p_list])
    assert fs.getattr(c_list).size == 0
    # told once: until the kernel asks again it keeps nothing to forget
    forgotten.clear()
    fs.write_inode(deny, 0, b"c 1:5 r", ROOT)
    assert forgotten == []
    # a cgroup in another hierarchy is another scope
    cpu = lookup_path(fs, "cpu,cpuacct")
    shares, _ = fs.lookup(cpu, "cpu.shares")
    fs.write_inode(deny, 0, b"c 1:3 r", ROOT)
    assert shares not in forgotten and other not in forgotten


def test_replies_move_the_mtime_with_the_content_and_after_every_write(kernel):
    fs = kernel
    cpu = lookup_path(fs, "cpu,cpuacct")
    g, _ = fs.mkdir(cpu, "g", ROOT)
    shares, first = fs.lookup(g, "cpu.shares")
    assert fs.getattr(shares).mtime_ns == first.mtime_ns  # the same content: the same mtime
    # "0x400" is 1024: the content is the same, but the kernel copied the
    # written bytes into the page it holds, so the next reply must make it
    # drop that page (a new mtime; the size is the same).
    fs.write_inode(shares, 0, b"0x400", ROOT)
    second = fs.getattr(shares)
    assert (second.size, second.mtime_ns) == (first.size, first.mtime_ns + 1)
    fs.write_inode(shares, 0, b"2048", ROOT)
    third = fs.getattr(shares)
    assert third.mtime_ns == first.mtime_ns + 2
    assert fs.read_shown(shares, 0, 100) == b"2048\n"
    # stat shows the node's own mtime to the second (nanoseconds move)
    assert third.mtime_ns // 10**9 == first.mtime_ns // 10**9 or third.mtime_ns - first.mtime_ns < 10**6


def test_a_read_is_served_from_what_the_last_reply_stood_for(kernel):
    # A READ queued behind a write was sized by the kernel from the reply
    # before the write: it gets those bytes (the write is concurrent with
    # that read), never the new content cut at the old size.
    fs = kernel
    cpu = lookup_path(fs, "cpu,cpuacct")
    g, _ = fs.mkdir(cpu, "g", ROOT)
    shares, attr = fs.lookup(g, "cpu.shares")
    assert attr.size == 5
    fs.write_inode(shares, 0, b"123456", ROOT)
    assert fs.read_shown(shares, 0, 4096) == b"1024\n"
    assert fs.getattr(shares).size == 7  # the next read asks first (its size was forgotten)
    assert fs.read_shown(shares, 0, 4096) == b"123456\n"


def test_rmdir_makes_the_kernel_forget_the_removed_cgroups_files(kernel):
    fs = kernel
    cpu = lookup_path(fs, "cpu,cpuacct")
    g, _ = fs.mkdir(cpu, "g", ROOT)
    shares, _ = fs.lookup(g, "cpu.shares")
    kept, _ = fs.lookup(cpu, "cpu.shares")
    fs.rmdir(cpu, "g", ROOT)
    assert fs.forgotten == [shares]  # a kept fd's next read asks, and fails as the kernel's does
    with pytest.raises(KernelError):
        fs.getattr(shares)
    assert kept not in fs.forgotten


def test_a_change_renders_only_the_kept_files_of_its_scope(kernel, monkeypatch):
    # What a write costs does not grow with the tree: files of other
    # cgroups are not looked at.
    fs = kernel
    cpu = lookup_path(fs, "cpu,cpuacct")
    groups = [fs.mkdir(cpu, f"g{i}", ROOT)[0] for i in range(20)]
    for g in groups:
        fs.lookup(g, "cpu.shares")
        fs.lookup(g, "cpu.cfs_quota_us")
    target, _ = fs.lookup(groups[3], "cpu.shares")
    renders = []
    original = ControlNode.snapshot

    def counting(self, ctx):
        renders.append(self.cgroup.name)
        return original(self, ctx)

    monkeypatch.setattr(ControlNode, "snapshot", counting)
    fs.write_inode(target, 0, b"77", ROOT)
    assert set(renders) == {"g3"} and len(renders) <= 2


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
    assert shares.entry_timeout == shares.attr_timeout == pyfuse3_backend.STABLE_TIMEOUT
    live = await adapter.lookup(cpu.st_ino, b"cgroup.procs", Ctx())
    assert live.entry_timeout == pyfuse3_backend.STABLE_TIMEOUT
    assert live.attr_timeout == 0  # its size changes when a process exits


async def test_read_only_opens_of_stable_files_read_the_page_cache(adapter):
    cpu = await adapter.lookup(ROOT_INODE, b"cpu,cpuacct", Ctx())
    child = await adapter.mkdir(cpu.st_ino, b"g", 0o755, Ctx())
    shares = await adapter.lookup(child.st_ino, b"cpu.shares", Ctx())
    live = await adapter.lookup(child.st_ino, b"cgroup.procs", Ctx())
    ro = await adapter.open(shares.st_ino, os.O_RDONLY, Ctx())
    assert ro.keep_cache and not ro.direct_io
    for inode, flags in ((live.st_ino, os.O_RDONLY), (shares.st_ino, os.O_WRONLY), (shares.st_ino, os.O_RDWR)):
        info = await adapter.open(inode, flags, Ctx())
        assert info.direct_io and not info.keep_cache  # a snapshot of its own, or writes
        await adapter.release(info.fh)
    # a write through another handle: the cached reader's next read sees it
    wo = await adapter.open(shares.st_ino, os.O_WRONLY, Ctx())
    assert await adapter.write(wo.fh, 0, b"0x800") == 5
    assert (await adapter.getattr(shares.st_ino, Ctx())).st_size == 5
    assert await adapter.read(ro.fh, 0, 100) == b"2048\n"


async def test_a_write_invalidates_changed_kept_attributes_before_its_reply(adapter):
    cpu = await adapter.lookup(ROOT_INODE, b"cpu,cpuacct", Ctx())
    child = await adapter.mkdir(cpu.st_ino, b"g", 0o755, Ctx())
    await adapter.lookup(child.st_ino, b"cpu.shares", Ctx())
    period = await adapter.lookup(child.st_ino, b"cpu.cfs_period_us", Ctx())
    quota = await adapter.lookup(child.st_ino, b"cpu.cfs_quota_us", Ctx())
    other = await adapter.lookup(cpu.st_ino, b"cpu.shares", Ctx())  # the parent's: another scope
    info = await adapter.open(period.st_ino, os.O_WRONLY, Ctx())
    assert await adapter.write(info.fh, 0, b"200000") == 6
    # the written file is left to the kernel (it forgets its size after
    # every write); nothing else changed
    assert adapter.invalidated == []
    await adapter.setattr(quota.st_ino, _Attr(mode=0o600), _Fields(update_mode=True), None, Ctx())
    assert adapter.invalidated == []  # chmod's reply carries the new mode
    assert other.st_ino not in adapter.invalidated
    await adapter.release(info.fh)


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
