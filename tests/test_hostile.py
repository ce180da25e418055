"""Hostile input through a real mount: random bytes, huge writes, partial
writes, writes to read-only files and opens with every flag combination,
to every control file. Only the kernel's errnos may come back, the daemon
must keep serving (a read after each burst), and values written before the
bursts must still read back afterwards.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import stat

import pytest

pytestmark = pytest.mark.fuse

# What cgroupfs answers a write with: parse errors and range checks, size
# (E2BIG), rules between cgroups (EBUSY/EACCES/ENOSPC/EPERM), pids (ESRCH),
# event_control's fds (EBADF), blkio/rdma devices (ENODEV), charges (ENOMEM).
WRITE_ERRNOS = {errno.EINVAL, errno.E2BIG, errno.ERANGE, errno.EOVERFLOW, errno.EBUSY, errno.EACCES,
                errno.EPERM, errno.ENOSPC, errno.ESRCH, errno.EBADF, errno.ENODEV, errno.ENOMEM}
# Reads fail only for files without a read handler (and memory.pressure_level).
READ_ERRNOS = {errno.EINVAL}
# open(2) of an existing control file as root: flag conflicts the VFS itself
# refuses (O_EXCL|O_CREAT on an existing name, O_DIRECTORY on a file, O_TMPFILE
# on a file, O_DIRECT where the filesystem has no direct I/O), never anything else.
OPEN_ERRNOS = {errno.EEXIST, errno.ENOTDIR, errno.EINVAL, errno.EISDIR, errno.EOPNOTSUPP}

SENTINELS = {  # written in cgroup "keep" before any burst; must survive them all
    "cpu/keep/cpu.shares": ("777", "777\n"),
    "cpu/keep/cpu.cfs_quota_us": ("50000", "50000\n"),
    "memory/keep/memory.limit_in_bytes": ("1M", "1048576\n"),
    "pids/keep/pids.max": ("42", "42\n"),
    "devices/keep/devices.deny": ("c 1:3 rwm", None),
    "freezer/keep/freezer.state": ("FROZEN", "FROZEN\n"),
    "cpuset/keep/cpuset.cpus": ("0", "0\n"),
    "cpuset/keep/cpuset.mems": ("0", "0\n"),
    "net_cls,net_prio/keep/net_cls.classid": ("1048577", "1048577\n"),
}


def _hierarchy_dirs(root: str) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False))


def _control_files(root: str) -> list[str]:
    """Every control file of every hierarchy's root and of its "hostile" child."""
    out = []
    for h in _hierarchy_dirs(root):
        for d in (os.path.join(root, h), os.path.join(root, h, "hostile")):
            out += [os.path.join(d, e.name) for e in os.scandir(d) if e.is_file(follow_symlinks=False)]
    return sorted(out)


def _errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    return 0


def _write_once(path: str, data: bytes, offset: int | None = None) -> int:
    fd = os.open(path, os.O_WRONLY)
    try:
        if offset is None:
            os.write(fd, data)
        else:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
    return 0


