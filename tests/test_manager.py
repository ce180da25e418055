"""The mount manager on this host, inside the test session's private mount
namespace: profiles applied and removed leave the namespace as it was, the
kubelet check passes under `fakefs run`, real entries keep their values,
and the journal undoes everything after the daemons are killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fakefs.manager.plan import make_plan
from fakefs.manager.profile import ProfileError, load
from tests.support import REPO, fakefs, require_root_and_fuse

pytestmark = pytest.mark.fuse
CHECK = os.path.join(REPO, "tests", "scripts", "kubelet_tunables_check.py")


def mounts() -> set[tuple[str, str, str]]:
    with open("/proc/self/mountinfo") as f:
        out = set()
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            out.add((parts[4], parts[sep + 1], parts[sep + 2]))
        return out


def run_in_new_ns(script: str) -> subprocess.CompletedProcess:
    """Run a shell script in a fresh private namespace (so its mounts vanish)."""
    code = ("import os, subprocess, sys; from fakefs.host.sysmount import unshare_mount_namespace;"
            "unshare_mount_namespace(); sys.exit(subprocess.call(['sh', '-c', sys.argv[1]]))")
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-c", code, script], capture_output=True, text=True, env=env,
                          timeout=120)


def test_profiles_load_and_validate(tmp_path, monkeypatch):
    for name in ("cgroup-v1", "kubelet", "runc", "k3s-worker"):
        prof = load(name)
        assert prof.hierarchies, name
    assert "vm/panic_on_oom" in load("kubelet").procsys_writable
    assert "net/ipv4/ip_forward" in load("k3s-worker").procsys_writable
    monkeypatch.setenv("FAKEFS_PROFILES", str(tmp_path))
    (tmp_path / "bad.toml").write_text('[procsys]\nentries = ["../../etc/passwd"]\n')
    with pytest.raises(ProfileError, match="bad /proc/sys entry"):
        load("bad")
    (tmp_path / "bad2.toml").write_text('[cgroup]\nhierarchies = ["cpu,nope"]\n')
    with pytest.raises(ProfileError, match="unknown cgroup controller"):
        load("bad2")
    (tmp_path / "bad3.toml").write_text('colour = "red"\n')
    with pytest.raises(ProfileError, match="unknown key"):
        load("bad3")
    (tmp_path / "loop.toml").write_text('include = ["loop"]\n')
    with pytest.raises(ProfileError, match="cycle"):
        load("loop")
    with pytest.raises(ProfileError, match="no profile"):
        load("missing")


def test_plan_is_authentic_first_here():
    require_root_and_fuse()
    plan = make_plan(load("kubelet"), "/run/fakefs/stage-test", probe=lambda c, n: (True, "probe"))
    keeps = {s.target for s in plan.steps if s.action == "keep"}
    # This host has every tunable and /dev/kmsg: nothing of those is overlaid.
    assert "/proc/sys/vm/panic_on_oom" in keeps and "/dev/kmsg" in keeps
    assert "/sys/fs/cgroup/memory" in keeps
    assert not any(s.action == "bind" and s.target.startswith("/proc/sys") for s in plan.steps)


def test_dry_run_prints_the_plan_and_changes_nothing():
    require_root_and_fuse()
    before = mounts()
    res = fakefs("apply", "kubelet", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "plan for profile kubelet" in res.stdout and "keep" in res.stdout
    as_json = json.loads(fakefs("apply", "kubelet", "--dry-run", "--json").stdout)
    assert {"action", "target", "why"} <= set(as_json["steps"][0])
    assert mounts() == before


GVISOR_LIKE = """
set -e
export GV=$(mktemp -d /tmp/fakefs-gv-XXXXXX)
# The directory is on the host's /tmp; its tmpfs dies with the namespace.
trap 'umount -l $GV 2>/dev/null; rmdir $GV' EXIT
# Make this namespace look like gVisor's /proc/sys: vm has overcommit_memory
# read-only and no panic_on_oom; kernel has no panic*, no keys/, no cap_last_cap.
mount -t tmpfs none $GV
mkdir $GV/vm $GV/kernel
echo 65530 > $GV/vm/max_map_count
echo 0 > $GV/vm/overcommit_memory && chmod 0444 $GV/vm/overcommit_memory
echo sandbox > $GV/kernel/hostname
mount --bind $GV/vm /proc/sys/vm
mount --bind $GV/kernel /proc/sys/kernel
"""


def test_run_kubelet_profile_in_a_gvisor_like_proc_sys():
    require_root_and_fuse()
    real_cap = open("/proc/sys/kernel/cap_last_cap").read().strip()
    script = GVISOR_LIKE + f"""
{sys.executable} -m fakefs run --profile kubelet -- {sys.executable} {CHECK} > $GV/out.json
cat $GV/out.json
# after run: everything fakefs placed is gone again
test ! -e /proc/sys/vm/panic_on_oom && echo CLEAN
"""
    res = run_in_new_ns(script)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout.splitlines()[0])
    assert report["errors"] == []
    assert report["tunables"]["vm/overcommit_memory"] == [0, 1]  # seeded from the read-only real value
    assert report["tunables"]["kernel/panic"][1] == 10
    assert str(report["cap_last_cap"]) == real_cap
    assert "CLEAN" in res.stdout


def test_real_entries_stay_visible_next_to_synthetic_ones():
    require_root_and_fuse()
    script = GVISOR_LIKE + f"""
{sys.executable} -m fakefs run --profile kubelet -- sh -c '
  cat /proc/sys/vm/max_map_count /proc/sys/kernel/hostname
  ls /proc/sys/vm | tr "\\n" " "; echo
  echo 7 > /proc/sys/vm/max_map_count && cat $GV/vm/max_map_count
  echo 3 > /proc/sys/vm/panic_on_oom || echo REFUSED
  python3 -c "import os
