"""``fakefs run`` as a user runs it: exit statuses as docker and env give
them, the default profile, and everything started inside ending with it."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from tests.support import fakefs, require_root_and_fuse

pytestmark = pytest.mark.fuse


def test_exit_statuses(tmp_path):
    require_root_and_fuse()
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\nexit 0\n")
    not_executable.chmod(stat.S_IRUSR | stat.S_IWUSR)
    cases = [
        (["--", "sh", "-c", "exit 7"], 7, ""),
        (["--", "sh", "-c", "kill -9 $$"], 128 + 9, ""),
        (["--", str(tmp_path / "missing")], 127, "command not found"),
        (["--", str(not_executable)], 126, "cannot execute"),
        (["--", str(tmp_path)], 126, "cannot execute"),
        (["--limit", "memory=1k", "--", "true"], 125, "below one page"),
        (["--profile", "nope", "--", "true"], 125, "no profile 'nope'"),
        (["--bogus", "--", "true"], 125, "unrecognized arguments: --bogus"),
        (["--"], 125, "needs a command"),
    ]
    for args, code, message in cases:
        res = fakefs("run", *args, timeout=60)
        assert res.returncode == code, (args, res.returncode, res.stderr)
        assert "Traceback" not in res.stderr
        if message:
            [line] = res.stderr.splitlines()
            assert line.startswith("fakefs: ") and message in line, (args, line)


def test_without_profile_or_limit_the_kubelet_profile_is_applied():
    require_root_and_fuse()
    res = fakefs("run", "--verbose", "--", "sh", "-c", "test -e /proc/sys/vm/panic_on_oom && echo tunables",
                 timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("fakefs: applied profile kubelet")
    assert res.stdout.splitlines()[-1] == "tunables"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_everything_started_inside_ends_with_it(tmp_path):
    """A fakefs daemon the command mounted, a background process and a
    process in a session of its own: none outlives run, and nothing stays
    mounted or registered."""
    require_root_and_fuse()
    mnt, report = tmp_path / "mnt", tmp_path / "report"
    mnt.mkdir()
    script = (f"set -e; {sys.executable} -m fakefs mount {mnt}; "
              f"sleep 1000 & echo $! > {report}.bg; setsid sleep 1001 & "
              f"{sys.executable} -m fakefs status --json > {report}")
    res = fakefs("run", "--", "sh", "-c", script, timeout=60)
    assert res.returncode == 0, res.stderr
    [daemon] = [m for m in json.loads(report.read_text())["mounts"] if m["target"] == str(mnt)]
    pids = [daemon["pid"], int((tmp_path / "report.bg").read_text())]
    assert not any(_alive(p) for p in pids), [p for p in pids if _alive(p)]
    with open("/proc/self/mountinfo") as f:
        assert str(mnt) not in f.read()
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(int(p)) == "sleep\x001001\x00"]
    assert leftovers == []


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read()
    except OSError:
        return ""