def _read_all(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@pytest.fixture
def hostile_mount(cgmount):
    for h in _hierarchy_dirs(cgmount.path):
        os.mkdir(cgmount.p(h, "hostile"))
        os.mkdir(cgmount.p(h, "keep"))
    for rel, (value, _) in SENTINELS.items():
        cgmount.write(rel, value)
    return cgmount


def _check_sentinels(m) -> None:
    for rel, (value, expected) in SENTINELS.items():
        if expected is not None:
            assert m.read(*rel.split("/")) == expected, rel
    assert m.read("devices", "keep", "devices.list") == "a *:* rwm\n" or \
        "c 1:3 rwm" in m.read("devices", "keep", "devices.list")


def _alive(m) -> None:
    """The daemon still answers: a read of a sentinel right after a burst."""
    assert m.read("cpu", "keep", "cpu.shares") == "777\n"


def test_random_and_huge_writes_to_every_file(hostile_mount):
    m = hostile_mount
    rng = random.Random(0x5EED)
    files = _control_files(m.path)
    assert len(files) > 200
    seen: dict[str, set[int]] = {}
    for path in files:
        payloads = [rng.randbytes(rng.randint(1, 64)) for _ in range(4)]
        payloads += [bytes(rng.choice(b"0123456789 -\n\0xkKmM*:abcrw") for _ in range(rng.randint(1, 24)))
                     for _ in range(4)]
        payloads += [b"\0", b"\n", b"\xff" * 4096, b"9" * 4097]
        if rng.random() < 0.1:
            payloads += [b"1" * (1 << 20), b"\0" * 70000]  # larger than FUSE's max write
        for data in payloads:
            e = _errno_of(_write_once, path, data)
            assert e == 0 or e in WRITE_ERRNOS, (path, data[:40], errno.errorcode.get(e, e))
            seen.setdefault(os.path.basename(path), set()).add(e)
        _alive(m)
    # Every write larger than a page is refused whole, as kernfs does.
    assert seen["cpu.shares"] >= {errno.E2BIG, errno.EINVAL}
    _check_sentinels(m)


def test_partial_and_offset_writes_are_separate_commands(hostile_mount):
    m = hostile_mount
    path = m.p("cpu", "hostile", "cpu.shares")
    fd = os.open(path, os.O_WRONLY)
    try:
        assert os.write(fd, b"10") == 2
        assert m.read("cpu", "hostile", "cpu.shares") == "10\n"
        assert os.write(fd, b"24") == 2  # not "1024": each write() is one command
        assert m.read("cpu", "hostile", "cpu.shares") == "24\n"
        assert os.pwrite(fd, b"300", 4096) == 3  # the offset is ignored, as on kernfs
        assert m.read("cpu", "hostile", "cpu.shares") == "300\n"
        # a torn value fails the parser (write_u64 does not strip blanks);
        # the previous value stays
        assert _errno_of(os.write, fd, b"4 ") == errno.EINVAL
        assert _errno_of(os.write, fd, b"x") == errno.EINVAL
    finally:
        os.close(fd)
    assert m.read("cpu", "hostile", "cpu.shares") == "300\n"
    # writev of several buffers is still one write() on the file
    fd = os.open(path, os.O_WRONLY)
    try:
        assert os.writev(fd, [b"5", b"12"]) == 3
    finally:
        os.close(fd)
    assert m.read("cpu", "hostile", "cpu.shares") == "512\n"
    _check_sentinels(m)


def test_read_only_and_write_only_files(hostile_mount):
    m = hostile_mount
    for path in _control_files(m.path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        e = _errno_of(_read_all, path)
        assert e == 0 or e in READ_ERRNOS, (path, errno.errorcode.get(e, e))
        if not mode & 0o222:
            # root may open it for writing (DAC override); the write is EINVAL
            assert _errno_of(_write_once, path, b"0") == errno.EINVAL, path
        if not mode & 0o444:
            assert e == errno.EINVAL, path
    _alive(m)
    _check_sentinels(m)


_FLAG_BITS = [os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_DIRECTORY, os.O_DIRECT, os.O_PATH,
              os.O_TMPFILE, os.O_NONBLOCK, os.O_NOFOLLOW, os.O_SYNC, os.O_NOATIME, os.O_NOCTTY, os.O_DSYNC,
              os.O_ASYNC, os.O_CLOEXEC]


def _try_open(path: str, flags: int) -> int:
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        return exc.errno
    try:
        if not flags & os.O_PATH and (flags & os.O_ACCMODE) != os.O_WRONLY:
            try:
                os.read(fd, 4096)
            except OSError as exc:
                assert exc.errno in READ_ERRNOS | {errno.EAGAIN}, (path, flags, exc)
    finally:
        os.close(fd)
    return 0


def test_opens_with_every_flag_combination(hostile_mount):
    m = hostile_mount
    rng = random.Random(7)
    subjects = [m.p("cpu", "hostile", "cpu.shares"), m.p("cpu", "cpu.stat"), m.p("devices", "hostile", "devices.allow"),
                m.p("memory", "hostile", "memory.force_empty"), m.p("cpu", "hostile", "cgroup.procs")]
    accmodes = [os.O_RDONLY, os.O_WRONLY, os.O_RDWR]
    # Every combination of the first 8 flags on representative files...
    combos = [sum(c) for n in range(9) for c in itertools.combinations(_FLAG_BITS[:8], n)]
    for path in subjects:
        for acc in accmodes:
            for extra in combos:
                e = _try_open(path, acc | extra)
                assert e in OPEN_ERRNOS | {0}, (path, hex(acc | extra), errno.errorcode.get(e, e))
        _alive(m)
    # ...and random combinations of all of them on every file.
    for path in _control_files(m.path):
        for _ in range(12):
            flags = rng.choice(accmodes) | sum(b for b in _FLAG_BITS if rng.random() < 0.3)
            e = _try_open(path, flags)
            assert e in OPEN_ERRNOS | {0}, (path, hex(flags), errno.errorcode.get(e, e))
    _alive(m)
    # O_TRUNC and O_CREAT on an existing control file change nothing
    assert m.read("cpu", "keep", "cpu.shares") == "777\n"
    _check_sentinels(m)


def test_directory_operations_with_bad_names(hostile_mount):
    m = hostile_mount
    base = m.p("cpu", "hostile")
    bad = {"..": errno.EEXIST, ".": errno.EEXIST, "a\nb": errno.EINVAL, "cpu.shares": errno.EEXIST}
    for name, want in bad.items():
        assert _errno_of(os.mkdir, os.path.join(base, name)) == want, name
    # kernfs has no per-name limit below FUSE's and NAME_MAX is not enforced
    long_name = os.path.join(base, "x" * 300)
    os.mkdir(long_name)
    os.rmdir(long_name)
    # the VFS never lets '/' or NUL reach the filesystem: they split or end the path
    assert _errno_of(os.mkdir, os.path.join(base, "nonexistent/child")) == errno.ENOENT
    with pytest.raises(ValueError):
        os.mkdir(os.path.join(base, "a\0b"))
    assert _errno_of(os.rmdir, os.path.join(base, "cpu.shares")) == errno.ENOTDIR
    assert _errno_of(os.unlink, os.path.join(base, "cpu.shares")) == errno.EPERM
    assert _errno_of(os.symlink, "/etc", os.path.join(base, "link")) == errno.EPERM
    assert _errno_of(os.mknod, os.path.join(base, "node"), stat.S_IFIFO | 0o600) == errno.EPERM
    assert _errno_of(os.link, os.path.join(base, "cpu.shares"), os.path.join(base, "hard")) == errno.EPERM
    assert _errno_of(os.rename, os.path.join(base, "cpu.shares"), os.path.join(base, "x")) == errno.ENOTDIR
    _alive(m)
    _check_sentinels(m)


def test_handle_of_a_removed_cgroup(hostile_mount):
    m = hostile_mount
    d = m.p("cpu", "hostile", "gone")
    os.mkdir(d)
    fd = os.open(os.path.join(d, "cpu.shares"), os.O_WRONLY)
    try:
        os.rmdir(d)
        # kernfs: the node is no longer active (measured on Linux 6.18)
        assert _errno_of(os.write, fd, b"100") == errno.ENODEV
    finally:
        os.close(fd)
    assert _errno_of(os.open, os.path.join(d, "cpu.shares"), os.O_WRONLY) == errno.ENOENT
    _alive(m)
