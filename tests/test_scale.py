"""Every per-cgroup operation costs the same in a tree of 10 cgroups as in
one of 10,000 (issue 12): listing one cgroup, a live read, a stat, a write,
mkdir+rmdir, through each FUSE transport exactly as the kernel's requests
arrive. The cost is counted, not timed: the Python lines each operation
executes (sys.settrace), which no load on the machine can change. A cost
that grows with the tree (a walk over every cgroup, every file the kernel
holds, every inode) shows as thousands of lines more at 10,000."""

from __future__ import annotations

import os
import sys

import pyfuse3
import pytest

from fakefs.backends import fuse as pyfuse3_backend
from fakefs.backends.rawfuse import protocol as P
from fakefs.backends.rawfuse.protocol import Opcode
from fakefs.backends.rawfuse.server import FuseSession
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from fakefs.model.usage import FixedStats, ProcessMemory, ThreadCpu
from fakefs.vfs.cgroupfs import CgroupFsRoot
from fakefs.vfs.ops import ROOT_INODE, FsOps
from tests.test_rawfuse_protocol import LINUX_INIT, attr_of, dirents, entry, name, ok, request

SMALL, LARGE = 10, 10_000
HIERARCHIES = ("cpu,cpuacct", "memory", "pids")
MEMBER = 4242


def model_with(n: int) -> CgroupModel:
    """kubepods/c0 .. c{n-1} in every hierarchy; a process with live
    figures in c0 (the statistics have something to add up)."""
    procs = StaticProcessTable()
    procs.spawn(MEMBER)
    model = CgroupModel(HostFacts(), procs, list(HIERARCHIES))
    model.stats = FixedStats(now=10**9, thread_figures={MEMBER: ThreadCpu(MEMBER, 5 * 10**8, 3 * 10**8, 10**8)},
                             process_figures={MEMBER: ProcessMemory(anon=64 << 20, file=8 << 20)})
    for spec in HIERARCHIES:
        h = model.hierarchy(spec.split(",")[0])
        kubepods = h.mkdir(h.root, "kubepods")
        for i in range(n):
            h.mkdir(kubepods, f"c{i}")
        h.attach(h.resolve("/kubepods/c0"), MEMBER, threadgroup=True)
    return model