try:
    os.open(\\"/proc/sys/kernel/cap_last_cap\\", os.O_WRONLY)
except OSError as e:
    print(\\"cap_last_cap\\", e.errno)"
'
"""
    res = run_in_new_ns(script)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "65530" and lines[1] == "sandbox"
    assert {"max_map_count", "overcommit_memory", "panic_on_oom"} <= set(lines[2].split())
    assert lines[3] == "7"  # a write to a real entry reaches the real file
    assert "REFUSED" in lines  # panic_on_oom is 0..2, as the kernel's table
    assert "cap_last_cap 13" in lines  # EACCES even for root


def test_apply_then_umount_all_restores_the_namespace():
    require_root_and_fuse()
    script = GVISOR_LIKE + f"""
{sys.executable} -c 'import json; print(json.dumps(sorted(l.split()[4] for l in open("/proc/self/mountinfo"))))' > $GV/before
{sys.executable} -m fakefs apply k3s-worker
test -e /proc/sys/kernel/keys/root_maxkeys
test -e /proc/sys/net/bridge/bridge-nf-call-iptables || true
{sys.executable} -m fakefs apply k3s-worker   # idempotent
# kill -9 every fakefs daemon: the journal still undoes everything
for p in $({sys.executable} -m fakefs status --json | {sys.executable} -c 'import json,sys; print(" ".join(str(m["pid"]) for m in json.load(sys.stdin)["mounts"]))'); do kill -9 $p; done
sleep 0.3
{sys.executable} -m fakefs umount --all
{sys.executable} -c 'import json; print(json.dumps(sorted(l.split()[4] for l in open("/proc/self/mountinfo"))))' > $GV/after
cmp $GV/before $GV/after && echo SAME
"""
    res = run_in_new_ns(script)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "already applied" in res.stdout
    assert "SAME" in res.stdout


def test_run_exits_with_the_commands_status():
    require_root_and_fuse()
    res = fakefs("run", "--", "sh", "-c", "exit 7")
    assert res.returncode == 7
    res = fakefs("run", "--profile", "nope", "--", "true")
    assert res.returncode != 0 and "no profile" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("profile", ["cgroup-v1", "cgroup-v1-fake", "kubelet", "runc", "k3s-worker"])
def test_each_profile_applied_and_removed_leaves_the_namespace_as_it_was(profile):
    require_root_and_fuse()
    snapshot = (f"{sys.executable} -c 'import sys; print(sorted((l.split()[4], l.split()[-3]) "
                f"for l in open(\"/proc/self/mountinfo\")))' > $D/$$")
    script = f"""
set -e
D=$(mktemp -d /tmp/fakefs-ns-XXXXXX)
{snapshot.replace('$$', 'before')}
{sys.executable} -m fakefs apply {profile}
{sys.executable} -c 'import os; print(sorted(os.listdir("/sys/fs/cgroup")))'
cat /sys/fs/cgroup/cpu/cpu.shares
{sys.executable} -m fakefs umount --all
{snapshot.replace('$$', 'after')}
cmp $D/before $D/after && echo SAME
rm -rf $D
"""
    res = run_in_new_ns(script)
    assert res.returncode == 0, res.stdout + res.stderr
    listing = eval(res.stdout.splitlines()[1])  # the hierarchy dirs while applied
    assert {"cpu", "cpuacct", "memory", "devices", "systemd"} <= set(listing)
    assert {"hugetlb", "perf_event"} <= set(listing)  # unmounted on this host: added
    assert res.stdout.splitlines()[2] == "1024"
    assert "SAME" in res.stdout


def test_fake_cgroup_profile_serves_kernel_behaviour_at_sys_fs_cgroup():
    require_root_and_fuse()
    script = f"""
{sys.executable} -m fakefs run --profile cgroup-v1-fake -- {sys.executable} -c '
import os, errno
print(sorted(os.listdir("/sys/fs/cgroup")))
os.mkdir("/sys/fs/cgroup/memory/x")
fd = os.open("/sys/fs/cgroup/memory/x/memory.limit_in_bytes", os.O_WRONLY)
os.write(fd, b"1g"); os.close(fd)
print(open("/sys/fs/cgroup/memory/x/memory.limit_in_bytes").read().strip())
line = [l for l in open("/proc/self/mountinfo") if l.split()[4] == "/sys/fs/cgroup/memory"][-1]
print(line.split(" - ")[1].split()[0])
'
"""
    res = run_in_new_ns(script)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert "net_cls,net_prio" in lines[0] and "cpu" in lines[0]
    assert lines[1] == "1073741824"
    assert lines[2].startswith("fuse")  # served by fakefs, not the kernel
