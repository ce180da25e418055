"""Running a command inside a real gVisor sandbox for the tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from tests.support import REPO, require

SANDBOX_TIMEOUT = 180
SANDBOX_RUN_DIR = "/tmp/fakefs-gvisor-run"


def runsc_do(*cmd: str, timeout: float = SANDBOX_TIMEOUT) -> subprocess.CompletedProcess:
    """``runsc --network=none do CMD`` from the repo (the host root
    filesystem, copy-on-write, so the venv made here is usable there). The
    session's FAKEFS_* variables stay out; the whole sandbox is killed when
    it outlives ``timeout``."""
    runsc = shutil.which("runsc")
    require(runsc is not None, "needs runsc (gVisor, Debian package runsc)")
    require(os.geteuid() == 0, "runsc do needs root")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKEFS_")}
    env.update(PYTHONPATH=REPO, FAKEFS_RUN_DIR=SANDBOX_RUN_DIR)
    env_args = ["env", f"PYTHONPATH={REPO}", f"FAKEFS_RUN_DIR={SANDBOX_RUN_DIR}"]
    proc = subprocess.Popen([runsc, "--network=none", "do", "--cwd", REPO, *env_args, *cmd],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"runsc do {' '.join(cmd)} overran {timeout}s\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
