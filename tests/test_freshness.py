"""The kernel keeps what fakefs serves (attributes, and pages: both FUSE
backends on this kernel, see fakefs/vfs/ops.py); nothing it keeps is ever
stale. Each check runs through a real mount, on both backends, and looks
right after the event, without waiting: a write, a refused write, a process
exit or fork, mkdir/rmdir, a change that moves other files, the state a
restarted server restores, and live statistics."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys

import pytest

from fakefs.runtime import registry, statefile
from tests.support import FUSE_BACKENDS, Child, wait_for

pytestmark = pytest.mark.fuse

MB = 1 << 20


def read(path: str) -> bytes:
    """open, read until EOF, close: no fstat (Python's file objects fstat
    first, and that would ask the server whenever a read left the atime
    stale, hiding what the kernel keeps)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        return data
    finally:
        os.close(fd)


def cached(path: str) -> bytes:
    """Read, then stat: the kernel now holds the file's pages and all its
    attributes, and answers the next read itself unless told otherwise."""
    data = read(path)
    os.stat(path)
    return data


def write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def errno_of(fn, *args) -> str:
    try:
        fn(*args)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ok"


def read_elsewhere(path: str) -> bytes:
    """The file as another process reads it."""
    script = f"import os; fd = os.open({path!r}, os.O_RDONLY); os.write(1, os.read(fd, 65536))"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, timeout=30).stdout


@pytest.fixture
def child():
    c = Child()
    yield c
    c.stop()


@pytest.fixture
def group(cgmount):
    """A fresh cgroup in each of the hierarchies these tests use; removed after."""
    made = []

    def make(hierarchy: str, *names: str) -> str:
        path = cgmount.p(hierarchy, *names)
        os.mkdir(path)
        made.append(path)
        return path

    yield make
    for path in reversed(made):
        if os.path.isdir(path):
            os.rmdir(path)


def test_a_write_is_what_the_next_read_shows_anywhere(cgmount, group):
    g = group("memory", "w")
    path = os.path.join(g, "memory.limit_in_bytes")
    keeper = os.open(path, os.O_RDONLY)  # a monitor that keeps its fd
    try:
        assert cached(path) == b"9223372036854771712\n"
        assert os.pread(keeper, 100, 0) == b"9223372036854771712\n"
        write(path, b"1G")
        for got in (read(path), os.pread(keeper, 100, 0), read_elsewhere(path)):
            assert got == b"1073741824\n"  # the kernel's rendering, not what was written
        assert os.stat(path).st_size == os.fstat(keeper).st_size == 11
        write(path, b"4097")  # rounded down to whole pages
        assert read(path) == b"4096\n" and os.stat(path).st_size == 5
    finally:
        os.close(keeper)
    # The same value in another spelling: the size and the value stay, but
    # the bytes written went through the kernel's copy of the page.
    shares = os.path.join(group("cpu,cpuacct", "w"), "cpu.shares")
    assert cached(shares) == b"1024\n"
    write(shares, b"0x400")
    assert read(shares) == b"1024\n" and read_elsewhere(shares) == b"1024\n"


def test_a_refused_write_leaves_the_old_bytes(cgmount, group):
    shares = os.path.join(group("cpu,cpuacct", "r"), "cpu.shares")
    write(shares, b"3")
    assert cached(shares) == b"3\n"
    for junk in (b"junk", b"1x", b"99999999999999999999999"):
        assert errno_of(write, shares, junk) in ("EINVAL", "ERANGE")
        assert read(shares) == b"3\n" and read_elsewhere(shares) == b"3\n"
        assert os.stat(shares).st_size == 2


def test_a_write_moves_the_files_that_follow_it(cgmount, group):
    # devices: an exception taken from a parent goes from its children too
    # (propagate_exception), though nobody wrote to them.
    parent = group("devices", "p")
    write(os.path.join(parent, "devices.deny"), b"a")
    write(os.path.join(parent, "devices.allow"), b"c 1:3 r")
    listing = os.path.join(group("devices", "p", "c"), "devices.list")
    assert cached(listing) == b"c 1:3 r\n"
    write(os.path.join(parent, "devices.deny"), b"c 1:3 r")
    assert read(listing) == b"" and os.stat(listing).st_size == 0
    # memory: a child's memory.stat shows the smallest limit up the tree.
    mparent = group("memory", "p")
    mchild = group("memory", "p", "c")
    stat_path = os.path.join(mchild, "memory.stat")
    assert b"hierarchical_memory_limit 9223372036854771712\n" in cached(stat_path)
    write(os.path.join(mparent, "memory.limit_in_bytes"), b"64M")
    assert b"hierarchical_memory_limit 67108864\n" in read(stat_path)


