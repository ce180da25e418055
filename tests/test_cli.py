"""The CLI contract other tools rely on: mount/umount/status and one-line
errors with non-zero exits."""

from __future__ import annotations

import json
import os
import signal
import tempfile

import pytest

from tests.support import fakefs, is_mounted, require_root_and_fuse, wait_for

pytestmark = pytest.mark.fuse


@pytest.fixture
def target():
    require_root_and_fuse()
    path = tempfile.mkdtemp(prefix="fakefs-cli-")
    yield path
    if is_mounted(path):
        fakefs("umount", path)
    os.rmdir(path)


def one_line_error(res):
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    return res.stderr


def test_mount_status_umount_cycle(target):
    res = fakefs("mount", target)
    assert res.returncode == 0, res.stderr
    assert is_mounted(target)
    status = json.loads(fakefs("status", "--json").stdout)
    entry = next(m for m in status["mounts"] if m["target"] == target)
    assert entry["backend"] == "fuse" and entry["state"] == "running" and entry["tree"] == "cgroup"
    os.kill(entry["pid"], 0)
    assert target in fakefs("status").stdout
    res = fakefs("umount", target)
    assert res.returncode == 0 and "unmounted" in res.stdout
    assert not is_mounted(target)
    assert wait_for(lambda: not os.path.exists(f"/proc/{entry['pid']}") or
                    open(f"/proc/{entry['pid']}/stat").read().split(") ")[1][0] == "Z")
    again = fakefs("umount", target)
    assert again.returncode == 0 and "nothing mounted" in again.stdout
    assert all(m["target"] != target for m in json.loads(fakefs("status", "--json").stdout)["mounts"])


def test_already_mounted_is_an_error(target):
    assert fakefs("mount", target).returncode == 0
    assert "already mounted" in one_line_error(fakefs("mount", target))
    assert fakefs("umount", target).returncode == 0


def test_missing_target_and_bad_hierarchy(target):
    assert "does not exist" in one_line_error(fakefs("mount", target + "/nope"))
    assert "unknown cgroup controller" in one_line_error(fakefs("mount", target, "--hierarchy", "cpu,bogus"))
    assert "two hierarchies" in one_line_error(fakefs("mount", target, "--hierarchy", "cpu", "--hierarchy", "cpu,cpuacct"))
    assert not is_mounted(target)


def test_not_root_is_refused(target):
    # Import as root, then drop privileges: the venv lives under /root.
    code = ("import os, sys; import fakefs.cli, fakefs.runtime.daemons, fakefs.runtime.serving, fakefs.model.tree;"
            "fakefs.cli._parser().format_help();"  # argparse imports more stdlib lazily
            "os.setgid(65534); os.setuid(65534);"
            f"sys.exit(fakefs.cli.main(['mount', {target!r}]))")
    import subprocess, sys
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "root" in one_line_error(res)
    assert not is_mounted(target)


def test_selected_hierarchies_only(target):
    assert fakefs("mount", target, "--hierarchy", "cpu,cpuacct", "--hierarchy", "name=systemd").returncode == 0
    try:
        assert sorted(os.listdir(target)) == ["cpu", "cpu,cpuacct", "cpuacct", "systemd"]
    finally:
        fakefs("umount", target)


def test_stale_mount_after_kill_is_cleaned(target):
    assert fakefs("mount", target).returncode == 0
    pid = next(m["pid"] for m in json.loads(fakefs("status", "--json").stdout)["mounts"] if m["target"] == target)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split(") ")[1][:1])
    status = json.loads(fakefs("status", "--json").stdout)
    assert next(m for m in status["mounts"] if m["target"] == target)["state"] == "stale"
    res = fakefs("mount", target)  # replaces the dead mount instead of failing
    assert res.returncode == 0, res.stderr
    assert open(os.path.join(target, "cpu", "cpu.shares")).read() == "1024\n"
    assert fakefs("umount", target).returncode == 0
    assert not is_mounted(target)


def test_sigterm_unmounts_cleanly(target):
    assert fakefs("mount", target).returncode == 0
    pid = next(m["pid"] for m in json.loads(fakefs("status", "--json").stdout)["mounts"] if m["target"] == target)
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not is_mounted(target))
    assert all(m["target"] != target for m in json.loads(fakefs("status", "--json").stdout)["mounts"])


def test_system_path_needs_private_namespace():
    require_root_and_fuse()
    # The test session runs in a namespace fakefs made, so this is allowed here;
    # without that marker the same command is refused.
    env = {k: v for k, v in os.environ.items() if k != "FAKEFS_PRIVATE_MNTNS"}
    import subprocess, sys
    res = subprocess.run([sys.executable, "-m", "fakefs", "mount", "/sys/fs/cgroup"], env=env,
                         capture_output=True, text=True)
    if os.readlink("/proc/self/ns/mnt") == _pid1_ns():
        assert "refusing" in one_line_error(res)
    else:
        pytest.skip("PID 1 is in another namespace: the guard cannot tell")


def _pid1_ns():
    try:
        return os.readlink("/proc/1/ns/mnt")
    except OSError:
        return os.readlink("/proc/self/ns/mnt")  # unreadable: treated as the host's


def test_usage_errors_are_short():
    res = fakefs("frobnicate")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_root_defaults_are_this_machine_and_overridable(target):
    online = open("/sys/devices/system/cpu/online").read().strip()
    assert fakefs("mount", target).returncode == 0
    try:
        assert open(os.path.join(target, "cpuset", "cpuset.cpus")).read().strip() == online
    finally:
        fakefs("umount", target)
    res = fakefs("mount", target, "--cpus", "0-5")
    assert res.returncode == 0, res.stderr
    try:
        assert open(os.path.join(target, "cpuset", "cpuset.cpus")).read() == "0-5\n"
        assert open(os.path.join(target, "cpuset", "cpuset.effective_cpus")).read() == "0-5\n"
        os.mkdir(os.path.join(target, "cpuset", "c"))
        with open(os.path.join(target, "cpuset", "c", "cpuset.cpus"), "w") as f:
            f.write("4-5")
        assert open(os.path.join(target, "cpuset", "c", "cpuset.cpus")).read() == "4-5\n"
        os.rmdir(os.path.join(target, "cpuset", "c"))
    finally:
        fakefs("umount", target)
    assert "CPU list" in one_line_error(fakefs("mount", target, "--cpus", "x-y"))
