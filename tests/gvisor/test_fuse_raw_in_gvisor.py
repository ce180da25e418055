"""fakefs inside a real gVisor sandbox (``runsc --network=none do``), where
pyfuse3 refuses the kernel's INIT and the raw /dev/fuse backend serves.

Each test runs one script inside the sandbox (the host root filesystem,
copy-on-write: nothing it mounts or writes reaches the host) and asserts on
the JSON report it prints. Every sandbox run is bounded by a timeout and
killed as a whole process group when it overruns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.gvisor.sandbox import runsc_do

pytestmark = pytest.mark.gvisor

HERE = os.path.dirname(os.path.abspath(__file__))


def report_of(res: subprocess.CompletedProcess) -> dict:
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report (rc {res.returncode})\nstdout: {res.stdout}\nstderr: {res.stderr}"
    return json.loads(lines[-1])


def test_auto_mount_picks_fuse_raw_and_serves_the_tree_faithfully():
    res = runsc_do(sys.executable, os.path.join(HERE, "sandbox_cgroup_check.py"))
    r = report_of(res)
    assert r["mount"]["rc"] == 0, r["mount"]
    assert r["errors"] == [], r
    # auto tried pyfuse3 first, and said why it passed it over
    assert "backend fuse passed over" in r["daemon_log"] and "INIT" in r["daemon_log"]
    [record] = [m for m in r["status"]["mounts"] if m["target"] == "/sys/fs/cgroup"]
    assert (record["backend"], record["tree"], record["state"]) == ("fuse-raw", "cgroup", "running")
    [fields] = r["mountinfo"]
    assert fields[fields.index("-") + 1] == "fuse"  # gVisor has no fuse subtypes
    assert {"cpu", "cpu,cpuacct", "memory", "pids", "devices", "systemd"} <= set(r["top"])

    # mkdir: the control files are there when mkdir returns
    assert {"cgroup.procs", "tasks", "memory.limit_in_bytes", "memory.stat"} <= set(r["child_files"])
    assert "release_agent" not in r["child_files"]
    assert r["child_limit"] == "9223372036854771712\n"

    # the kernel's errnos travel through gVisor's FUSE client unchanged
    assert r["errnos"] == {
        "limit_abc": "EINVAL", "mkdir_bad_name": "EINVAL", "mkdir_exists": "EEXIST",
        "unlink_control_file": "EPERM", "create_file": "EACCES", "missing": "ENOENT",
        "root_cpu_shares": "EINVAL", "cpu_stat_write": "EINVAL", "rmdir_busy": "EBUSY",
    }
    assert r["limit_write"] == 3 and r["limit_after"] == "67108864\n"

    # gVisor cuts reads at st_size: sizes must be exact, and whole reads match
    for rel, (st_size, read_len) in r["sizes"].items():
        assert st_size == read_len > 0, rel
    assert r["cpu_shares"] == "1024\n"
    # an open file reads one snapshot to its end while the value changes
    assert r["snapshot"] == "100000\n" and r["after_snapshot"] == "2000\n"
    # a directory listing spanning many READDIR batches: nothing lost or doubled
    assert r["many"]["missing"] == [] and r["many"]["duplicates"] == 0 and r["many"]["count"] >= 150
    assert r["procs"] == [r["self_pid"]]
    assert r["removed"]

    # fakefs umount stops the daemon and the mount is gone
    assert r["umount"]["rc"] == 0 and not r["mounted_after"], r["umount"]


def test_kubelet_tunables_check_passes_with_validated_writes():
    res = runsc_do(sys.executable, "-m", "fakefs", "run", "--profile", "kubelet", "--",
                   sys.executable, os.path.join(HERE, "sandbox_kubelet_check.py"))
    assert res.returncode == 0, res.stdout + res.stderr
    r = report_of(res)
    assert r["check_rc"] == 0 and r["check"]["errors"] == [], r["check"]
    assert r["check"]["tunables"]["vm/overcommit_memory"] == [0, 1]
    assert r["check"]["tunables"]["kernel/panic"] == [0, 10]
    assert r["check"]["cap_last_cap"] > 30
    # served live by the raw FUSE backend, not by static files
    backends = {(m["tree"], m["backend"]) for m in r["status"]["mounts"]}
    assert ("overlay", "fuse-raw") in backends
    # writes go through the kernel's sysctl parsers
    assert r["bad_writes"]["panic_on_oom=abc"] == "EINVAL"
    assert r["bad_writes"]["panic_on_oom=3"] == "EINVAL"
    assert r["bad_writes"]["panic=x"] == "EINVAL"
    assert r["bad_writes"]["cap_last_cap"] != "ok"
    assert r["panic_on_oom"] == "0\n"
