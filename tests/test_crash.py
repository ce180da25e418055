"""Acknowledged means durable: ``kill -9`` of the server at random points
while four writers make, write and remove cgroups, twenty times; afterwards
every operation a writer saw succeed is there, through the restarted server
and after a fresh mount, and nothing reached the directory underneath the
mount while it was being re-made."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from fakefs.runtime import registry
from tests.support import FUSE_BACKENDS, REPO, fakefs, is_mounted, require_root_and_fuse, wait_for

pytestmark = pytest.mark.fuse

KILLS = 20
WRITERS = 4
WRITER = os.path.join(REPO, "tests", "scripts", "crash_writer.py")


def _server_pid(target: str) -> int:
    rec = registry.load(target)
    return rec.server_pid if rec else 0


def _serving(target: str, old_pid: int) -> bool:
    pid = _server_pid(target)
    if not pid or pid == old_pid:
        return False
    try:
        os.listdir(os.path.join(target, "cpu"))
    except OSError:
        return False
    return True


def _expected(lines: list[dict]) -> dict[str, dict]:
    """What the writer's acknowledged operations left, per directory:
    exists True/False, or None where an unacknowledged operation may or may
    not have happened; the last acknowledged cpu.shares, or None."""
    state: dict[str, dict] = {}
    pending = None
    for line in lines:
        if "try" in line:
            pending = line["try"]
            continue
        op = line.get("ack") or line.get("fail")
        pending = None
        d = state.setdefault(op["dir"], {"exists": False, "value": None})
        if "ack" in line:
            if op["op"] == "mkdir":
                d.update(exists=True, value="1024")
            elif op["op"] == "rmdir":
                d.update(exists=False, value=None)
            else:
                d.update(exists=True, value=op["value"])
        elif op["op"] == "write":
            d["value"] = None
        else:
            d.update(exists=None, value=None)
    if pending is not None:  # cut short by the end of the test
        d = state.setdefault(pending["dir"], {"exists": False, "value": None})
        d["value"] = None
        if pending["op"] != "write":
            d["exists"] = None
    return state


def _check(top: str, expected: dict[str, dict]) -> list[str]:
    wrong = []
    for name, want in sorted(expected.items()):
        path = os.path.join(top, name)
        there = os.path.isdir(path)
        if want["exists"] is not None and there != want["exists"]:
            wrong.append(f"{name}: {'missing' if want['exists'] else 'still there'}")
        elif there and want["value"] is not None:
            with open(os.path.join(path, "cpu.shares")) as f:
                got = f.read().strip()
            if got != want["value"]:
                wrong.append(f"{name}: cpu.shares {got}, acknowledged {want['value']}")
    return wrong


@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_every_acknowledged_operation_survives_kill_9_under_load(backend):
    require_root_and_fuse()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    scratch = tempfile.mkdtemp(prefix="fakefs-crash-")
    target = os.path.join(scratch, "mnt")
    os.mkdir(target)
    env = {**os.environ, "FAKEFS_RESTART_LIMIT": str(KILLS * 2)}
    writers: list[subprocess.Popen] = []
    try:
        res = fakefs("mount", target, "--backend", backend, env=env)
        assert res.returncode == 0, res.stderr
        top = os.path.join(target, "cpu")
        logs = [open(os.path.join(scratch, f"w{i}.log"), "w+") for i in range(WRITERS)]
        writers = [subprocess.Popen([sys.executable, WRITER, top, f"w{i}", "600"], stdout=log)
                   for i, log in enumerate(logs)]
        # Their SIGUSR1 handlers are in place once they have said something.
        assert wait_for(lambda: all(os.fstat(log.fileno()).st_size > 0 for log in logs), timeout=30)
        for kill in range(KILLS):
            time.sleep(rng.uniform(0.05, 0.4))
            pid = _server_pid(target)
            assert pid, "no server recorded"
            os.kill(pid, signal.SIGKILL)
            assert wait_for(lambda: _serving(target, pid), timeout=10), \
                f"kill {kill + 1} (seed {seed}): the mount did not heal within 10 s"
            # A request the dead server had read is answered once its
            # caller is signalled (the writers treat it as not acknowledged).
            for w in writers:
                w.send_signal(signal.SIGUSR1)
        for w in writers:
            w.terminate()
        for w in writers:
            w.wait(timeout=20)
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read())
            log.close()
        expected: dict[str, dict] = {}
        acked = 0
        for out in outputs:
            lines = [json.loads(line) for line in out.splitlines() if line.strip()]
            acked += sum(1 for line in lines if "ack" in line)
            expected.update(_expected(lines))
        assert acked > 100, f"only {acked} operations acknowledged: the test proves little: {[o[-300:] for o in outputs]}"
        wrong = _check(top, expected)
        assert not wrong, f"seed {seed}, after {KILLS} kills: " + "; ".join(wrong[:10])
        # The same after a fresh daemon restores the saved state.
        assert fakefs("umount", target).returncode == 0
        assert wait_for(lambda: not is_mounted(target))
        leaked = os.listdir(target)
        assert leaked == [], f"reached the directory underneath the mount: {leaked}"
        assert fakefs("mount", target, "--backend", backend).returncode == 0
        wrong = _check(top, expected)
        assert not wrong, f"seed {seed}, after remounting: " + "; ".join(wrong[:10])
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=10)
        fakefs("umount", "--forget", target)
        wait_for(lambda: not is_mounted(target))
        if not is_mounted(target):
            shutil.rmtree(scratch, ignore_errors=True)
