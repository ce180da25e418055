"""Cgroup names are bytes: names that are not UTF-8 work as on the real
kernel (measured on Linux 6.18: mkdir, listdir, open, rename and rmdir of
``\\xff``, a cut UTF-8 sequence, an encoded surrogate all succeed; only a
newline is refused, EINVAL), in the model, in its saved state, and through
every backend. And no input may kill a server: a bug in answering one
request costs that request (EIO and one log line), never the mount.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile

import pytest

from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.model.state import dump, restore
from fakefs.model.tree import CgroupModel
from tests.support import FUSE_BACKENDS, fakefs, is_mounted, require, wait_for

# Names the kernel accepts although they are not UTF-8 (or not printable).
ODD_NAMES = [b"\xff", b"a\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\x01\x02", b"\x7f", b"a\tb", b"\xe2\x82\xac"]


def test_model_takes_names_that_are_not_utf8_and_saves_them():
    model = CgroupModel(hierarchies=["cpu,cpuacct", "name=systemd"])
    h = model.hierarchy("cpu")
    names = [os.fsdecode(n) for n in ODD_NAMES]
    for name in names:
        cg = h.mkdir(h.root, name)
        h.write_file(cg, "cpu.shares", b"512")
    h.rename(h.root.children[names[0]], h.root, os.fsdecode(b"\xfe\xfe"))
    with pytest.raises(KernelError) as exc:
        h.mkdir(h.root, os.fsdecode(b"x\n\xff"))
    assert exc.value.errno == errno.EINVAL
    # The length limit counts bytes, as the kernel does (PATH_MAX).
    with pytest.raises(KernelError) as exc:
        h.mkdir(h.root, os.fsdecode(b"\xff" * 4090))
    assert exc.value.errno == errno.ENAMETOOLONG
    text = json.dumps(dump(model))
    again = CgroupModel(hierarchies=["cpu,cpuacct", "name=systemd"])
    restore(again, json.loads(text))
    restored = again.hierarchy("cpu").root.children
    assert sorted(restored) == sorted([os.fsdecode(b"\xfe\xfe"), *names[1:]])
    assert all(os.fsencode(n) for n in restored)  # every name is bytes again
    assert again.hierarchy("cpu").read_file(restored[names[1]], "cpu.shares") == "512\n"


def _play_names(hier_dir: str) -> None:
    """mkdir, list, open, rename, rmdir of each odd name under ``hier_dir``
    (bytes paths, as a C program would pass them)."""
    base = os.fsencode(hier_dir)
    for name in ODD_NAMES:
        path = base + b"/" + name
        os.mkdir(path)
        assert name in os.listdir(base)
        with open(path + b"/cgroup.procs", "rb") as f:
            assert f.read() == b""
        os.rename(path, path + b"-r")
        assert os.path.isdir(path + b"-r") and not os.path.exists(path)
        os.rmdir(path + b"-r")
        assert name not in os.listdir(base)
    with pytest.raises(OSError) as exc:
        os.mkdir(base + b"/x\n\xff")
    assert exc.value.errno == errno.EINVAL


@pytest.mark.fuse
@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_fuse_backends_serve_names_that_are_not_utf8(mount_fakefs, backend):
    m = mount_fakefs("--hierarchy", "cpu,cpuacct", "--hierarchy", "name=systemd", backend=backend)
    _play_names(m.p("systemd"))
    # The same server is still there (a crash would have been restarted
    # with a fresh tree: "keep" would be gone).
    os.mkdir(m.p("cpu", os.fsdecode(b"keep\xff")))
    _play_names(m.p("cpu"))
    assert os.fsdecode(b"keep\xff") in os.listdir(m.p("cpu"))
    os.rmdir(m.p("cpu", os.fsdecode(b"keep\xff")))


def test_tmpfs_backend_serves_names_that_are_not_utf8():
    require(os.geteuid() == 0, "needs root (mounts)")
    scratch = tempfile.mkdtemp(prefix="fakefs-names-")
    target = os.path.join(scratch, "t")
    os.mkdir(target)
    res = fakefs("mount", target, "--backend", "tmpfs", "--hierarchy", "pids")
    assert res.returncode == 0, res.stderr
    try:
        base = os.fsencode(os.path.join(target, "pids"))
        for name in ODD_NAMES:
            path = base + b"/" + name
            os.mkdir(path)
            assert wait_for(lambda: os.path.exists(path + b"/pids.max"), 5), name
            with open(path + b"/pids.max", "wb") as f:
                f.write(b"7")
            assert wait_for(lambda: open(path + b"/pids.max", "rb").read() == b"7\n", 5), name
            shutil.rmtree(path)
        # A newline is refused by the model: the directory is removed again.
        os.mkdir(base + b"/x\n\xff")
        assert wait_for(lambda: not os.path.exists(base + b"/x\n\xff"), 5)
        # The watcher still serves.
        os.mkdir(base + b"/after")
        assert wait_for(lambda: os.path.exists(base + b"/after/pids.max"), 5)
        shutil.rmtree(base + b"/after")
        status = json.loads(fakefs("status", "--json").stdout)["mounts"]
        assert next(r for r in status if r["target"] == target)["state"] == "running"
    finally:
        assert fakefs("umount", target).returncode == 0
        assert wait_for(lambda: not is_mounted(target))
        shutil.rmtree(scratch)


# -- no input kills a server: the request boundary of each transport ------------------------

def _broken(*args, **kwargs):
    raise ValueError("a bug\nover two lines")


def _one_eio_line(lines: list[str], op: str) -> None:
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{op} failed, answered EIO: ValueError: a bug\\nover two lines at test_names.py:")


async def test_pyfuse3_adapter_answers_eio_for_a_bug_and_goes_on(capsys):
    import pyfuse3

    from fakefs.backends.fuse import make_operations
    from fakefs.vfs.cgroupfs import CgroupFsRoot
    from fakefs.vfs.ops import ROOT_INODE, FsOps

    ops = make_operations(FsOps(CgroupFsRoot(CgroupModel(hierarchies=["pids"]))))
    real_getattr = ops.ops.getattr
    ops.ops.getattr = _broken
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await ops.getattr(ROOT_INODE, None)
    assert exc.value.errno == errno.EIO
    _one_eio_line(capsys.readouterr().err.splitlines(), "getattr")
    ops.ops.getattr = real_getattr
    ops.ops.mkdir = _broken  # a mutating operation
    with pytest.raises(pyfuse3.FUSEError) as exc:
        await ops.mkdir(ROOT_INODE, b"x", 0o755, None)
    assert exc.value.errno == errno.EIO
    _one_eio_line(capsys.readouterr().err.splitlines(), "mkdir")
    # FORGET has no reply: pyfuse3 would end the mount on any exception there.
    ops.ops.forget = _broken
    await ops.forget([(ROOT_INODE + 1, 1)])
    _one_eio_line(capsys.readouterr().err.splitlines(), "forget")
    assert (await ops.getattr(ROOT_INODE, None)).st_ino == ROOT_INODE


def test_raw_session_answers_eio_for_a_bug_in_one_line():
    from fakefs.backends.rawfuse import protocol as P
    from fakefs.backends.rawfuse.server import FuseSession
    from fakefs.vfs.cgroupfs import CgroupFsRoot
    from fakefs.vfs.ops import FsOps
    from tests.test_rawfuse_protocol import GVISOR_INIT, err, ok, request

    lines: list[str] = []
    session = FuseSession(FsOps(CgroupFsRoot(CgroupModel(hierarchies=["pids"]))), log=lines.append)
    ok(session, GVISOR_INIT)
    session.ops.getattr = _broken
    assert err(session, request(P.Opcode.GETATTR, 1, P.GETATTR_IN.pack())) == "EIO"
    _one_eio_line(lines, "GETATTR")


def test_tmpfs_watcher_survives_a_bug_in_one_event(tmp_path, capsys):
    from fakefs.backends.tmpfs import _Watcher
    from fakefs.backends.tmpfs import inotify as I
    from fakefs.backends.tmpfs.mirror import Mirror
    from fakefs.vfs.cgroupfs import CgroupFsRoot

    class NoInotify:
        def add_watch(self, path, mask):
            return len(path)

    (tmp_path / "tree").mkdir()
    (tmp_path / "work").mkdir()
    tree_fd = os.open(tmp_path / "tree", os.O_RDONLY | os.O_DIRECTORY)
    work_fd = os.open(tmp_path / "work", os.O_RDONLY | os.O_DIRECTORY)
    try:
        model = CgroupModel(hierarchies=["pids"])
        mirror = Mirror(CgroupFsRoot(model), tree_fd, work_fd, lambda msg: None)
        mirror.render_all()
        watcher = _Watcher(NoInotify(), mirror, str(tmp_path / "tree"))
        wd = watcher.by_rel["pids"]
        os.mkdir(tmp_path / "tree" / "pids" / "a")
        os.mkdir(tmp_path / "tree" / "pids" / "b")
        real, failed = mirror.dir_created, []

        def fails_once(parent, name):
            if name == "a" and not failed:
                failed.append(name)
                _broken()
            real(parent, name)

        mirror.dir_created = fails_once
        watcher.handle([I.Event(wd, I.IN_CREATE | I.IN_ISDIR, 0, "a"), I.Event(wd, I.IN_CREATE | I.IN_ISDIR, 0, "b")])
        out = [line for line in capsys.readouterr().out.splitlines() if " failed, " in line]
        assert out == [f"fakefs-tmpfs: event {I.IN_CREATE | I.IN_ISDIR:#x} on 'pids'/'a' failed, comparing that "
                       f"directory with the model: ValueError: a bug\\nover two lines at test_names.py:"
                       f"{_broken.__code__.co_firstlineno + 1} in _broken"]
        # The next event was handled; and the resync after the failure
        # adopted what the failed one left behind.
        assert (tmp_path / "tree" / "pids" / "b" / "pids.max").read_text() == "max\n"
        assert sorted(model.hierarchy("pids").root.children) == ["a", "b"]
    finally:
        os.close(tree_fd)
        os.close(work_fd)


def test_merged_views_serve_real_names_that_are_not_utf8(tmp_path):
    """A real directory under an overlay view may hold any bytes as names."""
    from fakefs.vfs.mergedfs import DirFd, MergedDir, RealDir, SyntheticFile
    from fakefs.vfs.ops import ROOT_INODE, FsOps

    real = os.fsencode(tmp_path)
    os.mkdir(real + b"/d\xff")
    with open(real + b"/d\xff/v\xfe", "wb") as f:
        f.write(b"42\n")
    with DirFd.open(str(tmp_path)) as owner:
        view = MergedDir(RealDir(owner), {"added": SyntheticFile(("syn", "added"), 0o444, lambda: b"1\n")})
        fs = FsOps(view)
        names = [n for n, _, _ in fs.readdir(ROOT_INODE)]
        assert os.fsdecode(b"d\xff") in names and "added" in names
        d, _ = fs.lookup(ROOT_INODE, os.fsdecode(b"d\xff"))
        assert [n for n, _, _ in fs.readdir(d)][2:] == [os.fsdecode(b"v\xfe")]
        v, _ = fs.lookup(d, os.fsdecode(b"v\xfe"))
        assert fs.read(fs.open(v, os.O_RDONLY, WriteContext()), 0, 100) == b"42\n"
