"""Debian's cgroup-tools (libcgroup 2.0), unchanged, on the fake tree.

libcgroup finds every hierarchy in /proc/mounts, including the cgroup2
mount of a hybrid host (it reads <mount>/cgroup.controllers there and gives
up with "libcgroup initialization failed" when it cannot), then works by
path below the mount points. Under ``fakefs run --profile cgroup-v1-fake``
what it creates, sets, reads, lists, joins and deletes lives in fakefs;
its refusals are the kernel's (compared with a real throwaway cgroup).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.support import REPO, require, require_root_and_fuse

pytestmark = pytest.mark.fuse
CG = "/sys/fs/cgroup"
FUSE_SUPER_MAGIC = "65735546"
TOOLS = ("cgcreate", "cgset", "cgget", "lscgroup", "cgexec", "cgdelete")


def require_tools() -> None:
    require_root_and_fuse()
    missing = [t for t in TOOLS if shutil.which(t) is None]
    require(not missing, f"needs Debian's cgroup-tools ({', '.join(missing)} missing)")
    require(os.path.isdir(os.path.join(CG, "memory")), "needs the real cgroup v1 memory hierarchy")


def run_in(profile: str, script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fakefs", "run", "--profile", profile, "--", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO))


def sections(stdout: str) -> dict[str, list[str]]:
    """Output split at lines ``== NAME``."""
    out: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("== "):
            current = line[3:]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


HIERARCHIES = ("memory", "cpu", "cpuacct", "pids")


def tools_script(name: str) -> str:
    """What an administrator does with cgroup-tools, minus cgexec; every
    step's output in a section. Safe on the real hierarchies: it makes and
    removes one child cgroup without processes."""
    return f"""
echo "== create"; cgcreate -g memory,cpu,cpuacct,pids:/{name}; echo "rc $?"
echo "== set"; cgset -r memory.limit_in_bytes=256M {name}; echo "rc $?"
cgset -r cpu.shares=512 -r pids.max=64 {name}; echo "rc $?"
echo "== file"; cat {CG}/memory/{name}/memory.limit_in_bytes {CG}/cpu/{name}/cpu.shares {CG}/pids/{name}/pids.max
echo "== get"; cgget -n -v -r memory.limit_in_bytes -r cpu.shares -r pids.max {name}; echo "rc $?"
echo "== get all"; all=$(cgget -g cpuacct {name}); echo "rc $?"; echo "$all" | cut -d: -f1 | grep '^cpuacct'
echo "== invalid swappiness"; cgset -r memory.swappiness=300 {name} 2>&1; echo "rc $?"
echo "== invalid pids"; cgset -r pids.max=lots {name} 2>&1; echo "rc $?"
echo "== after invalid"; cat {CG}/memory/{name}/memory.swappiness {CG}/pids/{name}/pids.max
echo "== list"; lscgroup | grep -F "/{name}"
echo "== delete"; cgdelete -g memory,cpu,cpuacct,pids:/{name}; echo "rc $?"
for h in {" ".join(HIERARCHIES)}; do test -e {CG}/$h/{name} && echo "left in $h"; done
for h in {" ".join(HIERARCHIES)}; do test -e {CG}/$h/{name} && cgdelete -g $h:/{name} && echo "deleted $h"; done
echo "== end"
"""


def test_cgroup_tools_on_the_fake_tree():
    """The same cgroup-tools session against the kernel (real throwaway
    cgroups) and under cgroup-v1-fake gives the same output; there, what it
    made is in fakefs. Then cgexec on the fake."""
    require_tools()
    name = f"fakefs-cgt-{uuid.uuid4().hex[:8]}"
    script = tools_script(name)
    try:
        kernel = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        for h in HIERARCHIES:
            if os.path.isdir(os.path.join(CG, h, name)):
                os.rmdir(os.path.join(CG, h, name))
    assert kernel.returncode == 0 and "initialization failed" not in kernel.stdout + kernel.stderr, kernel
    fake_only = f"""
cgcreate -g memory,cpu,cpuacct,pids:/{name}-x
echo "== fstype"; for h in {" ".join(HIERARCHIES)}; do stat -f -c "$h %t" {CG}/$h/{name}-x; done
echo "== exec"; cgexec -g memory,cpu,pids:{name}-x sh -c 'echo "self $$"; cat {CG}/memory/{name}-x/cgroup.procs {CG}/cpu/{name}-x/cgroup.procs {CG}/pids/{name}-x/cgroup.procs'; echo "rc $?"
echo "== after exec"; cat {CG}/memory/{name}-x/cgroup.procs
"""
    res = run_in("cgroup-v1-fake", script + fake_only)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "initialization failed" not in res.stdout + res.stderr, res.stdout + res.stderr
    out, want = sections(res.stdout), sections(kernel.stdout)
    for section in want:
        assert out[section] == want[section], (section, out[section], want[section])
    # What the kernel answered, spelled out (the comparison above holds it).
    assert want["create"] == ["rc 0"] and want["set"] == ["rc 0", "rc 0"]
    assert want["get"] == [str(256 << 20), "512", "64", "rc 0"]
    assert "Invalid argument" in want["invalid swappiness"][0] and want["invalid swappiness"][-1] != "rc 0"
    assert "Invalid argument" in want["invalid pids"][0] and want["invalid pids"][-1] != "rc 0"
    assert want["after invalid"] == ["60", "64"]
    assert sorted(want["list"]) == sorted(f"{h}:/{name}" for h in HIERARCHIES)
    assert want["get all"][0] == "rc 0" and "cpuacct.usage" in want["get all"]  # in kernfs's order
    # Under the fake: made in fakefs, never in the real hierarchies.
    assert out["fstype"] == [f"{h} {FUSE_SUPER_MAGIC}" for h in HIERARCHIES]
    exec_lines = out["exec"]
    assert exec_lines[-1] == "rc 0", exec_lines
    me = exec_lines[0].removeprefix("self ")
    # The process cgexec started is in the fake cgroup.procs of each hierarchy.
    assert exec_lines[1:-1].count(me) == 3, exec_lines
    assert out["after exec"] == []  # it exited: gone from the list, as in the kernel
    assert not any(os.path.exists(os.path.join(CG, h, n)) for h in HIERARCHIES for n in (name, f"{name}-x"))


def test_lscgroup_under_the_authentic_first_profile():
    """cgroup-v1 keeps this host's hierarchies and its cgroup2 mount, adds
    what it can mount: lscgroup lists them, a real cgroup among them."""
    require_tools()
    name = f"fakefs-lscg-{uuid.uuid4().hex[:8]}"
    real = os.path.join(CG, "pids", name)
    os.mkdir(real)
    try:
        res = run_in("cgroup-v1", "lscgroup; echo rc $?")
    finally:
        os.rmdir(real)
    assert res.returncode == 0 and "initialization failed" not in res.stdout + res.stderr, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1] == "rc 0"
    assert f"pids:/{name}" in lines
    with open("/proc/self/mountinfo") as f:
        v1 = [line.split(" - ")[1].split()[2].split(",") for line in f if line.split(" - ")[1].startswith("cgroup ")
              and os.path.dirname(line.split()[4]) == CG]
    for options in v1:
        controllers = [o for o in options if o not in ("rw", "ro") and "=" not in o]
        if controllers:
            assert f"{','.join(controllers)}:/" in lines, (controllers, lines)
