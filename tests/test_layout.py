"""The fake cgroup tree is the layout mountinfo announces (manager/layout.py).

Clients find hierarchies in /proc/self/mountinfo and open the mount points
by path; the mounts fakefs covers stay listed there. So: one directory per
announced mount point with exactly its controllers, cgroup2 kept authentic,
systemd's layout only where nothing is announced. Unit tests of the parsing
and the plans (with a made-up mountinfo), then the rule itself checked
inside ``fakefs run`` with every cgroup profile, and ``fakefs mount``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from fakefs.host.mountinfo import Mount
from fakefs.manager import layout
from fakefs.manager.layout import announced_mounts, mount_layout
from fakefs.manager.plan import plan_cgroup
from fakefs.manager.profile import load
from fakefs.model.errors import KernelError
from fakefs.model.tree import CgroupModel, spec_of_super_options
from tests.support import REPO, fakefs, require, require_root_and_fuse
from tests.test_manager import run_in_new_ns

CG = "/sys/fs/cgroup"
CHECK = os.path.join(REPO, "tests", "scripts", "cgroup_layout_check.py")


def test_super_options_give_the_hierarchy_spec():
    assert spec_of_super_options("rw,cpu,cpuacct") == ("cpu,cpuacct", "cgroup v1 hierarchy")
    assert spec_of_super_options("rw,xattr,release_agent=/lib/x,name=systemd")[0] == "name=systemd"
    assert spec_of_super_options("rw,nosuid,net_cls,net_prio")[0] is None  # not a cgroup v1 option: refused
    assert spec_of_super_options("rw,noprefix,cpuset")[0] == "cpuset"
    assert spec_of_super_options("rw,misc") == (None, "controller misc is not modelled by fakefs")
    assert spec_of_super_options("rw,xattr") == (None, "no controller in its mount options")


def test_model_copies_a_host_layout():
    model = CgroupModel(hierarchies=["cpu,cpuacct", "memory"], dirnames={"cpu,cpuacct": "cpu,cpuacct"},
                        links={"cpu": "cpu,cpuacct"})
    entries = model.entries()
    assert entries["cpu"] == "cpu,cpuacct" and "cpuacct" not in entries  # only the links given
    assert model.hierarchy("cpu") is model.hierarchy("cpuacct")
    # Announced apart, served apart: two directories, no symlink.
    model = CgroupModel(hierarchies=["cpu", "cpuacct"])
    assert model.hierarchy("cpu") is not model.hierarchy("cpuacct")
    assert all(not isinstance(v, str) for v in model.entries().values())
    for bad in ({"x": "nope"}, {"memory": "memory"}, {"a/b": "memory"}):
        with pytest.raises(KernelError):
            CgroupModel(hierarchies=["memory"], links=bad)
    with pytest.raises(KernelError):
        CgroupModel(hierarchies=["memory", "pids"], dirnames={"memory": "x", "pids": "x"})


def _systemd_host(tmp_path, monkeypatch):
    """A made-up systemd host below tmp_path/cg: cpu,cpuacct co-mounted with
    symlinks, memory, name=systemd, cgroup2 unified, and a memory mount
    hidden under a later one (a client still sees its line)."""
    target = tmp_path / "cg"
    target.mkdir()
    for d in ("cpu,cpuacct", "memory", "systemd", "unified"):
        (target / d).mkdir()
    (target / "cpu").symlink_to("cpu,cpuacct")
    (target / "cpuacct").symlink_to("cpu,cpuacct")
    t = str(target)
    mounts = [Mount(1, 0, "/", "/", "ext4", "/dev/root", "rw"),
              Mount(2, 1, "/", t, "tmpfs", "tmpfs", "rw,mode=755"),
              Mount(3, 2, "/", f"{t}/cpu,cpuacct", "cgroup", "cgroup", "rw,cpu,cpuacct"),
              Mount(4, 2, "/", f"{t}/memory", "cgroup", "cgroup", "rw,memory"),
              Mount(5, 2, "/", f"{t}/systemd", "cgroup", "cgroup", "rw,xattr,name=systemd"),
              Mount(6, 2, "/", f"{t}/unified", "cgroup2", "cgroup2", "rw,nsdelegate"),
              Mount(7, 4, "/", f"{t}/memory", "tmpfs", "tmpfs", "rw")]  # covers memory
    monkeypatch.setattr(layout, "read_mounts", lambda: mounts)
    return t


def _steps(plan_steps) -> dict[tuple[str, str], object]:
    return {(s.action, s.target): s for s in plan_steps}


def test_announced_mounts_hidden_ones_included(tmp_path, monkeypatch):
    t = _systemd_host(tmp_path, monkeypatch)
    found = {a.dirname: a for a in announced_mounts(t)}
    assert set(found) == {"cpu,cpuacct", "memory", "systemd", "unified"}
    assert found["cpu,cpuacct"].spec == "cpu,cpuacct" and found["cpu,cpuacct"].visible
    assert found["memory"].spec == "memory" and not found["memory"].visible
    assert found["unified"].fstype == "cgroup2" and found["unified"].spec is None


def test_fake_profile_plan_on_a_systemd_host(tmp_path, monkeypatch):
    t = _systemd_host(tmp_path, monkeypatch)
    profile = dataclasses.replace(load("cgroup-v1-fake"), cgroup_target=t)
    steps = plan_cgroup(profile, str(tmp_path / "stage"), probe=lambda c, n: pytest.fail("never probes"))
    by = _steps(steps)
    assert steps[0].action == "layout" and "follows mountinfo" in steps[0].why
    fake_root = str(tmp_path / "stage" / "cgroup")
    daemon = by[("start-daemon", fake_root)]
    # The announced co-mounting, not the profile's: cpu,cpuacct here.
    assert daemon.options["hierarchies"][:3] == ["cpu,cpuacct", "memory", "name=systemd"]
    for dirname in ("cpu,cpuacct", "memory", "systemd"):
        assert by[("bind", f"{t}/{dirname}")].source == f"{fake_root}/{dirname}"
    # The host's symlinks come back; cgroup2 stays authentic.
    assert by[("symlink", f"{t}/cpu")].source == "cpu,cpuacct"
    assert by[("symlink", f"{t}/cpu")].why == "symlink of the host's layout"
    assert ("keep", f"{t}/unified") in by and by[("bind", f"{t}/unified")].source.endswith("stash/unified")
    # What nothing announces is laid out as systemd does.
    assert by[("bind", f"{t}/net_cls,net_prio")].why == "fake hierarchy (net_cls,net_prio)"
    assert by[("symlink", f"{t}/net_prio")].why == "alias, as systemd makes it"
    assert "net_cls,net_prio" in steps[0].why


def test_prefer_profile_plan_on_a_systemd_host(tmp_path, monkeypatch):
    t = _systemd_host(tmp_path, monkeypatch)
    profile = dataclasses.replace(load("cgroup-v1"), cgroup_target=t)
    probed = []
    steps = plan_cgroup(profile, str(tmp_path / "stage"),
                        probe=lambda c, n: probed.append((c, n)) or (False, "refused"))
    by = _steps(steps)
    for dirname in ("cpu,cpuacct", "systemd", "unified"):
        assert ("keep", f"{t}/{dirname}") in by
    # The hidden memory line: the same hierarchy is mounted again where the
    # sandbox can, else fakefs serves it at the announced mount point.
    assert probed[0] == (["memory"], None)
    assert ("skip", f"{t}/memory") in by and by[("bind", f"{t}/memory")].source.endswith("cgroup/memory")
    assert (["cpu"], None) not in probed and (["cpu", "cpuacct"], None) not in probed


def test_mount_layout_on_a_systemd_host(tmp_path, monkeypatch):
    t = _systemd_host(tmp_path, monkeypatch)
    lay = mount_layout(t, None)
    model = CgroupModel(hierarchies=lay.hierarchies, **lay.model_layout())
    entries = model.entries()
    assert entries["cpu"] == entries["cpuacct"] == "cpu,cpuacct"  # the host's symlinks
    assert not isinstance(entries["memory"], str) and not isinstance(entries["systemd"], str)
    # cgroup2 stays authentic: an empty directory the daemon binds it back on
    assert "unified" not in entries and lay.authentic == {"unified": f"{t}/unified"} and not lay.hidden
    assert entries["net_cls"] == "net_cls,net_prio"  # systemd's, for what nothing announces
    assert "follows mountinfo" in lay.describe(t).splitlines()[0]
    assert mount_layout(t, ["memory"]).hierarchies == ["memory"]


def test_systemd_layout_where_nothing_is_announced(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    profile = dataclasses.replace(load("cgroup-v1-fake"), cgroup_target=str(target))
    steps = plan_cgroup(profile, str(tmp_path / "stage"))
    by = _steps(steps)
    assert steps[0].action == "layout" and steps[0].why.startswith("systemd layout")
    assert ("bind", f"{target}/cpu,cpuacct") in by
    assert by[("symlink", f"{target}/cpu")].source == "cpu,cpuacct"
    assert mount_layout(str(target), None).hierarchies[0] == "cpu,cpuacct"


def _host_announced() -> list:
    found = announced_mounts(CG)
    require(any(a.fstype == "cgroup" for a in found), "needs cgroup v1 hierarchies announced under /sys/fs/cgroup")
    return found


def test_dry_runs_say_which_layout_and_why(tmp_path):
    announced = _host_announced()
    res = fakefs("mount", CG, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"layout of the cgroup tree at {CG}: follows mountinfo")
    listed = res.stdout.splitlines()[1:]
    for a in announced:
        if a.spec is not None:
            assert f"  {a.dirname}/  [{a.spec}]" in listed
        else:  # kept authentic: bound back into the fake tree
            assert f"  {a.dirname}/  [authentic: {a.mountpoint}, bound back in]" in listed, res.stdout
    res = fakefs("mount", str(tmp_path), "--dry-run")
    assert "systemd layout" in res.stdout.splitlines()[0] and "  cpu -> cpu,cpuacct" in res.stdout
    plan = json.loads(fakefs("apply", "cgroup-v1-fake", "--dry-run", "--json").stdout)
    step = next(s for s in plan["steps"] if s["action"] == "layout")
    assert step["target"] == CG and "follows mountinfo" in step["why"]


def _cgroup_lines() -> int:
    with open("/proc/self/mountinfo") as f:
        return sum(1 for line in f if line.split(" - ")[1].split()[0] in ("cgroup", "cgroup2"))


@pytest.mark.fuse
@pytest.mark.parametrize("how", [[], ["--profile", "cgroup-v1"], ["--profile", "cgroup-v1-fake"],
                                 ["--profile", "cgroup-subtree"], ["--limit", "memory=256M"]],
                         ids=["host", "cgroup-v1", "cgroup-v1-fake", "cgroup-subtree", "limit"])
def test_every_announced_cgroup_mount_point_holds_its_hierarchy(how):
    """The rule, inside ``fakefs run``: every cgroup/cgroup2 line of
    mountinfo names a directory (not a symlink) holding the files the kernel
    puts at the root of that hierarchy ("host": the check itself, without
    fakefs, must pass too)."""
    require_root_and_fuse()
    _host_announced()
    cmd = [sys.executable, CHECK]
    if how:
        cmd = [sys.executable, "-m", "fakefs", "run", *how, "--"] + cmd
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.splitlines()[-1])
    assert report["lines"] >= _cgroup_lines()  # the host's lines are still announced inside
    assert report["problems"] == []


@pytest.mark.fuse
def test_fakefs_mount_serves_the_announced_hierarchies_apart():
    """``fakefs mount /sys/fs/cgroup`` (private namespace): every announced
    v1 mount point is a directory of its own, so a client making the same
    cgroup in each gets no EEXIST (the systemd layout's cpu -> cpu,cpuacct
    would give it for the second)."""
    require_root_and_fuse()
    announced = [a for a in _host_announced() if a.spec is not None]
    code = f"""
