"""The tmpfs fallback: the mirror's bookkeeping on a plain directory (no
mounts), then the real backend through the CLI (a tmpfs at a scratch target,
the inotify watcher, real processes), `auto` falling back to it where FUSE
is refused, and the overlay tree under `fakefs run --profile kubelet`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from fakefs.backends import AUTO_ORDER, BACKENDS
from fakefs.runtime.serving import MountRequest, build_tree
from fakefs.vfs.cgroupfs import CgroupFsRoot
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from fakefs.backends.tmpfs.mirror import Mirror
from tests.support import REPO, fakefs, is_mounted, require, wait_for

CHECK = os.path.join(REPO, "tests", "scripts", "kubelet_tunables_check.py")


# -- the mirror on a plain directory --------------------------------------------------------

@pytest.fixture
def mirror(tmp_path):
    procs = StaticProcessTable()
    procs.spawn(100)
    procs.spawn(200, threads=2)
    model = CgroupModel(HostFacts(), procs, ["pids", "cpu,cpuacct", "memory"])
    (tmp_path / "tree").mkdir()
    (tmp_path / "work").mkdir()
    tree_fd = os.open(tmp_path / "tree", os.O_RDONLY | os.O_DIRECTORY)
    work_fd = os.open(tmp_path / "work", os.O_RDONLY | os.O_DIRECTORY)
    log: list[str] = []
    m = Mirror(CgroupFsRoot(model), tree_fd, work_fd, log.append)
    m.render_all()
    m.path = tmp_path / "tree"
    m.model, m.procs, m.messages = model, procs, log
    yield m
    os.close(tree_fd)
    os.close(work_fd)


def test_render_writes_every_entry_with_mode_and_content(mirror):
    t = mirror.path
    assert sorted(os.listdir(t)) == ["cpu", "cpu,cpuacct", "cpuacct", "memory", "pids"]
    assert os.readlink(t / "cpu") == "cpu,cpuacct"
    assert (t / "cpu,cpuacct" / "cpu.shares").read_text() == "1024\n"
    assert stat.S_IMODE(os.stat(t / "cpu,cpuacct" / "cgroup.sane_behavior").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(t / "pids").st_mode) == 0o555  # hierarchy roots are r-x
    assert (t / "pids" / "cgroup.procs").read_text() == "100\n200\n"
    assert (t / "pids" / "tasks").read_text() == "100\n200\n200001\n"
    # Write-only files exist, empty, with their mode.
    assert stat.S_IMODE(os.stat(t / "memory" / "memory.force_empty").st_mode) == 0o200
    assert not os.listdir(mirror.path.parent / "work")  # temporary files never stay


def test_mkdir_gets_control_files_and_inherits(mirror):
    t = mirror.path
    os.mkdir(t / "pids" / "a")
    mirror.dir_created("pids", "a")
    assert {"pids.max", "pids.current", "tasks", "cgroup.procs"} <= set(os.listdir(t / "pids" / "a"))
    assert (t / "pids" / "a" / "pids.max").read_text() == "max\n"
    # mkdir -p before the watcher saw the first level: every level is filled.
    os.makedirs(t / "pids" / "b" / "c" / "d")
    mirror.dir_created("pids", "b")
    assert (t / "pids" / "b" / "c" / "d" / "pids.max").read_text() == "max\n"
    assert mirror.model.hierarchy("pids").resolve("/b/c/d").name == "d"


def test_writes_go_through_the_model(mirror):
    t = mirror.path
    os.mkdir(t / "memory" / "job")
    mirror.dir_created("memory", "job")
    (t / "memory" / "job" / "memory.limit_in_bytes").write_text("1G")
    assert mirror.file_written("memory/job/memory.limit_in_bytes") is True
    mirror.refresh()
    # The file shows what a read of the kernel's file shows.
    assert (t / "memory" / "job" / "memory.limit_in_bytes").read_text() == "1073741824\n"
    (t / "memory" / "job" / "memory.limit_in_bytes").write_text("lots")
    assert mirror.file_written("memory/job/memory.limit_in_bytes") is False
    mirror.refresh()
    # Refused: the file reads as the kernel's would (the old value), the log says why.
    assert (t / "memory" / "job" / "memory.limit_in_bytes").read_text() == "1073741824\n"
    assert any("refused: EINVAL" in line for line in mirror.messages)
    assert mirror.model.hierarchy("memory").read_file(
        mirror.model.hierarchy("memory").resolve("/job"), "memory.limit_in_bytes") == "1073741824\n"


def test_cgroup_procs_moves_processes_and_derived_files_follow(mirror):
    t = mirror.path
    os.mkdir(t / "pids" / "app")
    mirror.dir_created("pids", "app")
    (t / "pids" / "app" / "cgroup.procs").write_text("200\n")
    assert mirror.file_written("pids/app/cgroup.procs")
    mirror.refresh()
    assert (t / "pids" / "app" / "cgroup.procs").read_text() == "200\n"
    assert (t / "pids" / "app" / "tasks").read_text() == "200\n200001\n"
    assert (t / "pids" / "app" / "pids.current").read_text() == "2\n"
    assert (t / "pids" / "cgroup.procs").read_text() == "100\n"
    # Several PIDs appended line by line: one write() each.
    (t / "pids" / "app" / "cgroup.procs").write_text("100\n999\n")
    mirror.file_written("pids/app/cgroup.procs")
    assert any("999" in line and "ESRCH" in line for line in mirror.messages)
    mirror.refresh()
    assert (t / "pids" / "app" / "cgroup.procs").read_text() == "100\n200\n"
    # A process exits: only the periodic refresh of live files can notice.
    mirror.procs.exit(200)
    assert mirror.refresh(live_only=True) >= 3
    assert (t / "pids" / "app" / "tasks").read_text() == "100\n"
    assert (t / "pids" / "app" / "pids.current").read_text() == "1\n"


def test_unhandled_consumer_write_is_never_overwritten(mirror):
    t = mirror.path
    os.mkdir(t / "pids" / "x")
    mirror.dir_created("pids", "x")
    (t / "pids" / "x" / "tasks").write_text("100\n")  # not handed to the model yet
    mirror.procs.spawn(300)
    mirror.refresh(live_only=True)
    assert (t / "pids" / "x" / "tasks").read_text() == "100\n"


def test_rmdir_rename_and_refusals(mirror):
    t = mirror.path
    os.mkdir(t / "pids" / "gone")
    mirror.dir_created("pids", "gone")
    shutil.rmtree(t / "pids" / "gone")
    mirror.dir_removed("pids", "gone")
    with pytest.raises(Exception):
        mirror.model.hierarchy("pids").resolve("/gone")
    # Populated: the model refuses (EBUSY) and the directory comes back.
    os.mkdir(t / "pids" / "busy")
    mirror.dir_created("pids", "busy")
    (t / "pids" / "busy" / "cgroup.procs").write_text("100")
    mirror.file_written("pids/busy/cgroup.procs")
    shutil.rmtree(t / "pids" / "busy")
    mirror.dir_removed("pids", "busy")
    assert (t / "pids" / "busy" / "cgroup.procs").read_text() == "100\n"
    assert any("rmdir refused by the model: EBUSY" in line for line in mirror.messages)
    # Rename within the parent follows the model; across parents moves back (EIO).
    os.mkdir(t / "pids" / "old")
    mirror.dir_created("pids", "old")
    os.rename(t / "pids" / "old", t / "pids" / "new")
    mirror.dir_renamed("pids", "old", "pids", "new")
    assert mirror.model.hierarchy("pids").resolve("/new").name == "new"
    os.rename(t / "pids" / "new", t / "pids" / "busy" / "new")
    mirror.dir_renamed("pids", "new", "pids/busy", "new")
    assert (t / "pids" / "new").is_dir() and not (t / "pids" / "busy" / "new").exists()
    # The mount root takes no new hierarchies: the directory is removed again.
    os.mkdir(t / "extra")
    mirror.dir_created("", "extra")
    assert not (t / "extra").exists()
    # A name the kernel refuses (newline) is removed too.
    os.mkdir(t / "pids" / "a\nb")
    mirror.dir_created("pids", "a\nb")
    assert not (t / "pids" / "a\nb").exists()


def test_resync_finds_what_events_missed(mirror):
    t = mirror.path
    os.makedirs(t / "pids" / "late" / "child")
    (t / "cpu,cpuacct" / "cpu.shares").write_text("4")
    mirror.resync("")
    assert (t / "pids" / "late" / "child" / "pids.max").read_text() == "max\n"
    assert mirror.model.hierarchy("pids").resolve("/late/child")


# -- the real backend ----------------------------------------------------------------------

def require_root() -> None:
    require(os.geteuid() == 0, "needs root (mounts)")


@pytest.fixture
def tmpfs_mount():
    """Factory: `fakefs mount TARGET --backend tmpfs ...`; unmounts at the end."""
    require_root()
    scratch = tempfile.mkdtemp(prefix="fakefs-tmpfs-test-")
    made: list[str] = []

    def _mount(*args: str) -> str:
        path = os.path.join(scratch, f"mnt{len(made)}")
        os.mkdir(path)
        res = fakefs("mount", path, "--backend", "tmpfs", *args)
        assert res.returncode == 0, res.stderr
        made.append(path)
        return path

    yield _mount
    for path in made:
        res = fakefs("umount", path)
        assert res.returncode == 0, res.stderr
        assert wait_for(lambda: not is_mounted(path))
    shutil.rmtree(scratch)


def _status(path: str) -> dict:
    rows = json.loads(fakefs("status", "--json").stdout)["mounts"]
    return next(r for r in rows if r["target"] == path)


def test_backend_is_registered_and_last_in_auto_order():
    assert "tmpfs" in BACKENDS and AUTO_ORDER[-1] == "tmpfs"


def test_mounted_tree_matches_the_model(tmpfs_mount):
    path = tmpfs_mount()
    root = build_tree(MountRequest(target=path)).root
    for name, node in root.entries():
        assert os.path.lexists(os.path.join(path, name)), name
        if stat.S_ISDIR(node.attr().mode):
            assert sorted(os.listdir(os.path.join(path, name))) == sorted(n for n, _ in node.entries())
    assert open(os.path.join(path, "cpu", "cpu.shares")).read() == "1024\n"
    assert open(os.path.join(path, "memory", "memory.limit_in_bytes")).read() == root.lookup("memory").lookup(
        "memory.limit_in_bytes").render().decode()
    mounts = [line.split() for line in open("/proc/self/mountinfo")]
    entry = next(m for m in mounts if m[4] == path)
    assert entry[3] == "/fakefs-tree" and entry[entry.index("-") + 1] == "tmpfs"
    st = _status(path)
    assert st["backend"] == "tmpfs" and st["state"] == "running"


def test_watcher_fills_new_cgroups_and_follows_writes(tmpfs_mount):
    path = tmpfs_mount("--hierarchy", "pids", "--hierarchy", "memory")
    child = os.path.join(path, "pids", "job")
    os.mkdir(child)
    assert wait_for(lambda: os.path.exists(os.path.join(child, "pids.max")), 5)
    assert open(os.path.join(child, "pids.max")).read() == "max\n"
    with open(os.path.join(child, "pids.max"), "w") as f:
        f.write("7")
    assert wait_for(lambda: open(os.path.join(child, "pids.max")).read() == "7\n", 5)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(child, "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        assert wait_for(lambda: open(os.path.join(child, "tasks")).read() == f"{sleeper.pid}\n", 5)
        assert open(os.path.join(child, "pids.current")).read() == "1\n"
        assert wait_for(lambda: str(sleeper.pid) not in open(os.path.join(path, "pids", "cgroup.procs")).read().split(), 5)
    finally:
        sleeper.kill()
        sleeper.wait()
    # The periodic refresh sees the exit.
    assert wait_for(lambda: open(os.path.join(child, "pids.current")).read() == "0\n", 5)
    assert wait_for(lambda: open(os.path.join(child, "cgroup.procs")).read() == "", 5)
    # Plain rmdir: ENOTEMPTY (documented); recursive removal: the model follows.
    with pytest.raises(OSError) as exc:
        os.rmdir(child)
    assert exc.value.errno == 39  # ENOTEMPTY
    shutil.rmtree(child)
    time.sleep(0.3)
    os.mkdir(child)  # accepted by the model only if the old cgroup is gone
    assert wait_for(lambda: os.path.exists(os.path.join(child, "pids.max")), 5)
    assert open(os.path.join(child, "pids.max")).read() == "max\n"
    shutil.rmtree(child)


def test_umount_after_the_daemon_was_killed(tmpfs_mount):
    require_root()
    scratch = tempfile.mkdtemp(prefix="fakefs-tmpfs-kill-")
    try:
        assert fakefs("mount", scratch, "--backend", "tmpfs", "--hierarchy", "pids").returncode == 0
        pid = _status(scratch)["pid"]
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: _status(scratch)["state"] == "stale", 5)
        res = fakefs("umount", scratch)
        assert res.returncode == 0 and "unmounted" in res.stdout
        assert not is_mounted(scratch)
        assert fakefs("status", "--json").stdout.count(scratch) == 0
    finally:
        if is_mounted(scratch):
            subprocess.run(["umount", "-l", scratch])
        os.rmdir(scratch)


def _in_new_ns(script: str, timeout: float = 120) -> subprocess.CompletedProcess:
    code = ("import subprocess, sys; from fakefs.host.sysmount import unshare_mount_namespace;"
            "unshare_mount_namespace(); sys.exit(subprocess.call(['sh', '-c', sys.argv[1]]))")
    return subprocess.run([sys.executable, "-c", code, script], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO)


# /dev without fuse: a tmpfs with just the nodes the tools need.
HIDE_DEV_FUSE = """
set -e
mkdir -p /tmp/fakefs-nofuse-dev && mount -t tmpfs none /tmp/fakefs-nofuse-dev
for n in null zero urandom random tty; do touch /tmp/fakefs-nofuse-dev/$n; mount --bind /dev/$n /tmp/fakefs-nofuse-dev/$n; done
mount --bind /tmp/fakefs-nofuse-dev /dev
test ! -e /dev/fuse
"""


def test_auto_falls_back_to_tmpfs_without_dev_fuse():
    require_root()
    script = HIDE_DEV_FUSE + f"""