def test_mkdir_and_rmdir_are_seen_at_once(cgmount, group):
    base = cgmount.p("cpu,cpuacct")
    d = os.path.join(base, "m")
    assert errno_of(os.stat, d) == "ENOENT"  # a negative lookup first
    os.mkdir(d)
    try:
        assert "m" in os.listdir(base) and os.path.isdir(d)
        shares = os.path.join(d, "cpu.shares")
        write(shares, b"3")
        assert cached(shares) == b"3\n"
    finally:
        os.rmdir(d)
    assert "m" not in os.listdir(base)
    assert errno_of(os.stat, d) == errno_of(os.stat, shares) == errno_of(read, shares) == "ENOENT"
    os.mkdir(d)  # the same name again: a new cgroup, nothing of the old one
    try:
        assert read(shares) == b"1024\n" and os.stat(shares).st_size == 5
    finally:
        os.rmdir(d)


def test_processes_that_exit_or_fork_show_on_the_next_read(cgmount, group, child):
    g = group("pids", "p")
    procs, tasks = os.path.join(g, "cgroup.procs"), os.path.join(g, "tasks")
    write(procs, str(child.pid).encode())
    assert cached(procs) == f"{child.pid}\n".encode()
    for _ in range(10):
        grandchild = child.fork()  # placed by the fork watcher, as cgroup_post_fork does
        assert read(procs).split() == sorted([str(child.pid).encode(), str(grandchild).encode()], key=int)
        assert str(grandchild).encode() in read(tasks).split()
        assert int(read(os.path.join(g, "pids.current"))) == 2
        child.reap(grandchild)
        assert read(procs) == f"{child.pid}\n".encode()
        assert int(read(os.path.join(g, "pids.current"))) == 1
    child.stop()
    assert read(procs) == b"" and read(tasks) == b""
    assert int(read(os.path.join(g, "pids.current"))) == 0


def test_live_statistics_change_between_two_reads(cgmount, group, child):
    cpu = group("cpu,cpuacct", "s")
    mem = group("memory", "s")
    write(os.path.join(cpu, "cgroup.procs"), str(child.pid).encode())
    write(os.path.join(mem, "cgroup.procs"), str(child.pid).encode())
    usage = os.path.join(cpu, "cpuacct.usage")
    before = int(read(usage))
    # 0.3 s of the child's own CPU time: longer than the statistics' window
    # (150 ms), so the figures are read anew.
    child.say("spin 0.3")
    child.expect("spun")
    assert int(read(usage)) >= before + 250_000_000
    mem_usage = os.path.join(mem, "memory.usage_in_bytes")
    stat_path = os.path.join(mem, "memory.stat")
    before_mem, before_stat = int(read(mem_usage)), read(stat_path)
    child.say("alloc 64", "spin 0.2")
    child.expect("allocated")
    child.expect("spun")
    assert int(read(mem_usage)) >= before_mem + 60 * MB
    after_stat = read(stat_path)
    assert after_stat != before_stat
    rss = dict(line.split() for line in after_stat.decode().splitlines())["rss"]
    assert int(rss) >= 60 * MB


@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_a_restarted_server_shows_the_state_it_restored(mount_fakefs, backend):
    """What a restarted server restores may differ from what the kernel was
    told (here: a journaled write the dead server never showed); fuse-raw
    keeps the connection, and with it the kernel's cache, across the
    restart: the new server makes the kernel forget it."""
    m = mount_fakefs(backend=backend)
    os.mkdir(m.p("cpu,cpuacct", "x"))
    shares = m.p("cpu,cpuacct", "x", "cpu.shares")
    try:
        write(shares, b"3")
        assert cached(shares) == b"3\n"
        rec = registry.load(m.path)
        os.kill(rec.server_pid, signal.SIGSTOP)
        try:
            journal = statefile.journal_path_for(statefile.path_for(m.path))
            with open(journal) as f:
                seqs = [json.loads(line)["seq"] for line in f if line.strip()]
            try:
                with open(statefile.path_for(m.path)) as f:
                    seqs.append(json.load(f).get("journal_seq", 0))
            except FileNotFoundError:
                seqs.append(0)  # no snapshot yet: the journal has it all
            with open(journal, "a") as f:
                f.write(json.dumps({"seq": max(seqs) + 1, "op": "write", "h": "cpu,cpuacct", "path": "/x",
                                    "file": "cpu.shares", "data": "7", "ctx": [0, 0, 0]}) + "\n")
        finally:
            os.kill(rec.server_pid, signal.SIGKILL)
            os.kill(rec.server_pid, signal.SIGCONT)

        def serving() -> bool:
            new = registry.load(m.path)
            if new is None or new.server_pid == rec.server_pid:
                return False
            try:
                os.listdir(m.p("cpu,cpuacct"))
            except OSError:
                return False
            return True

        assert wait_for(serving, timeout=20), "the server was not restarted"
        assert read(shares) == b"7\n" and os.stat(shares).st_size == 2
    finally:
        try:
            os.rmdir(m.p("cpu,cpuacct", "x"))
        except OSError:
            pass  # the mount is gone: the fixture reports that
