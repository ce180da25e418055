"""The tmpfs backend under the ways consumers really write and remove:
directories removed while the watcher fills them, and every shape of write
(shorter over longer, with and without O_TRUNC, in pieces, refused by the
model). A file always ends up reading as the kernel's would: the model's
value, whole.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.support import fakefs, require, wait_for
from tests.test_tmpfs_backend import tmpfs_mount  # noqa: F401  (fixture)


def _daemon(path: str) -> dict:
    rows = json.loads(fakefs("status", "--json").stdout)["mounts"]
    return next(r for r in rows if r["target"] == path)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_directories_removed_while_the_watcher_fills_them(tmpfs_mount):
    path = tmpfs_mount("--hierarchy", "cpu,cpuacct")
    before = _daemon(path)
    churn = f"for i in $(seq 300); do mkdir {path}/cpu/x; rm -rf {path}/cpu/x; done 2>/dev/null; true"
    for _ in range(2):
        subprocess.run(["sh", "-c", churn], check=True, timeout=120)
    after = _daemon(path)
    assert after["state"] == "running" and after["pid"] == before["pid"], "the watcher died and was restarted"
    with open(after["log"], errors="replace") as f:
        log = f.read()
    assert "Traceback" not in log and "answered EIO" not in log, log[-2000:]
    # The model followed: x is gone, and a new x is a fresh cgroup again.
    assert wait_for(lambda: not os.path.exists(f"{path}/cpu/x"), 5)
    os.mkdir(f"{path}/cpu/x")
    assert wait_for(lambda: os.path.exists(f"{path}/cpu/x/cpu.shares"), 5)
    assert _read(f"{path}/cpu/x/cpu.shares") == b"1024\n"
    shutil.rmtree(f"{path}/cpu/x")


def _write(path: str, chunks: list[bytes], trunc: bool) -> None:
    fd = os.open(path, os.O_WRONLY | (os.O_TRUNC if trunc else 0))
    try:
        for chunk in chunks:
            os.write(fd, chunk)
    finally:
        os.close(fd)


def test_every_write_shape_reads_back_as_the_models_value(tmpfs_mount):
    path = tmpfs_mount("--hierarchy", "cpu,cpuacct", "--hierarchy", "memory")
    os.mkdir(f"{path}/cpu/w")
    os.mkdir(f"{path}/memory/w")
    shares = f"{path}/cpu/w/cpu.shares"
    limit = f"{path}/memory/w/memory.limit_in_bytes"
    assert wait_for(lambda: os.path.exists(shares) and os.path.exists(limit), 5)

    def settles(file: str, want: bytes) -> None:
        assert wait_for(lambda: _read(file) == want, 5), f"{file}: {_read(file)!r}, want {want!r}"

    # Longer over shorter, without O_TRUNC (covers the old text whole).
    _write(shares, [b"204800"], trunc=False)
    settles(shares, b"204800\n")
    # Shorter over longer, with O_TRUNC.
    _write(shares, [b"512\n"], trunc=True)
    settles(shares, b"512\n")
    # In pieces (one open, several writes, O_TRUNC): seen as one value at close.
    _write(shares, [b"20", b"48"], trunc=True)
    settles(shares, b"2048\n")
    # Refused by the model: the file reads as the kernel's would, the old
    # value, not the refused text ...
    _write(shares, [b"1000000wmx" + b"A" * 40], trunc=True)
    settles(shares, b"2048\n")
    # ... so that a later write without O_TRUNC is laid over the value, not
    # over the refused text (it used to read back as "1000000wmxAAAA...").
    _write(shares, [b"1000000"], trunc=False)
    settles(shares, b"262144\n")  # cpu.shares' maximum, as the kernel clamps
    # A value the model renders differently replaces the file whole.
    _write(limit, [b"1G"], trunc=True)
    settles(limit, b"1073741824\n")
    _write(limit, [b"9223372036854771712"], trunc=False)
    settles(limit, b"9223372036854771712\n")
    shutil.rmtree(f"{path}/cpu/w")
    shutil.rmtree(f"{path}/memory/w")


@pytest.mark.parametrize("run", range(20))
def test_run_with_a_memory_limit_on_tmpfs_is_reliable(run):
    """`fakefs run --backend tmpfs --limit memory=256M`: the command reads
    its own limit (20 runs in a row, each a fresh mount and daemon)."""
    require(os.geteuid() == 0, "needs root (mounts)")
    probe = ("import os\n"
             "line = next(l for l in open('/proc/self/cgroup') if ':memory:' in l)\n"
             "print(open('/sys/fs/cgroup/memory' + line.strip().split(':', 2)[2]"
             " + '/memory.limit_in_bytes').read(), end='')\n")
    res = fakefs("run", "--backend", "tmpfs", "--limit", "memory=256M", "--", "python3", "-c", probe, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "268435456\n", (res.stdout, res.stderr)
