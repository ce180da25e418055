"""The headline commands, typed as the README shows them, inside a real
gVisor sandbox:

* ``fakefs mount /sys/fs/cgroup`` (no private namespace made first, no
  --in-place) mounts, a cgroup made there takes a limit and reads it back as
  the kernel shows it, and ``fakefs umount`` removes it all;
* ``fakefs run --limit ... -- CMD``: gVisor lists a controller in
  /proc/self/cgroup only once a hierarchy of it is mounted, and CMD would
  sit at its root; node and a runtime that discovers hierarchies through
  mountinfo still see the limits.
"""

from __future__ import annotations

import json
import os
import sys

from tests.support import REPO

import pytest

from tests.gvisor.sandbox import runsc_do

pytestmark = pytest.mark.gvisor

# Runs inside the sandbox; `fakefs` is found on PATH as a shell finds it.
DRIVER = r"""
import json, os, subprocess, sys
env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
def fakefs(*args):
    res = subprocess.run(["fakefs", *args], capture_output=True, text=True, env=env, timeout=60)
    return {"rc": res.returncode, "out": res.stdout, "err": res.stderr}
def mounted():
    with open("/proc/self/mountinfo") as f:
        return [line.split(" - ")[1].split()[0] for line in f if line.split()[4] == "/sys/fs/cgroup"]
r = {"before": sorted(os.listdir("/sys/fs/cgroup")), "mount": fakefs("mount", "/sys/fs/cgroup")}
try:
    r["fstypes"] = mounted()
    cg = "/sys/fs/cgroup/memory/fakefs-gvisor"
    os.mkdir(cg)
    fd = os.open(cg + "/memory.limit_in_bytes", os.O_WRONLY)
    os.write(fd, b"256M")
    os.close(fd)
    with open(cg + "/memory.limit_in_bytes") as f:
        r["limit"] = f.read()
    os.rmdir(cg)
finally:
    r["umount"] = fakefs("umount", "/sys/fs/cgroup")
    r["after"] = mounted()
print(json.dumps(r))
"""


def test_fakefs_mount_sys_fs_cgroup_as_typed():
    res = runsc_do(sys.executable, "-c", DRIVER)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    assert lines, f"rc {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    r = json.loads(lines[-1])
    assert r["before"] == []  # gVisor's /sys/fs/cgroup: an empty directory, nothing to hide
    assert r["mount"]["rc"] == 0 and r["mount"]["err"] == "", r["mount"]
    assert r["fstypes"] == ["fuse"], r
    assert r["limit"] == "268435456\n"
    assert r["umount"]["rc"] == 0 and r["umount"]["out"] == "fakefs: unmounted /sys/fs/cgroup\n", r["umount"]
    assert r["after"] == []


def _typed(*args: str):
    """``fakefs ARGS`` in the sandbox, found on PATH as a shell finds it."""
    path = os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"
    return runsc_do(f"PATH={path}", "fakefs", *args)


def test_run_with_a_memory_limit_in_gvisor():
    res = _typed("run", "--limit", "memory=512M", "--", "node", "-e", "console.log(process.constrainedMemory())")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == str(512 << 20)


def test_run_limits_seen_through_mountinfo_in_gvisor():
    script = os.path.join(REPO, "tests", "scripts", "limits_by_mountinfo.py")
    res = _typed("run", "--limit", "cpus=1.5", "--limit", "memory=1.5G", "--limit", "pids=64", "--",
                 sys.executable, script)
    assert res.returncode == 0, res.stdout + res.stderr
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen["cpuQuota"] == 1.5 and seen["memoryLimit"] == str(3 << 29) and seen["pidsMax"] == "64", seen
    assert all(seen["paths"][c].startswith("/fakefs-run-") for c in ("cpu", "memory", "pids")), seen
