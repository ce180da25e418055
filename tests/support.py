"""Shared test helpers: capability checks that skip locally but fail in CI,
and a real fakefs mount driven through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKEFS = [sys.executable, "-m", "fakefs"]


def require(condition: bool, reason: str) -> None:
    """Skip when a capability is missing, but fail under CI: tests that
    mount FUSE or use the real kernel must run there."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required capability missing in CI: {reason}")
    pytest.skip(reason)


def require_root_and_fuse() -> None:
    require(os.geteuid() == 0, "needs root")
    require(os.path.exists("/dev/fuse"), "needs /dev/fuse")


def fakefs(*args: str, check: bool = False, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", REPO)
    return subprocess.run(FAKEFS + list(args), capture_output=True, text=True, timeout=timeout,
                          check=check, env=env, cwd=REPO, **kw)


def is_mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def wait_for(pred, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()
