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


def test_every_subcommand_says_when_it_needs_root(tmp_path):
    """As another user: no false "everything unmounted" or "nothing
    mounted", no plan other than root's; the privilege it misses, non-zero."""
    import subprocess, sys
    commands = [["umount", "--all"], ["umount", str(tmp_path)], ["status"], ["status", "--json"],
                ["apply", "kubelet"], ["apply", "kubelet", "--dry-run"], ["run", "--", "true"],
                ["mount", str(tmp_path)]]
    # Import as root, then drop privileges: the venv lives under /root.
    code = ("import json, os, sys, io, contextlib; import fakefs.cli, fakefs.runtime.daemons, fakefs.runtime.serving,"
            " fakefs.model.tree, fakefs.manager.run, fakefs.runtime.journal;"
            "fakefs.cli._parser().format_help();"
            "os.setgid(65534); os.setuid(65534); out = []\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    e = io.StringIO()\n"
            "    with contextlib.redirect_stderr(e): rc = fakefs.cli.main(argv)\n"
            "    out.append([argv, rc, e.getvalue()])\n"
            "print(json.dumps(out))")
    require_root_and_fuse()
    res = subprocess.run([sys.executable, "-c", code, json.dumps(commands)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for argv, rc, err in json.loads(res.stdout):
        assert rc != 0 and err.startswith("fakefs: must run as root") and err.count("\n") == 1, (argv, rc, err)


def test_mount_and_status_say_what_they_did(target):
    res = fakefs("mount", target)
    assert res.returncode == 0, res.stderr
    [entry] = [m for m in json.loads(fakefs("status", "--json").stdout)["mounts"] if m["target"] == target]
    assert res.stdout == f"fakefs: mounted cgroup at {target} (backend fuse, pid {entry['pid']})\n"
    header, *rows = fakefs("status").stdout.splitlines()
    assert header.split() == ["TARGET", "TREE", "BACKEND", "PID", "STATE", "LOG"]
    [row] = [r for r in rows if r.split()[0] == target]
    assert row.split() == [target, "cgroup", "fuse", str(entry["pid"]), "running", entry["log"]]
    assert os.path.exists(entry["log"])
    assert fakefs("umount", target).stdout == f"fakefs: unmounted {target}\n"
    assert not os.path.exists(entry["log"])  # a clean stop keeps no log


def test_umount_of_a_path_that_does_not_exist(target):
    res = fakefs("umount", target + "/typo")
    assert "nothing mounted at" in one_line_error(res) and "no such file or directory" in res.stderr
    res = fakefs("umount", target)
    assert res.returncode == 0 and res.stdout == f"fakefs: nothing mounted at {target}\n"


def test_hierarchy_errors_are_said_once_before_any_backend(target):
    for specs, says in ((["cpu", "cpu,cpuacct"], "controller cpu in two hierarchies"),
                        (["cpu,bogus"], "unknown cgroup controller 'bogus' (known: blkio, cpu, cpuacct")):
        args = [a for spec in specs for a in ("--hierarchy", spec)]
        err = one_line_error(fakefs("mount", target, *args))
        assert err.startswith(f"fakefs: --hierarchy: {says}"), err
        assert "backend" not in err and "passed over" not in err
    assert not is_mounted(target)


def test_apply_json_needs_dry_run():
    require_root_and_fuse()
    assert "use it with --dry-run" in one_line_error(fakefs("apply", "kubelet", "--json"))


def test_every_option_has_help_and_backends_are_listed():
    import argparse
    from fakefs.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            assert action.help, (name, action.dest)
        text = " ".join(parser.format_help().split())
        if any("--backend" in a.option_strings for a in parser._actions):
            assert "auto, fuse, fuse-raw, tmpfs" in text, name
    assert "default: /sys/fs/cgroup" in " ".join(sub.choices["mount"].format_help().split())
    assert "default: /sys/fs/cgroup" in sub.choices["umount"].format_help()
    assert "default: kubelet" in " ".join(sub.choices["run"].format_help().split())
    assert "where fakefs mounts:" in sub.choices["mount"].format_help()
    assert "exit status" in sub.choices["run"].format_help()
