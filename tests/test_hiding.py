"""The rule for mounting over system paths (fakefs/host/hiding.py): proceed
where the mount hides nothing the running system uses, refuse (with the
reason and the way out) where it would hide live cgroup hierarchies or
kernel files from the init system.

The CLI side runs in namespaces made with util-linux's ``unshare -m
--propagation private`` (as a user would), never in the machine's own: "PID 1
shares this namespace" is simulated by pointing hiding.INIT_PID at the
process itself, so even a wrong verdict only mounts in a throwaway namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from fakefs.host import hiding
from fakefs.host.mountinfo import Mount
from tests.support import REPO, require, require_root_and_fuse

pytestmark = pytest.mark.fuse


def mount_row(mount_id: int, parent: int, mountpoint: str, fstype: str, options: str = "rw") -> Mount:
    return Mount(mount_id=mount_id, parent_id=parent, root="/", mountpoint=mountpoint, fstype=fstype,
                 source=fstype, super_options=options)


SYSTEMD_HOST = [
    mount_row(1, 0, "/", "ext4"),
    mount_row(2, 1, "/sys", "sysfs"),
    mount_row(3, 2, "/sys/fs/cgroup", "tmpfs"),
    mount_row(4, 3, "/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
    mount_row(5, 3, "/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,release_agent=/x,name=systemd"),
    mount_row(6, 3, "/sys/fs/cgroup/unified", "cgroup2", "rw"),
    mount_row(7, 1, "/proc", "proc"),
]


def test_what_a_mount_would_hide(tmp_path):
    hidden = hiding.hidden_by("/sys/fs/cgroup", SYSTEMD_HOST)
    assert hidden == ["/sys/fs/cgroup/memory (cgroup memory)", "/sys/fs/cgroup/systemd (cgroup name=systemd)",
                      "/sys/fs/cgroup/unified (cgroup2)"]
    # the ones put back where they were do not count
    keep = frozenset({"/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"})
    assert hiding.hidden_by("/sys/fs/cgroup", SYSTEMD_HOST, keep) == []
    # a tmpfs with no cgroup mounts under it, or a cgroup directory next to them, hides nothing
    no_cgroups = [m for m in SYSTEMD_HOST if m.fstype not in ("cgroup", "cgroup2")]
    assert hiding.hidden_by("/sys/fs/cgroup", no_cgroups) == []
    assert hiding.hidden_by("/", SYSTEMD_HOST)[-1] == "/proc (proc)"
    # inside a kernel file system: an empty directory hides nothing, a non-empty one its files
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "entry").write_text("1\n")
    procfs = [mount_row(1, 0, "/", "ext4"), mount_row(2, 1, str(tmp_path), "proc")]
    assert hiding.hidden_by(str(tmp_path / "empty"), procfs) == []
    assert hiding.hidden_by(str(tmp_path / "full"), procfs) == [f"the files of {tmp_path / 'full'} (proc)"]
    # and anywhere else (a scratch directory, a home directory) nothing is a system file
    assert hiding.hidden_by(str(tmp_path / "full"), [mount_row(1, 0, "/", "ext4")]) == []


def test_the_init_namespace_is_told_apart(monkeypatch):
    require(os.geteuid() == 0, "reads /proc/1 (root)")
    # The test session runs in a namespace fakefs made (conftest.py).
    assert hiding.shares_init_namespace() is False
    monkeypatch.delenv("FAKEFS_PRIVATE_MNTNS", raising=False)
    assert hiding.shares_init_namespace() is (os.readlink("/proc/1/ns/mnt") == os.readlink("/proc/self/ns/mnt")
                                              if os.access("/proc/1/ns/mnt", os.R_OK) else False)
    monkeypatch.setattr(hiding, "INIT_PID", os.getpid())
    assert hiding.shares_init_namespace() is True
    assert hiding.refusal(["/tmp"]) is None


# Runs under `unshare -m --propagation private`: each command's exit status
# and output, as JSON. With "as-init", PID 1 is taken to be this process
# (the machine's init system, in the simulation).
IN_UNSHARE = r"""
import io, json, os, sys, contextlib
import fakefs.cli, fakefs.host.hiding as hiding
os.environ.pop("FAKEFS_PRIVATE_MNTNS", None)
mode, commands = sys.argv[1], json.loads(sys.argv[2])
if mode == "as-init":
    hiding.INIT_PID = os.getpid()
