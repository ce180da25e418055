"""The fuse-raw backend mounted on this host's kernel: what is specific to
the transport (the shared behaviour suite runs against it through the
parametrized ``cgmount`` fixture in test_fuse_mount.py)."""

from __future__ import annotations

import os
import signal
import stat

import pytest

from fakefs.runtime import registry
from tests.support import is_mounted, wait_for

pytestmark = pytest.mark.fuse


def mountinfo_line(path: str) -> str:
    with open("/proc/self/mountinfo") as f:
        return next(line for line in f if line.split()[4] == path)


def test_mount_is_recorded_and_named_like_the_pyfuse3_one(mount_fakefs):
    m = mount_fakefs(backend="fuse-raw")
    record = registry.load(m.path)
    assert record is not None and record.backend == "fuse-raw" and record.alive
    line = mountinfo_line(m.path)
    assert " - fuse.fakefs fakefs " in line
    assert "allow_other" in line and "default_permissions" in line and "nosuid" in line


def test_auto_keeps_pyfuse3_where_the_kernel_accepts_it(mount_fakefs):
    m = mount_fakefs()  # --backend auto
    assert registry.load(m.path).backend == "fuse"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_unmount_and_remove_the_record(mount_fakefs, sig):
    m = mount_fakefs(backend="fuse-raw")
    record = registry.load(m.path)
    os.kill(record.pid, sig)
    assert wait_for(lambda: not is_mounted(m.path)), "still mounted after the signal"
    assert wait_for(lambda: registry.load(m.path) is None), "registry record left behind"
    assert wait_for(lambda: not record.alive)


def test_large_directories_list_completely_across_readdir_batches(mount_fakefs):
    m = mount_fakefs(backend="fuse-raw")
    base = m.p("cpu", "wide")
    os.mkdir(base)
    # 128 bytes per entry: well past one 32 KiB READDIR buffer
    names = [f"child-{i:04d}-{'n' * 90}" for i in range(400)]
    try:
        for n in names:
            os.mkdir(os.path.join(base, n))
        listed = os.listdir(base)
        assert len(listed) == len(set(listed))
        assert set(names) <= set(listed)
        kinds = {e.name: e.is_dir(follow_symlinks=False) for e in os.scandir(base)}
        assert kinds[names[-1]] and not kinds["cpu.shares"]
    finally:
        for n in names:
            if os.path.isdir(os.path.join(base, n)):
                os.rmdir(os.path.join(base, n))
        os.rmdir(base)


def test_an_open_file_follows_writes_through_the_page_cache(mount_fakefs):
    """On this kernel fuse-raw leaves OPEN out and the kernel keeps the
    pages: an open file's size (lseek SEEK_END, fstat) and bytes are the
    value now, at any offset, right after a write through another fd. (Where
    the kernel cannot cache, as in gVisor, each open reads a snapshot of its
    own: tests/test_rawfuse_protocol.py.)"""
    m = mount_fakefs(backend="fuse-raw")
    os.mkdir(m.p("cpu", "seek"))
    path = m.p("cpu", "seek", "cpu.cfs_period_us")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.read(fd, 2) == b"10"
        m.write("cpu/seek/cpu.cfs_period_us", b"2000")
        assert os.lseek(fd, 0, os.SEEK_END) == len(b"2000\n")
        assert os.fstat(fd).st_size == os.stat(path).st_size == len(b"2000\n")
        assert os.pread(fd, 100, 2) == b"00\n"
        assert os.pread(fd, 100, 0) == b"2000\n"
    finally:
        os.close(fd)
        os.rmdir(m.p("cpu", "seek"))


def test_a_file_is_not_a_directory_and_modes_come_through(mount_fakefs):
    m = mount_fakefs(backend="fuse-raw")
    assert stat.S_ISLNK(os.lstat(m.p("cpuacct")).st_mode)
    with pytest.raises(NotADirectoryError):
        os.listdir(m.p("cpu", "cpu.shares"))
    assert stat.S_IMODE(os.stat(m.p("devices", "devices.allow")).st_mode) == 0o200
