"""Real container runtimes on a fake cgroup subtree (profile cgroup-subtree)
and on the whole fake tree (profile cgroup-v1-fake).

runc (Debian 1.1.5) and crun (1.8.1) find the authentic hierarchies in
mountinfo and open files below them with openat2, which takes any
filesystem; so with cgroupsPath /<parent>/<id> every cgroup they create,
configure, join and remove lives in fakefs, while the real hierarchies only
ever hold the throwaway <parent> the profile made (and removed after).

Each test runs tests/scripts/runtime_check.py under ``fakefs run`` with a
profile that includes cgroup-subtree and names a unique parent; one runs
runc on the whole fake tree instead (profile cgroup-v1-fake), where it
discovers the fake hierarchies at the mount points mountinfo announces.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.support import REPO, require, require_root_and_fuse

pytestmark = pytest.mark.fuse
CHECK = os.path.join(REPO, "tests", "scripts", "runtime_check.py")
CG = "/sys/fs/cgroup"
FUSE_SUPER_MAGIC = 0x65735546
CGROUP2_SUPER_MAGIC = 0x63677270
MiB = 1 << 20
RESOURCES = {
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    "memory": {"limit": 256 * MiB},
    "pids": {"limit": 64},
}


def _v1_hierarchies() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        out = []
        for line in f:
            parts = line.split()
            fstype = parts[parts.index("-") + 1]
            if fstype == "cgroup" and os.path.dirname(parts[4]) == CG:
                out.append(os.path.basename(parts[4]))
        return out


@pytest.fixture
def bundle(tmp_path):
    """An OCI bundle: a busybox-static rootfs and the runtime's default spec
    with our command and resources."""
    require(os.geteuid() == 0, "needs root")
    busybox = shutil.which("busybox")
    require(busybox is not None, "needs busybox-static")
    rootfs = tmp_path / "bundle" / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    # Symlinks to /bin/busybox as the container will see it.
    subprocess.run(["chroot", str(rootfs), "/bin/busybox", "--install", "-s", "/bin"], check=True)
    for d in ("proc", "sys", "dev", "tmp"):
        (rootfs / d).mkdir(exist_ok=True)
    require(shutil.which("runc") is not None, "needs runc")
    subprocess.run(["runc", "spec"], cwd=tmp_path / "bundle", check=True)
    config_path = tmp_path / "bundle" / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "while [ ! -e /release ]; do sleep 0.05; done; exit 0"]
    config["root"]["readonly"] = False
    config["linux"]["resources"] = dict(RESOURCES, devices=config["linux"]["resources"]["devices"])
    config_path.write_text(json.dumps(config, indent=1))
    return tmp_path / "bundle", config


@pytest.fixture
def subtree_profile(tmp_path):
    """A profile file: cgroup-subtree with a unique parent name."""
    parent = f"fakefs-runtimes-{uuid.uuid4().hex[:10]}"
    path = tmp_path / "profiles" / "runtimes-subtree.toml"
    path.parent.mkdir()
    path.write_text(f'include = ["cgroup-subtree"]\n[cgroup]\nsubtree = "{parent}"\n')
    yield str(path), parent
    # fakefs run undoes its profile; anything left is a failure, removed here.
    leftovers = [h for h in _v1_hierarchies() + ["unified"] if os.path.isdir(os.path.join(CG, h, parent))]
    for h in leftovers:
        try:
            os.rmdir(os.path.join(CG, h, parent))
        except OSError:
            pass
    assert not leftovers, f"real throwaway cgroups left behind in {leftovers}"


def run_check(runtime: str, bundle_dir, profile: str, parent: str, cid: str, *extra: str,
              legacy_layout: bool = False) -> dict:
    require_root_and_fuse()
    require(shutil.which(runtime) is not None, f"needs {runtime}")
    cmd = [sys.executable, "-m", "fakefs", "run", "--profile", profile, "--",
           sys.executable, CHECK, runtime, str(bundle_dir), cid, parent, *extra]
    if legacy_layout:
        cmd = [sys.executable, CHECK, "--legacy-layout"] + cmd
    env = dict(os.environ, PYTHONPATH=REPO)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, cwd=REPO)
    assert res.returncode == 0, f"rc {res.returncode}\nstdout: {res.stdout[-3000:]}\nstderr: {res.stderr[-3000:]}"
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report.get("pid"), f"container did not start: {report.get('start_error')}"
    return report


def assert_container_on_fake(report: dict, config: dict, parent: str) -> None:
    pid = str(report["pid"])
    running = report["while_running"]
    assert set(running) >= {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "pids"} & set(running)
    assert {"cpu", "memory", "pids", "devices"} <= set(running), running.keys()
    for name, entry in running.items():
        # The container's cgroup is a directory of the fake, holding its pid.
        assert entry["fstype"] == FUSE_SUPER_MAGIC, (name, entry)
        assert pid in entry["procs"].split(), (name, entry["procs"])
    assert_written_values(running)
    # The real hierarchies hold the throwaway parent, never the container.
    for name, view in report["real_while_running"].items():
        assert view == {"parent": True, "container": False}, (name, view)
    assert report["rc"] == 0, report.get("stderr")
    # The runtime removed its cgroups from the fake.
    assert not any(report["after"].values()), report["after"]
    for name, view in report["real_after"].items():
        assert view.get("container") is False, (name, view)


def assert_written_values(running: dict) -> None:
    # Exactly the values of config.json, as the runtime wrote them.
    assert running["cpu"]["cpu.shares"] == "512\n"
    assert running["cpu"]["cpu.cfs_period_us"] == "100000\n"
    assert running["cpu"]["cpu.cfs_quota_us"] == "50000\n"
    assert running["memory"]["memory.limit_in_bytes"] == f"{256 * MiB}\n"
    assert running["pids"]["pids.max"] == "64\n"
    # Default spec: deny all, then allow the standard character devices.
    devices = running["devices"]["devices.list"].splitlines()
    assert "a *:* rwm" not in devices and "c 1:3 rwm" in devices and "c 136:* rwm" in devices, devices
    # cpuset: the runtime copied the parent's (all online CPUs) into the fake.
    with open("/sys/devices/system/cpu/online") as f:
        online = f.read()
    if "cpuset" in running:
        assert running["cpuset"]["cpuset.cpus"] == online


def test_runc_runs_on_fake_subtree(bundle, subtree_profile):
    bundle_dir, config = bundle
    profile, parent = subtree_profile
    cid = f"fakefs-runc-{uuid.uuid4().hex[:8]}"
    config["linux"]["cgroupsPath"] = f"/{parent}/{cid}"
    (bundle_dir / "config.json").write_text(json.dumps(config))
    report = run_check("runc", bundle_dir, profile, parent, cid)
    # runc joins the hybrid cgroup2 hierarchy too: that is served by the fake as well.
    if os.path.ismount(os.path.join(CG, "unified")):
        assert "unified" in report["while_running"]
    assert_container_on_fake(report, config, parent)


def test_runc_ps_and_events_read_the_fake(bundle, subtree_profile):
    bundle_dir, config = bundle
    profile, parent = subtree_profile
    cid = f"fakefs-runc-{uuid.uuid4().hex[:8]}"
    config["linux"]["cgroupsPath"] = f"/{parent}/{cid}"
    (bundle_dir / "config.json").write_text(json.dumps(config))
    report = run_check("runc", bundle_dir, profile, parent, cid, "--stats")
    assert report["rc"] == 0, report.get("stderr")
    # runc ps lists the processes of the container's cgroup.procs (the fake's).
    ps = report["ps"]
    assert ps["rc"] == 0, ps["err"]
    header, *rows = ps["out"].splitlines()
    pid_col = header.split().index("PID")
    assert str(report["pid"]) in [r.split()[pid_col] for r in rows], ps["out"]
    # runc events --stats: the limits can only have come from the fake files.
    ev = report["events"]
    assert ev["rc"] == 0, ev["err"]
    data = ev["json"]["data"]
    assert data["memory"]["usage"]["limit"] == 256 * MiB
    assert data["pids"]["limit"] == 64
    assert data["pids"]["current"] >= 1
    assert report["while_running"]["pids"]["procs"].split()


def test_crun_runs_on_fake_subtree(bundle, subtree_profile):
    """crun 1.8.1 refuses a hybrid host whose cgroup2 has controllers (here:
    hugetlb), fakefs or not ("cgroups in hybrid mode not supported"): it runs
    in a namespace with the v1 hierarchies only (a private tmpfs, so nothing
    lands in the host's /sys/fs/cgroup tmpfs)."""
    bundle_dir, config = bundle
    profile, parent = subtree_profile
    cid = f"fakefs-crun-{uuid.uuid4().hex[:8]}"
    config["linux"]["cgroupsPath"] = f"/{parent}/{cid}"
    (bundle_dir / "config.json").write_text(json.dumps(config))
    report = run_check("crun", bundle_dir, profile, parent, cid, legacy_layout=True)
    assert "unified" not in report["hierarchies"]
    assert_container_on_fake(report, config, parent)


def test_runc_runs_on_the_full_fake_tree(bundle):
    """cgroup-v1-fake: every v1 hierarchy runc finds in mountinfo (at the
    mount points announced there, cpu and cpuacct apart on this host) is
    fakefs; the hybrid cgroup2 mount stays authentic, so runc makes and
    removes its (real, throwaway) cgroup there. Limits, membership, ``runc
    ps`` and ``runc events`` all come from the fake.

    Two things differ from a subtree: the cgroupsPath has one level, because
    runc creates cpuset parents only while statfs says cgroupfs (a FUSE
    directory stops that walk, so /a/b would need /a made first); and the
    container gets no /sys/fs/cgroup of its own, because runc binds the
    paths /proc/self/cgroup names there, which are the kernel's and not
    cgroups of the fake."""
    bundle_dir, config = bundle
    cid = f"fakefs-runc-{uuid.uuid4().hex[:8]}"
    config["linux"]["cgroupsPath"] = f"/{cid}"
    config["mounts"] = [m for m in config["mounts"] if m["type"] != "cgroup"]
    (bundle_dir / "config.json").write_text(json.dumps(config))
    unified = os.path.join(CG, "unified", cid)
    try:
        report = run_check("runc", bundle_dir, "cgroup-v1-fake", "", cid, "--stats", "--announced")
    finally:
        leftover = os.path.isdir(unified)
        if leftover:
            os.rmdir(unified)
    assert not leftover, f"runc left its real cgroup {unified}"
    pid = str(report["pid"])
    running = report["while_running"]
    assert set(running) == set(report["hierarchies"]) >= {"cpu", "cpuacct", "memory", "pids", "devices", "systemd"}
    for name, entry in running.items():
        authentic = name == "unified" and entry["fstype"] == CGROUP2_SUPER_MAGIC
        assert authentic or entry["fstype"] == FUSE_SUPER_MAGIC, (name, entry)
        assert pid in entry["procs"].split(), (name, entry["procs"])
        # The kernel's hierarchies never saw the container, but for cgroup2.
        assert report["real_while_running"][name]["container"] is authentic, (name, report["real_while_running"])
    assert_written_values(running)
    assert report["rc"] == 0, report.get("stderr")
    ps = report["ps"]
    assert ps["rc"] == 0, ps["err"]
    assert pid in ps["out"].split(), ps["out"]
    data = report["events"]["json"]["data"]
    assert data["memory"]["usage"]["limit"] == 256 * MiB and data["pids"]["limit"] == 64
    assert not any(report["after"].values()), report["after"]
    assert not any(view.get("container") for view in report["real_after"].values()), report["real_after"]