import json, os, subprocess, sys
from fakefs.host.sysmount import unshare_mount_namespace
unshare_mount_namespace()
res = subprocess.run([sys.executable, "-m", "fakefs", "mount", {CG!r}], capture_output=True, text=True)
assert res.returncode == 0, res.stderr
out = {{}}
try:
    for mp in {[a.mountpoint for a in announced]!r}:
        fd = os.open(mp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.mkdir("fakefs-layout-one", dir_fd=fd)
            out[mp] = sorted(os.listdir(os.path.join(mp, "fakefs-layout-one")))
        except OSError as exc:
            out[mp] = exc.strerror
        finally:
            os.close(fd)
    print(json.dumps(out))
finally:
    subprocess.run([sys.executable, "-m", "fakefs", "umount", {CG!r}], capture_output=True)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert res.returncode == 0, res.stderr
    made = json.loads(res.stdout.splitlines()[-1])
    for a in announced:
        files = made[a.mountpoint]
        assert isinstance(files, list), (a.mountpoint, files)
        for controller in a.spec.split(","):
            if not controller.startswith("name="):
                assert any(f.startswith(controller + ".") for f in files), (a.mountpoint, files)
        # exactly its controllers: none of another announced hierarchy's files
        others = {c for b in announced if b is not a for c in b.spec.split(",") if not c.startswith("name=")}
        assert not [f for f in files if f.split(".")[0] in others], (a.mountpoint, files)


def test_fakefs_mount_binds_the_authentic_cgroup2_back_in_and_again_after_a_crash():
    """`fakefs mount /sys/fs/cgroup` on a hybrid host: the unified (cgroup2)
    mount mountinfo announces stays authentic inside the fake tree, also
    after the server was killed and replaced."""
    require_root_and_fuse()
    unified = [a for a in announced_mounts("/sys/fs/cgroup") if a.fstype == "cgroup2" and a.visible]
    require(bool(unified), "needs a hybrid host (cgroup2 announced under /sys/fs/cgroup)")
    name = unified[0].dirname
    script = f"""
set -e
{sys.executable} -m fakefs mount /sys/fs/cgroup
{sys.executable} - <<'PY'
import os, signal, time
from fakefs.host.mountinfo import read_mounts
from fakefs.runtime import registry

def fstype():
    found = [m.fstype for m in read_mounts() if m.mountpoint == "/sys/fs/cgroup/{name}"]
    return found[-1] if found else None

def entries():
    try:
        return "cgroup.controllers" in os.listdir("/sys/fs/cgroup/{name}")
    except OSError:
        return False

print("FIRST", fstype(), entries(), os.path.isdir("/sys/fs/cgroup/cpu") or os.path.islink("/sys/fs/cgroup/cpu"))
rec = registry.load("/sys/fs/cgroup")
os.kill(rec.server_pid, signal.SIGKILL)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    new = registry.load("/sys/fs/cgroup")
    if new and new.server_pid != rec.server_pid and entries():
        break
    time.sleep(0.05)
print("AFTER", fstype(), entries())
PY
{sys.executable} -m fakefs umount /sys/fs/cgroup
"""
    res = run_in_new_ns(script)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FIRST cgroup2 True True" in res.stdout, res.stdout + res.stderr
    assert "AFTER cgroup2 True" in res.stdout, res.stdout + res.stderr
