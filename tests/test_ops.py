"""The shared filesystem operations over a model with a fixed process table
(no mount): inodes, snapshots, one-command writes, namespace errnos."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from fakefs.vfs.cgroupfs import CgroupFsRoot
from fakefs.vfs.ops import ROOT_INODE, FsOps
from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel

ROOT = WriteContext(tid=1, uid=0)


@pytest.fixture
def fs():
    procs = StaticProcessTable()
    procs.spawn(100, threads=2)
    model = CgroupModel(HostFacts(online_cpus=frozenset({0, 1}), nr_cpu_ids=2), procs,
                        ["cpu,cpuacct", "pids", "name=systemd"])
    return FsOps(CgroupFsRoot(model))


def errno_of(fn, *a):
    with pytest.raises(KernelError) as exc:
        fn(*a)
    return errno.errorcode[exc.value.errno]


def path_inode(fs: FsOps, path: str) -> int:
    ino = ROOT_INODE
    for part in path.strip("/").split("/"):
        ino, a = fs.lookup(ino, part)
        if stat.S_ISLNK(a.mode):
            ino, _ = fs.lookup(ROOT_INODE, fs.readlink(ino))
    return ino


def test_root_lists_hierarchies_and_aliases(fs):
    names = {n: stat.S_IFMT(a.mode) for n, _, a in fs.readdir(ROOT_INODE)}
    assert names == {".": stat.S_IFDIR, "..": stat.S_IFDIR, "cpu,cpuacct": stat.S_IFDIR, "cpu": stat.S_IFLNK,
                     "cpuacct": stat.S_IFLNK, "pids": stat.S_IFDIR, "systemd": stat.S_IFDIR}
    # "." and ".." lead the listing; ".." of the root is the root.
    assert [(n, i) for n, i, _ in fs.readdir(ROOT_INODE)[:2]] == [(".", ROOT_INODE), ("..", ROOT_INODE)]


def test_inodes_are_stable(fs):
    a = path_inode(fs, "cpu/cpu.shares")
    b = path_inode(fs, "cpu,cpuacct/cpu.shares")
    assert a == b
    assert path_inode(fs, "pids") != path_inode(fs, "systemd")


def test_snapshot_per_open(fs):
    d, _ = fs.mkdir(path_inode(fs, "cpu"), "g", ROOT)
    ino, _ = fs.lookup(d, "cpu.shares")
    fh = fs.open(ino, os.O_RDONLY, ROOT)
    assert fs.read(fh, 0, 2) == b"10"
    wfh = fs.open(ino, os.O_WRONLY, ROOT)
    assert fs.write(wfh, 0, b"77", ROOT) == 2
    assert fs.read(fh, 2, 100) == b"24\n"  # still the open-time snapshot
    fs.release(fh)
    fh2 = fs.open(ino, os.O_RDONLY, ROOT)
    assert fs.read(fh2, 0, 100) == b"77\n"
    assert fs.getattr(ino).size == 3


def test_write_only_handles_cannot_read_and_vice_versa(fs):
    ino = path_inode(fs, "cpu/cpu.shares")
    wfh = fs.open(ino, os.O_WRONLY, ROOT)
    assert errno_of(fs.read, wfh, 0, 10) == "EBADF"
    rfh = fs.open(ino, os.O_RDONLY, ROOT)
    assert errno_of(fs.write, rfh, 0, b"5", ROOT) == "EBADF"


def test_read_of_file_without_read_handler_is_einval_at_read_time(fs):
    # cpu.stat has no write handler: open for writing works (root), write EINVAL
    d, _ = fs.mkdir(path_inode(fs, "cpu"), "g", ROOT)
    ino, _ = fs.lookup(d, "cpu.stat")
    fh = fs.open(ino, os.O_WRONLY, ROOT)
    assert errno_of(fs.write, fh, 0, b"1", ROOT) == "EINVAL"


def test_namespace_errnos(fs):
    cpu = path_inode(fs, "cpu")
    assert errno_of(fs.create, cpu, "x", ROOT) == "EACCES"
    assert errno_of(fs.create, cpu, "cpu.shares", ROOT) == "EEXIST"
    assert errno_of(fs.unlink, cpu, "cpu.shares", ROOT) == "EPERM"
    assert errno_of(fs.rmdir, cpu, "cpu.shares", ROOT) == "ENOTDIR"
    assert errno_of(fs.rmdir, cpu, "nope", ROOT) == "ENOENT"
    assert errno_of(fs.mkdir, ROOT_INODE, "newhier", ROOT) == "EPERM"
    assert errno_of(fs.lookup, cpu, "nope") == "ENOENT"


def test_removed_cgroup_inodes_go_stale(fs):
    cpu = path_inode(fs, "cpu")
    d, _ = fs.mkdir(cpu, "gone", ROOT)
    f, _ = fs.lookup(d, "cpu.shares")
    fs.rmdir(cpu, "gone", ROOT)
    assert errno_of(fs.getattr, d) == "ENOENT"
    assert errno_of(fs.getattr, f) == "ENOENT"
    fs.forget(f)
    assert errno_of(fs.node, f) == "ENOENT"
    d2, _ = fs.mkdir(cpu, "gone", ROOT)
    assert d2 != d  # a new cgroup of the same name is a new object


def test_rename_within_parent_only(fs):
    cpu = path_inode(fs, "cpu")
    a, _ = fs.mkdir(cpu, "a", ROOT)
    fs.mkdir(cpu, "b", ROOT)
    fs.rename(cpu, "b", cpu, "c", ROOT)
    assert {n for n, _, _ in fs.readdir(cpu)} >= {"a", "c"}
    assert errno_of(fs.rename, cpu, "c", a, "c", ROOT) == "EIO"
    assert errno_of(fs.rename, cpu, "c", cpu, "a", ROOT) == "EEXIST"
    assert errno_of(fs.rename, cpu, "cpu.shares", cpu, "x", ROOT) == "ENOTDIR"
    assert errno_of(fs.rename, cpu, "c", path_inode(fs, "pids"), "c", ROOT) == "EXDEV"


def test_setattr_truncate_and_chown(fs):
    ino = path_inode(fs, "cpu/cgroup.procs")
    a = fs.setattr(ino, size=0)
    assert a.size > 0  # truncation is accepted and ignored, as on kernfs
    a = fs.setattr(ino, uid=1000, gid=1000, mode=0o664)
    assert (a.uid, a.gid, stat.S_IMODE(a.mode)) == (1000, 1000, 0o664)


def test_membership_through_files(fs):
    pids = path_inode(fs, "pids")
    d, _ = fs.mkdir(pids, "j", ROOT)
    procs, _ = fs.lookup(d, "cgroup.procs")
    fh = fs.open(procs, os.O_WRONLY, ROOT)
    fs.write(fh, 0, b"100\n", ROOT)
    rfh = fs.open(procs, os.O_RDONLY, ROOT)
    assert fs.read(rfh, 0, 100) == b"100\n"
    tasks, _ = fs.lookup(d, "tasks")
    assert fs.read(fs.open(tasks, os.O_RDONLY, ROOT), 0, 100) == b"100\n100001\n"
    assert errno_of(fs.rmdir, pids, "j", ROOT) == "EBUSY"


def test_xattrs_follow_kernfs(fs):
    d, _ = fs.mkdir(path_inode(fs, "cpu"), "x", ROOT)
    nobody = WriteContext(tid=1, uid=65534, gid=65534)
    assert errno_of(fs.getxattr, d, "user.a") == "ENODATA"
    assert errno_of(fs.getxattr, d, "foo.a") == "ENOTSUP"  # = EOPNOTSUPP on Linux
    assert errno_of(fs.setxattr, d, "user.", b"", 0, ROOT) == "EINVAL"
    fs.setxattr(d, "user.a", b"1", 0, ROOT)
    fs.setxattr(d, "trusted.t", b"\xff", os.XATTR_CREATE, ROOT)
    assert errno_of(fs.setxattr, d, "user.a", b"2", os.XATTR_CREATE, ROOT) == "EEXIST"
    assert errno_of(fs.setxattr, d, "user.b", b"2", os.XATTR_REPLACE, ROOT) == "ENODATA"
    assert fs.getxattr(d, "trusted.t") == b"\xff"
    assert fs.listxattr(d, ROOT) == ["trusted.t", "user.a"]
    assert fs.listxattr(d, nobody) == ["user.a"]  # trusted.* only for CAP_SYS_ADMIN
    fs.removexattr(d, "user.a", ROOT)
    assert errno_of(fs.removexattr, d, "user.a", ROOT) == "ENODATA"
    # kernfs' user.* limits: 128 attributes, 128 KiB of values, counted before the name is looked at
    for i in range(128):
        fs.setxattr(d, f"user.n{i}", b"", 0, ROOT)
    assert errno_of(fs.setxattr, d, "user.n0", b"", 0, ROOT) == "ENOSPC"
    fs.setxattr(d, "security.s", b"x" * 65536, 0, ROOT)  # other namespaces have no such limit
    # Nodes of a filesystem without xattrs (none here but symlinks) list none.
    assert fs.listxattr(fs.lookup(ROOT_INODE, "cpu")[0], ROOT) == []


def test_utime_sets_times_and_setattr_changes_ctime(fs):
    ino = path_inode(fs, "cpu/cpu.shares")
    a = fs.setattr(ino, atime_ns=1_000_000_001, mtime_ns=2_000_000_002)
    assert a.times_ns[:2] == (1_000_000_001, 2_000_000_002) and a.times_ns[2] > 2_000_000_002
    a = fs.setattr(ino, mode=0o600)
    assert a.times_ns[:2] == (1_000_000_001, 2_000_000_002)
    assert fs.getattr(path_inode(fs, "cpu/cpu.cfs_quota_us")).times_ns[1] != 2_000_000_002  # per file


def test_readdir_gives_dot_and_dotdot_first(fs):
    cpu = path_inode(fs, "cpu")
    d, _ = fs.mkdir(cpu, "x", ROOT)
    e, _ = fs.mkdir(d, "y", ROOT)
    assert [(n, i) for n, i, _ in fs.readdir(e)[:2]] == [(".", e), ("..", d)]
    assert [(n, i) for n, i, _ in fs.readdir(cpu)[:2]] == [(".", cpu), ("..", ROOT_INODE)]
