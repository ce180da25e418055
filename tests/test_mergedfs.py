"""Merged views: a real directory (seen through fds only) plus synthetic
entries. Pure: plain files in a tmp dir stand in for /proc/sys, and the real
/proc/sys is only ever read (or opened for writing where the kernel refuses)."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from fakefs.vfs.mergedfs import DirFd, MergedDir, RealDir, RealFile, RealSymlink, StagingRoot, SyntheticFile
from fakefs.vfs.ops import ROOT_INODE, FsOps
from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError

ROOT = WriteContext(tid=1, uid=0)


def errno_of(fn, *a):
    with pytest.raises(KernelError) as exc:
        fn(*a)
    return errno.errorcode[exc.value.errno]


@pytest.fixture
def realdir(tmp_path):
    """A stand-in for /proc/sys/kernel: files, a subdir, nothing else."""
    d = tmp_path / "kernel"
    d.mkdir()
    (d / "pid_max").write_text("4194304\n")
    (d / "ostype").write_text("Linux\n")
    (d / "keys").mkdir()
    (d / "keys" / "maxkeys").write_text("200\n")
    return d


@pytest.fixture
def owner(realdir):
    o = DirFd.open(str(realdir))
    yield o
    o.close()


def names(node):
    return sorted(n for n, _ in node.entries())


# --- passthrough ----------------------------------------------------------------

def test_real_dir_lists_real_entries(owner):
    assert names(RealDir(owner, "")) == ["keys", "ostype", "pid_max"]


def test_real_file_content_and_size_pass_through(owner):
    f = RealDir(owner).lookup("pid_max")
    assert isinstance(f, RealFile)
    assert f.render() == b"4194304\n"
    assert f.attr().size == len(b"4194304\n")


def test_real_file_mode_and_owner_pass_through(owner, realdir):
    os.chmod(realdir / "ostype", 0o444)
    if os.geteuid() == 0:
        os.chown(realdir / "ostype", 1234, 5678)
    a = RealDir(owner).lookup("ostype").attr()
    assert a.mode == stat.S_IFREG | 0o444
    st = os.stat(realdir / "ostype")
    assert (a.uid, a.gid) == (st.st_uid, st.st_gid)


def test_real_file_reflects_changes_made_now(owner, realdir):
    f = RealDir(owner).lookup("pid_max")
    (realdir / "pid_max").write_text("32768\n")
    assert f.render() == b"32768\n"
    assert f.attr().size == 6


def test_write_reaches_real_file(owner, realdir):
    f = RealDir(owner).lookup("ostype")
    assert f.write(b"BSD\n", ROOT) == 4
    assert (realdir / "ostype").read_bytes() == b"BSD\nx\n"  # one write at offset 0, no truncation


def test_truncate_passes_through(owner, realdir):
    f = RealDir(owner).lookup("ostype")
    f.truncate(0)
    f.write(b"BSD\n", ROOT)
    assert (realdir / "ostype").read_bytes() == b"BSD\n"


def test_write_to_removed_real_file_gives_real_errno(owner, realdir):
    f = RealDir(owner).lookup("ostype")
    os.unlink(realdir / "ostype")
    assert errno_of(f.write, b"x", ROOT) == "ENOENT"
    assert not (realdir / "ostype").exists()  # no O_CREAT


def test_subdir_is_entered_through_fds(owner):
    keys = RealDir(owner).lookup("keys")
    assert isinstance(keys, RealDir)
    assert keys.lookup("maxkeys").render() == b"200\n"


def test_non_regular_real_entries_are_not_served(owner, realdir):
    # Opening a FIFO would block the daemon.
    os.mkfifo(realdir / "fifo")
    assert "fifo" not in names(RealDir(owner))
    assert errno_of(RealDir(owner).lookup, "fifo") == "ENOENT"


def test_dotdot_is_not_a_way_out(owner):
    assert errno_of(RealDir(owner).lookup, "..") == "ENOENT"
    assert errno_of(MergedDir(RealDir(owner), {}).lookup, "..") == "ENOENT"


# --- symlink confinement -----------------------------------------------------------

@pytest.fixture
def outside(tmp_path):
    o = tmp_path / "outside"
    o.mkdir()
    (o / "secret").write_text("SECRET\n")
    return o


def test_real_symlink_is_shown_as_symlink_not_followed(owner, realdir, outside):
    os.symlink(str(outside / "secret"), realdir / "link")
    node = MergedDir(RealDir(owner), {}).lookup("link")
    assert isinstance(node, RealSymlink)
    assert stat.S_ISLNK(node.attr().mode)
    assert node.readlink() == str(outside / "secret")
    with pytest.raises(KernelError):
        node.render()


def test_symlinked_subdir_is_not_entered(owner, realdir, outside):
    os.symlink(str(outside), realdir / "net")
    merged = MergedDir(RealDir(owner), {"net": {"extra": SyntheticFile.text("extra", "1\n")}})
    node = merged.lookup("net")
    # Authentic first: the real symlink wins over the synthetic dict, and is
    # not merged into (that would list the outside directory).
    assert isinstance(node, RealSymlink)
    assert errno_of(node.lookup, "secret") == "ENOTDIR"


def test_subdir_replaced_by_symlink_is_no_longer_entered(owner, realdir, outside):
    keys = RealDir(owner).lookup("keys")
    maxkeys = keys.lookup("maxkeys")
    os.rename(realdir / "keys", realdir / "keys.old")
    os.symlink(str(outside), realdir / "keys")
    (outside / "maxkeys").write_text("OUTSIDE\n")
    assert errno_of(keys.entries) == "ENOENT"
    assert errno_of(keys.lookup, "secret") == "ENOENT"
    assert errno_of(maxkeys.render) == "ENOENT"
    assert errno_of(keys.attr) == "ENOENT"


def test_file_replaced_by_symlink_is_not_followed(owner, realdir, outside):
    f = RealDir(owner).lookup("ostype")
    os.unlink(realdir / "ostype")
    os.symlink(str(outside / "secret"), realdir / "ostype")
    assert errno_of(f.render) == "ENOENT"
    assert errno_of(f.write, b"pwned\n", ROOT) == "ENOENT"
    assert (outside / "secret").read_text() == "SECRET\n"


def test_view_keeps_working_after_real_dir_is_renamed_away(owner, realdir, tmp_path):
    view = MergedDir(RealDir(owner), {"extra": SyntheticFile.text("extra", "1\n")})
    keys = view.lookup("keys")
    os.rename(realdir, tmp_path / "moved")
    realdir.mkdir()  # an impostor at the old path is not what the view shows
    (realdir / "impostor").write_text("no\n")
    assert names(view) == ["extra", "keys", "ostype", "pid_max"]
    assert view.lookup("pid_max").render() == b"4194304\n"
    assert keys.lookup("maxkeys").render() == b"200\n"
    view.lookup("ostype").truncate(0)
    view.lookup("ostype").write(b"moved\n", ROOT)
    assert (tmp_path / "moved" / "ostype").read_text() == "moved\n"


# --- merging ---------------------------------------------------------------------

def test_listing_merges_real_and_synthetic(owner):
    merged = MergedDir(RealDir(owner), {"cap_last_cap": SyntheticFile.text("clc", "40\n")})
    assert names(merged) == ["cap_last_cap", "keys", "ostype", "pid_max"]
    assert merged.lookup("cap_last_cap").render() == b"40\n"


def test_real_entry_wins_over_synthetic_by_default(owner):
    merged = MergedDir(RealDir(owner), {"pid_max": SyntheticFile.text("pm", "99\n")})
    assert merged.lookup("pid_max").render() == b"4194304\n"
    (node,) = [n for name, n in merged.entries() if name == "pid_max"]
    assert isinstance(node, RealFile)


def test_synthetic_replaces_real_only_when_it_says_so(owner):
    syn = SyntheticFile.text("pm", "99\n", overrides_real=True)
    merged = MergedDir(RealDir(owner), {"pid_max": syn})
    assert merged.lookup("pid_max") is syn
    assert [n for name, n in merged.entries() if name == "pid_max"] == [syn]
    assert len(merged.entries()) == 3  # replaced, not listed twice


def test_synthetic_dict_merges_with_existing_real_subdir(owner):
    merged = MergedDir(RealDir(owner), {"keys": {"root_maxkeys": SyntheticFile.text("rmk", "1000000\n")}})
    keys = merged.lookup("keys")
    assert isinstance(keys, MergedDir)
    assert names(keys) == ["maxkeys", "root_maxkeys"]
    assert keys.lookup("maxkeys").render() == b"200\n"
    assert keys.lookup("root_maxkeys").render() == b"1000000\n"


def test_synthetic_dict_creates_missing_real_subdir(owner):
    merged = MergedDir(RealDir(owner), {"random": {"uuid": SyntheticFile.text("uuid", "x\n"),
                                                   "deeper": {"leaf": SyntheticFile.text("leaf", "y\n")}}})
    rnd = merged.lookup("random")
    assert stat.S_ISDIR(rnd.attr().mode) and rnd.attr().mode & 0o777 == 0o555
    assert names(rnd) == ["deeper", "uuid"]
    assert rnd.lookup("deeper").lookup("leaf").render() == b"y\n"
    assert "random" in names(merged)


def test_merged_dir_without_real_part(owner):
    merged = MergedDir(None, {"hashsize": SyntheticFile.text("hs", "65536\n")})
    assert names(merged) == ["hashsize"]
    assert merged.attr().nlink == 2


def test_merged_dir_attr_is_the_real_dirs_plus_synthetic_subdirs(owner, realdir):
    os.chmod(realdir, 0o555)
    merged = MergedDir(RealDir(owner), {"random": {}, "keys": {}})
    a = merged.attr()
    assert a.mode == stat.S_IFDIR | 0o555
    assert a.nlink == os.stat(realdir).st_nlink + 1  # keys/ is real already


# --- keys ------------------------------------------------------------------------

def test_keys_are_stable_across_lookups(owner):
    merged = MergedDir(RealDir(owner), {"keys": {"root_maxkeys": SyntheticFile.text("rmk", "1\n")},
                                        "random": {}})
    for name in ("pid_max", "keys", "random"):
        assert merged.lookup(name).key == merged.lookup(name).key
    assert (merged.lookup("keys").lookup("maxkeys").key
            == MergedDir(RealDir(owner), {}).lookup("keys").lookup("maxkeys").key)


def test_keys_are_distinct(owner, realdir):
    syn = SyntheticFile.text(("real", owner.token, "pid_max", "file"), "x\n")  # tries to collide
    merged = MergedDir(RealDir(owner), {"keys": {}, "syn": syn})
    keys = [n.key for _, n in merged.entries()]
    assert len(keys) == 4
    keys += [merged.key, RealDir(owner).key, RealDir(owner).lookup("keys").key]
    assert len(set(keys)) == len(keys)


def test_name_changing_type_gets_a_new_key(owner, realdir):
    before = RealDir(owner).lookup("ostype").key
    os.unlink(realdir / "ostype")
    os.mkdir(realdir / "ostype")
    assert RealDir(owner).lookup("ostype").key != before


def test_two_real_dirs_do_not_share_keys(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f").write_text(d)
    with DirFd.open(str(tmp_path / "a")) as a, DirFd.open(str(tmp_path / "b")) as b:
        assert RealDir(a).lookup("f").key != RealDir(b).lookup("f").key


# --- namespace changes (procfs errnos, measured on /proc/sys/kernel) ----------------------

def test_mkdir_and_create_of_new_name_give_enoent(owner, realdir):
    merged = MergedDir(RealDir(owner), {})
    assert errno_of(merged.mkdir, "new", ROOT) == "ENOENT"
    assert errno_of(merged.create, "new", ROOT) == "ENOENT"
    assert not (realdir / "new").exists()


def test_mkdir_of_existing_name_gives_eexist(owner):
    merged = MergedDir(RealDir(owner), {"random": {}})
    assert errno_of(merged.mkdir, "keys", ROOT) == "EEXIST"
    assert errno_of(merged.mkdir, "random", ROOT) == "EEXIST"


def test_removing_or_renaming_existing_entries_gives_eacces(owner, realdir):
    merged = MergedDir(RealDir(owner), {"extra": SyntheticFile.text("e", "1\n")})
    assert errno_of(merged.rmdir, "keys", ROOT) == "EACCES"
    assert errno_of(merged.rmdir, "pid_max", ROOT) == "EACCES"
    assert errno_of(merged.unlink, "pid_max", ROOT) == "EACCES"
    assert errno_of(merged.unlink, "extra", ROOT) == "EACCES"
    assert errno_of(merged.rename, "pid_max", merged, "x", ROOT) == "EACCES"
    assert (realdir / "pid_max").exists() and (realdir / "keys").is_dir()


def test_removing_missing_entries_gives_enoent(owner):
    merged = MergedDir(RealDir(owner), {})
    assert errno_of(merged.rmdir, "nope", ROOT) == "ENOENT"
    assert errno_of(merged.rename, "nope", merged, "x", ROOT) == "ENOENT"


def test_chmod_of_real_file_gives_eperm(owner, realdir):
    before = os.stat(realdir / "pid_max").st_mode
    assert errno_of(RealDir(owner).lookup("pid_max").chmod_chown, 0o777, None, None) == "EPERM"
    assert os.stat(realdir / "pid_max").st_mode == before


# --- synthetic files ------------------------------------------------------------------

def test_synthetic_file_without_writer_refuses_write_open():
    f = SyntheticFile.text("hs", "65536\n")
    assert f.attr().mode == stat.S_IFREG | 0o444
    assert f.attr().size == 6
    f.check_open(False, ROOT)
    assert errno_of(f.check_open, True, ROOT) == "EACCES"


def test_synthetic_file_writer_and_open_check():
    state = {"v": b"1\n"}

    def write(data, ctx):
        state["v"] = data
        return None

    def check(writing, ctx):
        if writing and ctx.uid != 0:
            raise KernelError(errno.EPERM)

    f = SyntheticFile("v", 0o644, lambda: state["v"], write, check)
    f.check_open(True, ROOT)
    assert errno_of(f.check_open, True, WriteContext(uid=1000)) == "EPERM"
    assert f.write(b"7\n", ROOT) == 2
    assert f.render() == b"7\n"


def test_staging_root():
    kernel = MergedDir(None, {"a": SyntheticFile.text("a", "1\n")}, key="k")
    root = StagingRoot({"kernel": kernel})
    assert root.attr().mode == stat.S_IFDIR | 0o755
    assert root.lookup("kernel") is kernel
    assert root.entries() == [("kernel", kernel)]
    assert errno_of(root.lookup, "vm") == "ENOENT"


# --- the real, read-only /proc/sys --------------------------------------------------------

@pytest.fixture
def proc_kernel():
    if not os.path.isdir("/proc/sys/kernel"):
        pytest.skip("no /proc/sys")
    o = DirFd.open("/proc/sys/kernel")
    yield o
    o.close()


def _real(path):
    with open(path, "rb") as f:
        return f.read()


def test_proc_sys_values_pass_through(proc_kernel):
    merged = MergedDir(RealDir(proc_kernel), {})
    for name in ("osrelease", "cap_last_cap"):
        node = merged.lookup(name)
        data = node.render()
        assert data == _real(f"/proc/sys/kernel/{name}")
        a = node.attr()
        assert a.size == len(data) > 0  # procfs itself says 0
        assert a.mode == os.stat(f"/proc/sys/kernel/{name}").st_mode


def test_proc_sys_refusal_of_write_open_passes_through(proc_kernel):
    # sysctl_perm(): cap_last_cap is 0444 and refuses writes even to root.
    # The open fails in the kernel: nothing is written.
    node = RealDir(proc_kernel).lookup("cap_last_cap")
    assert errno_of(node.check_open, True, ROOT) == "EACCES"
    node.check_open(False, ROOT)


def test_proc_sys_write_only_entry_has_size_zero():
    if not os.path.exists("/proc/sys/vm/drop_caches"):
        pytest.skip("no drop_caches")
    with DirFd.open("/proc/sys/vm") as vm:
        node = RealDir(vm).lookup("drop_caches")
        assert node.attr().size == 0
        assert errno_of(node.check_open, False, ROOT) == "EACCES"  # 0200 even for root


def test_proc_sys_keys_merge(proc_kernel):
    extra = SyntheticFile.text("extra", "1\n")
    merged = MergedDir(RealDir(proc_kernel), {"keys": {"root_maxkeys": SyntheticFile.text("rmk", "7\n"),
                                                       "fakefs_extra": extra}})
    keys = merged.lookup("keys")
    listing = names(keys)
    assert "fakefs_extra" in listing and "root_maxkeys" in listing
    if os.path.exists("/proc/sys/kernel/keys/root_maxkeys"):
        assert keys.lookup("root_maxkeys").render() == _real("/proc/sys/kernel/keys/root_maxkeys")
    assert set(os.listdir("/proc/sys/kernel")) <= set(names(merged))


# --- through the operations layer ------------------------------------------------------------

def path_inode(fs, path):
    ino = ROOT_INODE
    for part in path.strip("/").split("/"):
        ino, _ = fs.lookup(ino, part)
    return ino


def test_fsops_over_staging_root(owner, realdir):
    written = []
    syn_dir = {"keys": {"root_maxkeys": SyntheticFile("rmk", 0o644, lambda: b"1000000\n",
                                                      lambda d, c: written.append(d))}}
    fs = FsOps(StagingRoot({"kernel": MergedDir(RealDir(owner), syn_dir),
                            "params": MergedDir(None, {"hashsize": SyntheticFile.text("hs", "65536\n")})}))
    assert sorted(n for n, _, _ in fs.readdir(ROOT_INODE)) == [".", "..", "kernel", "params"]
    assert sorted(n for n, _, _ in fs.readdir(path_inode(fs, "kernel/keys"))) == [".", "..", "maxkeys",
                                                                                   "root_maxkeys"]

    ino = path_inode(fs, "kernel/pid_max")
    assert ino == path_inode(fs, "kernel/pid_max")
    assert fs.getattr(ino).size == 8
    fh = fs.open(ino, os.O_RDONLY, ROOT)
    assert fs.read(fh, 0, 4096) == b"4194304\n"
    fs.release(fh)

    fh = fs.open(ino, os.O_WRONLY, ROOT)
    fs.setattr(ino, size=0)
    assert fs.write(fh, 0, b"32768\n", ROOT) == 6
    fs.release(fh)
    assert (realdir / "pid_max").read_text() == "32768\n"

    fh = fs.open(path_inode(fs, "kernel/keys/root_maxkeys"), os.O_WRONLY, ROOT)
    fs.write(fh, 0, b"5\n", ROOT)
    assert written == [b"5\n"]

    hs = path_inode(fs, "params/hashsize")
    assert errno.errorcode[_raises(fs.open, hs, os.O_WRONLY, ROOT)] == "EACCES"
    assert errno.errorcode[_raises(fs.create, path_inode(fs, "kernel"), "new", ROOT)] == "ENOENT"
    assert errno.errorcode[_raises(fs.create, path_inode(fs, "kernel"), "ostype", ROOT)] == "EEXIST"
    assert errno.errorcode[_raises(fs.unlink, path_inode(fs, "kernel"), "ostype", ROOT)] == "EACCES"


def _raises(fn, *a):
    with pytest.raises(KernelError) as exc:
        fn(*a)
    return exc.value.errno