def lines(operation) -> int:
    count = 0

    def trace(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        operation()
    finally:
        sys.settrace(None)
    return count


# -- the operations, as each transport receives them ------------------------------
class RawFuse:
    """fuse-raw in its page cache mode (Linux): requests as bytes."""

    def __init__(self, model: CgroupModel):
        self.s = FuseSession(FsOps(CgroupFsRoot(model)), log=lambda msg: None)
        ok(self.s, LINUX_INIT)
        assert self.s.page_cache

    def lookup(self, parent: int, child: str) -> int:
        return entry(ok(self.s, request(Opcode.LOOKUP, parent, name(child))))[0].nodeid

    def listdir(self, inode: int) -> None:
        fh = P.OPEN_OUT.unpack(ok(self.s, request(Opcode.OPENDIR, inode, P.OPEN_IN.pack()))).fh
        assert dirents(ok(self.s, request(Opcode.READDIR, inode, P.READ_IN.pack(fh=fh, size=65536))))
        ok(self.s, request(Opcode.RELEASEDIR, inode, P.RELEASE_IN.pack(fh=fh)))

    def stat(self, inode: int) -> None:
        assert attr_of(ok(self.s, request(Opcode.GETATTR, inode, P.GETATTR_IN.pack()))).size > 0

    def read(self, inode: int) -> None:
        # open+read+read at EOF+close of a live file: a GETATTR for the
        # permission check and one before each read (attributes that expire
        # at once), the READ when the content moved.
        for _ in range(3):
            self.stat(inode)
        assert ok(self.s, request(Opcode.READ, inode, P.READ_IN.pack(fh=0, size=4096)))

    def write(self, inode: int, data: bytes) -> None:
        ok(self.s, request(Opcode.WRITE, inode, P.WRITE_IN.pack(fh=0, size=len(data)) + data))

    def mkdir_rmdir(self, parent: int, child: str) -> None:
        ok(self.s, request(Opcode.MKDIR, parent, P.MKDIR_IN.pack(mode=0o755) + name(child)))
        ok(self.s, request(Opcode.RMDIR, parent, name(child)))


class _Ctx:
    pid, uid, gid, umask = 100, 0, 0, 0o022


def _call(coroutine):
    """Run one of the adapter's operations: they never await, so one send
    runs it to the end (no event loop whose bookkeeping would be counted)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the operation awaited")


class Pyfuse3:
    """The pyfuse3 adapter, called as pyfuse3 calls it."""

    def __init__(self, model: CgroupModel):
        self.ops = pyfuse3_backend.make_operations(FsOps(CgroupFsRoot(model)))

    def lookup(self, parent: int, child: str) -> int:
        return _call(self.ops.lookup(parent, child.encode(), _Ctx())).st_ino

    def listdir(self, inode: int) -> None:
        fh = _call(self.ops.opendir(inode, _Ctx()))
        _call(self.ops.readdir(fh, 0, None))
        _call(self.ops.releasedir(fh))

    def stat(self, inode: int) -> None:
        assert _call(self.ops.getattr(inode, _Ctx())).st_size > 0

    def read(self, inode: int) -> None:
        info = _call(self.ops.open(inode, os.O_RDONLY, _Ctx()))
        assert _call(self.ops.read(info.fh, 0, 4096))
        _call(self.ops.read(info.fh, 4096, 4096))
        _call(self.ops.release(info.fh))

    def write(self, inode: int, data: bytes) -> None:
        info = _call(self.ops.open(inode, os.O_WRONLY, _Ctx()))
        _call(self.ops.write(info.fh, 0, data))
        _call(self.ops.release(info.fh))

    def mkdir_rmdir(self, parent: int, child: str) -> None:
        _call(self.ops.mkdir(parent, child.encode(), 0o755, _Ctx()))
        _call(self.ops.rmdir(parent, child.encode(), _Ctx()))


def costs(transport, n: int) -> dict[str, int]:
    t = transport(model_with(n))
    leaf = {}
    for spec in HIERARCHIES:
        top = t.lookup(t.lookup(ROOT_INODE, spec), "kubepods")
        leaf[spec] = (top, t.lookup(top, "c0"))
    cpu_top, cpu_leaf = leaf["cpu,cpuacct"]
    files = {f: t.lookup(cpu_leaf, f) for f in ("cpuacct.usage", "cpu.stat", "cpu.shares")}
    mem_stat = t.lookup(leaf["memory"][1], "memory.stat")
    pids = t.lookup(leaf["pids"][1], "pids.current")
    operations = {
        "listdir cpu,cpuacct/kubepods/c0": lambda: t.listdir(cpu_leaf),
        "listdir memory/kubepods/c0": lambda: t.listdir(leaf["memory"][1]),
        "read cpuacct.usage": lambda: t.read(files["cpuacct.usage"]),
        "read memory.stat": lambda: t.read(mem_stat),
        "read pids.current": lambda: t.read(pids),
        "stat cpu.stat": lambda: t.stat(files["cpu.stat"]),
        "stat cpu.shares": lambda: t.stat(files["cpu.shares"]),
        "write cpu.shares": lambda: t.write(files["cpu.shares"], b"2048"),
        "mkdir+rmdir in kubepods": lambda: t.mkdir_rmdir(cpu_top, "new"),
    }
    out = {}
    for what, operation in operations.items():
        operation()  # the first time costs what a first look costs (lookups, one-time scans)
        out[what] = lines(operation)
    return out


@pytest.mark.parametrize("transport", [RawFuse, Pyfuse3], ids=["fuse-raw", "pyfuse3"])
def test_per_cgroup_operations_cost_the_same_at_10_and_10000_cgroups(transport, monkeypatch):
    # what pyfuse3 would hand the kernel (no session here)
    monkeypatch.setattr(pyfuse3, "invalidate_inode", lambda inode, attr_only=False: None)
    monkeypatch.setattr(pyfuse3, "readdir_reply", lambda token, name, attr, next_id: True)
    small, large = costs(transport, SMALL), costs(transport, LARGE)
    grown = {what: (small[what], large[what]) for what in small if large[what] > 1.2 * small[what]}
    assert not grown, f"Python lines per operation, {SMALL} -> {LARGE:,} cgroups: {grown}"
    assert all(count > 50 for count in small.values()), small  # something was measured
