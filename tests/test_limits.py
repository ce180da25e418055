"""``fakefs run --limit``: node (Debian's nodejs) sees the same cgroup v1
limits under fakefs as inside a real throwaway cgroup given those limits.

The real side: a fakefs-limits-<rand> child of this process's own memory
cgroup (never anywhere else: processes only ever move *down* into it) and
one under the cpu hierarchy, with the limits written to them, and a fresh
node moved into both before it starts. The fake side: ``fakefs run`` with
the same limits, node left in this process's real cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from tests.support import FAKEFS, REPO, fakefs, require, require_root_and_fuse, wait_for

NODE = "/usr/bin/node"
SCRIPT = os.path.join(REPO, "tests", "scripts", "cgroup_limits.js")
REAL = "/sys/fs/cgroup"
MEMORY_512M = str(512 << 20)


def _own_path(controller: str) -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return path
    raise LookupError(controller)


def _needs_real_v1():
    require_root_and_fuse()
    require(os.access(NODE, os.X_OK), "needs Debian's nodejs at /usr/bin/node")
    require(os.path.exists(f"{REAL}/memory/cgroup.procs") and os.path.exists(f"{REAL}/cpu/cpu.cfs_quota_us"),
            "needs this host's real cgroup v1 memory and cpu hierarchies")


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@contextlib.contextmanager
def real_children(memory: str | None = None, cpu_quota: int | None = None):
    """Throwaway real cgroups: {"memory": dir, "cpu": dir}, removed after
    (waiting for their processes to be gone)."""
    name = f"fakefs-limits-{secrets.token_hex(4)}"
    dirs = {"memory": os.path.join(REAL, "memory", _own_path("memory").lstrip("/"), name),
            "cpu": os.path.join(REAL, "cpu", _own_path("cpu").lstrip("/"), name)}
    made = []
    try:
        for d in dirs.values():
            os.mkdir(d)
            made.append(d)
        if memory is not None:
            _write(os.path.join(dirs["memory"], "memory.limit_in_bytes"), memory)
        if cpu_quota is not None:
            _write(os.path.join(dirs["cpu"], "cpu.cfs_period_us"), "100000")
            _write(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), str(cpu_quota))
        yield dirs
    finally:
        for d in reversed(made):
            deadline = time.monotonic() + 10
            while True:
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def _join(*dirs: str):
    """preexec_fn: the fresh child moves itself down into ``dirs``."""
    def move():
        for d in dirs:
            _write(os.path.join(d, "cgroup.procs"), str(os.getpid()))
    return move


def _node_in_real(dirs, *which: str) -> dict:
    out = subprocess.run([NODE, SCRIPT], capture_output=True, text=True, timeout=30,
                         preexec_fn=_join(*(dirs[w] for w in which)))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _node_under_fakefs(*args: str, preexec_fn=None) -> tuple[dict, str]:
    res = fakefs("run", *args, "--", NODE, SCRIPT, timeout=60, preexec_fn=preexec_fn)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


def test_node_sees_the_same_limits_as_in_a_real_cgroup():
    _needs_real_v1()
    with real_children(memory=MEMORY_512M, cpu_quota=150000) as dirs:
        real = _node_in_real(dirs, "memory", "cpu")
    fake, err = _node_under_fakefs("--limit", "memory=512M", "--limit", "cpus=1.5")
    without, _ = _node_under_fakefs("--profile", "cgroup-v1-fake")
    # node 20 = libuv 1.46: constrainedMemory is min(limit, soft limit) at
    # the memory path; availableParallelism is the affinity count only.
    assert real["constrainedMemory"] == MEMORY_512M
    assert fake["constrainedMemory"] == real["constrainedMemory"]
    assert fake["availableParallelism"] == real["availableParallelism"]
    assert without["constrainedMemory"] != MEMORY_512M  # the limit is what fakefs run set
    # Also where this process sits in the root cpu cgroup (which keeps no
    # quota in cgroup v1): node runs in a fresh real child, shown with it.
    assert fake["cpuQuota"] == 1.5 and err == ""


def test_cpu_quota_by_path_matches_a_real_cgroup():
    """The quota, read by path like libuv >= 1.49 does, from a command that
    is in a (plain, unlimited) real cpu child: fakefs shows 1.5 CPUs there
    exactly as a real child with quota 150000/100000 does."""
    _needs_real_v1()
    with real_children(cpu_quota=150000) as limited:
        real = _node_in_real(limited, "cpu")
    with real_children() as plain:
        fake, err = _node_under_fakefs("--limit", "cpus=1.5", "--limit", "memory=512M",
                                       preexec_fn=_join(plain["cpu"]))
        with open(os.path.join(plain["cpu"], "cpu.cfs_quota_us")) as f:
            assert f.read() == "-1\n"  # the real cgroup was never limited
    assert real["cpuQuota"] == 1.5
    assert fake["cpuQuota"] == real["cpuQuota"]
    assert fake["constrainedMemory"] == MEMORY_512M
    assert err == ""


def test_profile_limits_and_membership(tmp_path):
    _needs_real_v1()
    prof = tmp_path / "limited.toml"
    prof.write_text('include = ["cgroup-v1-fake"]\n[limits]\nmemory = "256M"\n')
    fake, _ = _node_under_fakefs("--profile", str(prof))
    assert fake["constrainedMemory"] == str(256 << 20)
    # The command is in its own fake cgroup: the fake lists it there.
    mem = _own_path("memory").lstrip("/")
    res = fakefs("run", "--limit", "memory=64M", "--", "sh", "-c",
                 f'cat /sys/fs/cgroup/memory/{mem}/cgroup.procs; echo self $$;'
                 f' cat /sys/fs/cgroup/memory/{mem}/memory.limit_in_bytes', timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines[lines.index("self") + 1] in lines[:lines.index("self")]
    assert lines[-1] == str(64 << 20)


@pytest.mark.parametrize("spec, message", [
    ("memory=abc", "not a size"),
    ("memory=1.5.5G", "not a size"),
    ("memory=12X", "not a size"),
    ("memory", "expected KEY=VALUE"),
    ("memory=4095", "below one page"),
    ("memory=0", "below one page"),
    ("cpus=0.001", "must be between"),
    ("cpus=x", "not a number"),
    ("pids=0", "whole number"),
    ("pids=1.5", "whole number"),
    ("swap=1G", "unknown limit"),
])
def test_bad_limits_are_one_line_errors(spec, message):
    res = fakefs("run", "--limit", spec, "--", "true")
    assert res.returncode == 125  # fakefs itself failed: docker's status
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("written, size", [
    ("536870912", 512 << 20), ("512m", 512 << 20), ("512M", 512 << 20), ("512MiB", 512 << 20),
    ("512mb", 512 << 20), ("512 MB", 512 << 20), ("1.5G", 3 << 29), ("1.5g", 3 << 29), ("1g", 1 << 30),
    ("64k", 64 << 10), ("4096", 4096), ("4096b", 4096), ("2T", 2 << 40),
])
def test_memory_sizes_as_docker_writes_them(written, size):
    from fakefs.manager.limits import parse_limit

    assert parse_limit(f"memory={written}") == ("memory", str(size))


def test_pids_and_cpus_limits_parse():
    from fakefs.manager.limits import parse_limits

    assert parse_limits(["pids=64", "cpus=1.5"]) == {"pids": "64", "cpus": "150000"}


def test_limits_seen_through_mountinfo_discovery_also_at_the_root():
    """A runtime that finds its hierarchies through mountinfo (fstype cgroup,
    shadowed entries included) and reads the files at the /proc/self/cgroup
    path sees every limit, whether this process sits at a root cgroup or not;
    the real child cgroups fakefs made for it are gone afterwards."""
    _needs_real_v1()
    script = os.path.join(REPO, "tests", "scripts", "limits_by_mountinfo.py")
    res = fakefs("run", "--limit", "cpus=1.5", "--limit", "memory=1.5G", "--limit", "pids=64", "--",
                 sys.executable, script, timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    seen = json.loads(res.stdout)
    assert seen["cpuQuota"] == 1.5 and seen["memoryLimit"] == str(3 << 29) and seen["pidsMax"] == "64"
    for key in ("cpu", "pids", "memory"):
        if _own_path(key) == "/":
            child = seen["paths"][key]
            assert child.startswith("/fakefs-run-"), seen
            assert not os.path.exists(os.path.join(REAL, key, child.lstrip("/")))


def test_the_real_child_cgroups_hold_the_command_and_no_limit(tmp_path):
    """While the command runs: it is a member of the real child cgroup
    fakefs made, whose limits stay the kernel's defaults (never written)."""
    _needs_real_v1()
    require(_own_path("cpu") == "/", "this process is not at the root cpu cgroup here")
    fifo, seen = tmp_path / "go", tmp_path / "seen"
    os.mkfifo(fifo)
    proc = subprocess.Popen([*FAKEFS, "run", "--limit", "cpus=0.5", "--", "sh", "-c",
                             f"echo $$ > {seen}.tmp; cat /proc/self/cgroup >> {seen}.tmp; mv {seen}.tmp {seen}; "
                             f"read x < {fifo}"], env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(seen.exists, 30), proc.stderr.read() if proc.poll() is not None else "no report"
        pid, *lines = seen.read_text().split()
        cpu_path = next(line.split(":", 2)[2] for line in lines if line.split(":")[1] == "cpu")
        real = os.path.join(REAL, "cpu", cpu_path.lstrip("/"))
        with open(os.path.join(real, "cgroup.procs")) as f:
            assert pid in f.read().split()
        with open(os.path.join(real, "cpu.cfs_quota_us")) as f:
            assert f.read() == "-1\n"
    finally:
        with open(fifo, "w") as f:
            f.write("go\n")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not os.path.exists(real)


def test_a_limit_on_an_authentic_hierarchy_is_refused():
    _needs_real_v1()
    res = fakefs("run", "--profile", "cgroup-v1", "--limit", "memory=1G", "--", "true", timeout=60)
    assert res.returncode == 125
    assert "not a fakefs hierarchy" in res.stderr
    with open(os.path.join(REAL, "memory", _own_path("memory").lstrip("/"), "memory.limit_in_bytes")) as f:
        assert f.read() != str(1 << 30) + "\n"
