"""End to end inside a real gVisor sandbox (`runsc --network=none do`, the
host's root filesystem read-only under a writable overlay, so the venv made
here is usable there): the probe's verdicts, the tmpfs backend's tree, the
kubelet tunables check under `fakefs run`, and how far runc 1.1 gets, checked
against the probe's prediction."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from fakefs.probe import DEFAULT_TIMING
from tests.gvisor.sandbox import runsc_do
from tests.support import REPO, require
from tests.test_probe import (AMPLE_BUDGET, COUNT_PROBE_MOUNTS, HUNG_FUSE_PROBE, KILLED_FUSE_CHECK,
                              check_killed_fuse_check)

pytestmark = pytest.mark.gvisor
CHECK = os.path.join(REPO, "tests", "scripts", "kubelet_tunables_check.py")


def runsc(tmp_path, script: str) -> subprocess.CompletedProcess:
    """Run a Python script (after PRELUDE) inside the sandbox."""
    path = tmp_path / "driver.py"
    path.write_text(PRELUDE + textwrap.dedent(script))
    os.chmod(tmp_path, 0o755)
    return runsc_do(sys.executable, str(path))


def results(res: subprocess.CompletedProcess) -> dict:
    """The driver prints one JSON object as its last line."""
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


PRELUDE = f"""
import json, os, subprocess, sys, time
sys.path.insert(0, {REPO!r})
def fakefs(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fakefs", *args], capture_output=True, text=True,
                          timeout=timeout, cwd={REPO!r})