out = []
for argv in commands:
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        rc = fakefs.cli.main(argv)
    out.append([argv, rc, o.getvalue(), e.getvalue()])
print(json.dumps(out))
"""


def in_unshare(mode: str, *commands: list[str]) -> dict[tuple, tuple[int, str, str]]:
    unshare = shutil.which("unshare")
    require(unshare is not None, "needs util-linux unshare")
    res = subprocess.run([unshare, "-m", "--propagation", "private", sys.executable, "-c", IN_UNSHARE, mode,
                          json.dumps(list(commands))], capture_output=True, text=True, timeout=240,
                         env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    return {tuple(argv): (rc, so, se) for argv, rc, so, se in json.loads(res.stdout.splitlines()[-1])}


def test_where_init_would_lose_its_cgroups_mounting_is_refused_with_the_way_out():
    require_root_and_fuse()
    require(os.path.isdir("/sys/fs/cgroup/memory"), "needs this host's cgroup v1 mounts")
    scratch = tempfile.mkdtemp(prefix="fakefs-hiding-")
    try:
        r = in_unshare("as-init", ["mount", "/sys/fs/cgroup"], ["mount", "/proc/sys"],
                       ["apply", "cgroup-v1-fake"], ["apply", "cgroup-v1-fake", "--dry-run"],
                       ["mount", scratch], ["umount", scratch],
                       ["mount", "/sys/fs/cgroup", "--in-place"], ["umount", "/sys/fs/cgroup"])
        rc, _, err = r[("mount", "/sys/fs/cgroup")]
        assert rc == 1 and err.count("\n") == 1, err
        assert err.startswith("fakefs: refusing to mount over /sys/fs/cgroup: it would hide the live cgroup "
                              "hierarchies (/sys/fs/cgroup/")
        assert "(cgroup memory)" in err and "from the init system" in err
        assert "`fakefs run -- CMD`" in err and "--in-place" in err and "unshare -m" in err
        rc, _, err = r[("mount", "/proc/sys")]
        assert rc == 1 and "the files of /proc/sys (proc)" in err, err
        rc, _, err = r[("apply", "cgroup-v1-fake")]
        assert rc == 1 and err.startswith("fakefs: refusing to apply cgroup-v1-fake: it would hide the live cgroup"), err
        rc, out, _ = r[("apply", "cgroup-v1-fake", "--dry-run")]
        assert rc == 0 and "apply would refuse this here: it would hide the live cgroup" in out
        # what hides nothing proceeds; --in-place is the user's override
        for argv in (("mount", scratch), ("umount", scratch), ("mount", "/sys/fs/cgroup", "--in-place"),
                     ("umount", "/sys/fs/cgroup")):
            assert r[argv][0] == 0, (argv, r[argv])
    finally:
        os.rmdir(scratch)


def test_in_a_namespace_of_its_own_the_headline_commands_proceed():
    """The issue's case: inside `unshare -m --propagation private`, where
    /proc/1/ns/mnt may not be readable, apply and mount are not refused."""
    require_root_and_fuse()
    r = in_unshare("own", ["apply", "cgroup-v1-fake"], ["status"], ["umount", "--all"],
                   ["mount", "/sys/fs/cgroup"], ["umount", "/sys/fs/cgroup"])
    for argv, (rc, out, err) in r.items():
        assert rc == 0, (argv, out, err)
    assert "applied profile cgroup-v1-fake" in r[("apply", "cgroup-v1-fake")][1]