mkdir -p /tmp/fakefs-nofuse-mnt
{sys.executable} -m fakefs mount /tmp/fakefs-nofuse-mnt --hierarchy pids
{sys.executable} -m fakefs status --json
cat /tmp/fakefs-nofuse-mnt/pids/cgroup.procs > /dev/null && echo READABLE
{sys.executable} -m fakefs umount /tmp/fakefs-nofuse-mnt
"""
    res = _in_new_ns(script)
    assert res.returncode == 0, res.stdout + res.stderr
    status = json.loads(res.stdout[res.stdout.index("{"):res.stdout.rindex("}") + 1])
    assert status["mounts"][0]["backend"] == "tmpfs"
    assert "READABLE" in res.stdout


def test_no_backend_without_cap_sys_admin_is_one_line():
    require_root()
    require(shutil.which("setpriv") is not None, "needs setpriv (util-linux)")
    target = tempfile.mkdtemp(prefix="fakefs-nocap-")
    try:
        res = subprocess.run(["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin",
                              sys.executable, "-m", "fakefs", "mount", target, "--hierarchy", "pids"],
                             capture_output=True, text=True, timeout=60, cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=REPO))
        assert res.returncode != 0
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert "no backend could mount here" in lines[0] and "tmpfs: tmpfs mount refused" in lines[0]
        assert not is_mounted(target)
    finally:
        os.rmdir(target)


def test_kubelet_profile_with_the_tmpfs_backend_in_a_gvisor_like_proc_sys():
    require_root()
    from tests.test_manager import GVISOR_LIKE

    inner = f"""
{sys.executable} {CHECK} > $GV/out.json; echo check=$?
{sys.executable} -c 'from fakefs.host.mountinfo import mounts_at; m = mounts_at("/proc/sys/vm")[-1]; print(m.root, m.fstype)'
echo 3 > /proc/sys/vm/panic_on_oom; sleep 0.5; cat /proc/sys/vm/panic_on_oom
"""
    script = GVISOR_LIKE + f"""
cat > $GV/inner.sh <<'INNER'
{inner}
INNER
{sys.executable} -m fakefs run --backend tmpfs --profile kubelet -- sh $GV/inner.sh
cat $GV/out.json
"""
    res = _in_new_ns(script)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "check=0", res.stdout
    assert lines[1] == "/fakefs-tree/proc_sys_vm tmpfs"
    # A value the kernel's sysctl parser refuses (panic_on_oom is 0..2): no
    # errno reaches the writer (documented), and the file reads as the
    # kernel's would afterwards, the old value.
    assert lines[2] == "0"
    report = json.loads(lines[3])
    assert report["errors"] == [] and report["tunables"]["kernel/panic"] == [0, 10]