def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()
"""


def test_probe_in_gvisor(tmp_path):
    """Twice: with the default budget (done in under 5 s; on a loaded
    machine a check may run out, and say so), then with time to spare
    (every verdict what CONTEXT.md measured). Afterwards the sandbox's
    mountinfo still reads at once: the probe left no FUSE mount behind."""
    out = results(runsc(tmp_path, f"""
        runs = []
        for budget in ([], ["--budget", {AMPLE_BUDGET!r}]):
            started = time.monotonic()
            res = fakefs("probe", "--json", *budget)
            runs.append({{"code": res.returncode, "took": time.monotonic() - started, "stderr": res.stderr,
                         "report": json.loads(res.stdout)}})
        # A fresh process, as any other in the sandbox: mountinfo reads at once.
        left = subprocess.run([sys.executable, "-c", {COUNT_PROBE_MOUNTS!r}], capture_output=True, text=True,
                              timeout=10).stdout
        print(json.dumps({{"runs": runs, "left": int(left)}}))
    """))
    quick, ample = out["runs"]
    assert quick["took"] < 5 and quick["stderr"] == "", quick
    assert ample["stderr"] == ""
    for checks in (quick["report"]["checks"], ample["report"]["checks"]):
        expected_in_gvisor(checks, allow_timed_out=checks is quick["report"]["checks"])
    report, checks = ample["report"], ample["report"]["checks"]
    assert ample["code"] == 0
    assert report["gvisor"] is True
    backends = {b["name"]: b for b in report["backends"]}
    assert not backends["fuse"]["usable"] and backends["tmpfs"]["usable"]
    assert report["auto_backend"] != "fuse"
    assert report["consumers"]["kubelet"]["runs"] is True
    assert report["consumers"]["runc"]["first_blocker"]["error"] == "mountpoint for devices not found"
    assert out["left"] == 0


def expected_in_gvisor(checks: dict, allow_timed_out: bool) -> None:
    """What CONTEXT.md measured there; with ``allow_timed_out``, a check may
    instead have run out of time (a loaded machine), and say so."""
    expected = {
        "gvisor": lambda c: c["ok"] is True,
        "dev_fuse": lambda c: c["ok"] is True,
        "fuse_pyfuse3": lambda c: c["ok"] is False and "refused at INIT" in c["reason"]
        and "Kernel too old" in c["reason"],
        "fuse_raw": lambda c: c["ok"] is True,
        "tmpfs_mount": lambda c: c["ok"] is True,
        "tmpfs_backend": lambda c: c["ok"] is True,
        "openat2": lambda c: c["ok"] is False,
        "dev_kmsg": lambda c: c["ok"] is False,
        "sysctl:kernel/cap_last_cap": lambda c: c["ok"] is False,
        "cgroup_v1:memory": lambda c: c["detail"]["state"] == "mountable",
        "cgroup_v1:devices": lambda c: c["detail"]["state"] == "missing",
        "mntns_unshare": lambda c: c["ok"] is True,
        "mntns_private": lambda c: c["ok"] is False,
    }
    for key, right in expected.items():
        c = checks[key]
        ran_out = c["ok"] is None and ("timed out after" in c["reason"] or "could not be read in time" in c["reason"])
        assert right(c) or (allow_timed_out and ran_out), (key, c)


def test_probe_ends_within_budget_when_checks_hang_in_gvisor():
    """test_probe.py's test, in gVisor: there a FUSE mount nobody answers
    also makes every read of mountinfo hang, so the cgroup checks cannot be
    asked either, and say so."""
    res = runsc_do(sys.executable, "-c", HUNG_FUSE_PROBE)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    report, checks = out["report"], out["report"]["checks"]
    assert out["took"] < 5 and report["elapsed_s"] < DEFAULT_TIMING.budget, (out["took"], report["elapsed_s"])
    assert "Traceback" not in out["stderr"], out["stderr"]
    for key in ("sysctl:vm/overcommit_memory", "sysctl:vm/panic_on_oom", "fuse_pyfuse3", "fuse_raw", "tmpfs_mount",
                "bind_mount_dir", "bind_mount_file", "cgroup_layout"):
        c = checks[key]
        assert c["ok"] is None and c["reason"].startswith("timed out after") and c["detail"]["killed"], (key, c)
    assert checks["cgroup_v1:memory"] == {"ok": None, "reason": "/proc/self/mountinfo could not be read in time"}
    assert checks["gvisor"]["ok"] is True and checks["openat2"]["ok"] is False
    assert report["auto_backend"] is None and out["code"] == 1
    assert out["left"] == [] and out["orphans"] >= 0


def test_a_check_killed_with_its_fuse_mount_live_leaves_nothing_in_gvisor():
    res = runsc_do(sys.executable, "-c", KILLED_FUSE_CHECK, COUNT_PROBE_MOUNTS)
    assert res.returncode == 0, res.stdout + res.stderr
    check_killed_fuse_check(json.loads(res.stdout.strip().splitlines()[-1]))


def test_tmpfs_tree_at_sys_fs_cgroup_in_gvisor(tmp_path):
    out = results(runsc(tmp_path, """
        from fakefs.host.sysmount import unshare_mount_namespace
        from fakefs.runtime.serving import MountRequest, build_tree
        unshare_mount_namespace()  # gVisor refuses the propagation change; the namespace is still new
        out = {}
        res = fakefs("mount", "/sys/fs/cgroup", "--backend", "tmpfs")
        out["mount"] = [res.returncode, res.stderr]
        out["status"] = json.loads(fakefs("status", "--json").stdout)["mounts"]
        # Python file operations (coreutils ls fails there for other reasons).
        root = build_tree(MountRequest(target="/sys/fs/cgroup")).root
        missing = []
        for name, node in root.entries():
            if not os.path.lexists(f"/sys/fs/cgroup/{name}"):
                missing.append(name)
            elif os.path.isdir(f"/sys/fs/cgroup/{name}") and not os.path.islink(f"/sys/fs/cgroup/{name}"):
                want = {n for n, _ in node.entries()}
                missing += sorted(want - set(os.listdir(f"/sys/fs/cgroup/{name}")))
        out["missing"] = missing
        out["shares"] = open("/sys/fs/cgroup/cpu/cpu.shares").read()
        os.mkdir("/sys/fs/cgroup/memory/pod1")
        # The watcher writes the new directory's files one by one: wait for
        # all those looked at below, not for the first of them.
        expected = {"memory.limit_in_bytes", "cgroup.procs", "tasks"}
        out["child_filled"] = wait_for(lambda: expected <= set(os.listdir("/sys/fs/cgroup/memory/pod1")))
        out["child_files"] = sorted(os.listdir("/sys/fs/cgroup/memory/pod1"))
        with open("/sys/fs/cgroup/memory/pod1/memory.limit_in_bytes", "w") as f:
            f.write("512M")
        out["limit"] = wait_for(lambda: open("/sys/fs/cgroup/memory/pod1/memory.limit_in_bytes").read() == "536870912\\n")
        res = fakefs("umount", "/sys/fs/cgroup")
        out["umount"] = [res.returncode, res.stdout.strip()]
        out["after"] = os.listdir("/sys/fs/cgroup")
        # auto picks what the probe says it picks.
        probe = json.loads(fakefs("probe", "--json").stdout)
        os.makedirs("/tmp/auto-mnt", exist_ok=True)
        res = fakefs("mount", "/tmp/auto-mnt", "--hierarchy", "pids")
        logs = "".join(open(os.path.join(d, n)).read() for d in [os.environ["FAKEFS_RUN_DIR"]]
                       for n in os.listdir(d) if n.endswith(".log"))
        out["auto"] = [res.returncode, res.stderr + logs, probe["auto_backend"],
                       [m["backend"] for m in json.loads(fakefs("status", "--json").stdout)["mounts"]],
                       probe["backends"]]
        fakefs("umount", "/tmp/auto-mnt")
        print(json.dumps(out))
    """))
    assert out["mount"] == [0, ""]
    assert out["status"][0]["backend"] == "tmpfs" and out["status"][0]["state"] == "running"
    assert out["missing"] == []
    assert out["shares"] == "1024\n"
    assert out["child_filled"] and {"memory.limit_in_bytes", "cgroup.procs", "tasks"} <= set(out["child_files"])
    assert out["limit"] is True
    assert out["umount"] == [0, "fakefs: unmounted /sys/fs/cgroup"] and out["after"] == []
    code, stderr, predicted, backends, verdicts = out["auto"]
    assert code == 0, stderr
    # On a loaded machine a probe handshake can time out ("timed out after"):
    # then auto may legitimately pick that earlier backend; otherwise they agree.
    timed_out = [b["name"] for b in verdicts if not b["usable"] and b["reason"].startswith("timed out after")]
    assert backends == [predicted] or backends[0] in timed_out, (backends, verdicts)


def test_kubelet_check_under_fakefs_run_with_tmpfs_in_gvisor(tmp_path):
    out = results(runsc(tmp_path, f"""
        before = fakefs("probe", "--json")
        res = subprocess.run([sys.executable, "-m", "fakefs", "run", "--backend", "tmpfs", "--profile", "kubelet",
                              "--", "python3", {CHECK!r}], capture_output=True, text=True, timeout=120)
        print(json.dumps({{"code": res.returncode, "stdout": res.stdout, "stderr": res.stderr,
                          "cap_before": json.loads(before.stdout)["checks"]["sysctl:kernel/cap_last_cap"]["ok"],
                          "after": os.path.exists("/proc/sys/vm/panic_on_oom")}}))
    """))
    assert out["cap_before"] is False  # really missing in this sandbox
    assert out["code"] == 0, out["stdout"] + out["stderr"]
    report = json.loads(out["stdout"].strip().splitlines()[-1])
    assert report["errors"] == []
    assert report["tunables"]["vm/panic_on_oom"][1] == 0 and report["tunables"]["kernel/panic"][1] == 10
    assert report["tunables"]["vm/overcommit_memory"] == [0, 1]  # gVisor's read-only 0, overridden
    assert isinstance(report["cap_last_cap"], int) and report["kmsg"] is True
    assert out["after"] is False  # fakefs run undid everything


def test_runc_under_fakefs_run_in_gvisor(tmp_path):
    require(shutil.which("runc") is not None, "needs runc (Debian package runc)")
    require(os.path.exists("/bin/busybox"), "needs busybox-static")
    out = results(runsc(tmp_path, """
        import shutil
        bundle = "/tmp/runc-bundle"
        os.makedirs(bundle + "/rootfs/bin")
        shutil.copy("/bin/busybox", bundle + "/rootfs/bin/busybox")
        subprocess.run(["runc", "spec"], cwd=bundle, check=True, timeout=30)
        with open(bundle + "/config.json") as f:
            config = json.load(f)
        config["process"]["terminal"] = False
        config["process"]["args"] = ["/bin/busybox", "true"]
        with open(bundle + "/config.json", "w") as f:
            json.dump(config, f)
        probe = json.loads(fakefs("probe", "--json").stdout)
        runc = ["timeout", "60", "runc", "--root", "/tmp/runc-state", "run", "--bundle", bundle]
        bare = subprocess.run(runc + ["bare"], capture_output=True, text=True, timeout=90)
        under = subprocess.run([sys.executable, "-m", "fakefs", "run", "--backend", "tmpfs", "--profile", "runc",
                                "--"] + runc + ["under"], capture_output=True, text=True, timeout=120)
        print(json.dumps({"predicted": probe["consumers"]["runc"], "bare": [bare.returncode, bare.stderr],
                          "under": [under.returncode, under.stderr]}))
    """))
    predicted = out["predicted"]
    code, stderr = out["under"]
    # How far it gets (recorded in the test output).
    print("runc without fakefs:", out["bare"][1].strip())
    print("runc under fakefs run --profile runc:", stderr.strip())
    assert code != 0, "runc 1.1 is not expected to start a container in gVisor"
    # cap_last_cap was fixed by the overlay; the probe named the error that stops it.
    assert "cap_last_cap" not in stderr
    assert predicted["first_blocker"] is not None
    assert predicted["first_blocker"]["error"] in stderr, (predicted["first_blocker"], stderr)
    assert any(s["what"] == "/proc/sys/kernel/cap_last_cap" and s["fixed_by"] for s in predicted["stops"])
