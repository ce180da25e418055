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
# The FUSE transports that serve the same FsOps: every real-mount test runs
# against each (pyfuse3, and the raw /dev/fuse protocol server). Here, not in
# conftest.py: importing conftest as tests.conftest would run it twice (a
# second run directory, FAKEFS_RUN_DIR switched under the session).
FUSE_BACKENDS = ["fuse", "fuse-raw"]


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


def fakefs(*args: str, check: bool = False, timeout: float = 30, env: dict | None = None,
           **kw) -> subprocess.CompletedProcess:
    env = dict(env if env is not None else os.environ)
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


def wait_state_saved(target: str, since_ns: int, timeout: float = 5.0) -> None:
    """Wait until the state file of ``target`` was written after ``since_ns``
    (time.time_ns() taken after the last change), instead of guessing how
    long the saver takes on a loaded machine."""
    from fakefs.runtime import statefile

    path = statefile.path_for(os.path.realpath(target))

    def saved() -> bool:
        try:
            return os.stat(path).st_mtime_ns >= since_ns
        except FileNotFoundError:
            return False

    assert wait_for(saved, timeout), f"state of {target} not saved within {timeout}s"


# A process that does on request what live statistics count: commands on
# stdin, one answer line each on stdout.
CHILD = r"""
import os, sys, threading, time
held = []
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "alloc":
        held.append(b"\1" * (int(arg) << 20))  # resident: every page written
        print("allocated", flush=True)
    elif cmd == "spin":
        # CPU time, however loaded the machine is; the clock is read
        # rarely, so the time is user time.
        end = time.process_time() + float(arg)
        while time.process_time() < end:
            for _ in range(20000):
                pass
        print("spun", flush=True)
    elif cmd == "threads":
        evt = threading.Event()
        for _ in range(int(arg)):
            threading.Thread(target=evt.wait, daemon=True).start()
        print("threads", flush=True)
    elif cmd == "fork":
        pid = os.fork()
        if pid == 0:
            os.close(0)
            time.sleep(120)
            os._exit(0)
        print("forked", pid, flush=True)
    elif cmd == "reap":
        os.kill(int(arg), 9)
        os.waitpid(int(arg), 0)
        print("reaped", flush=True)
    elif cmd == "exit":
        break
"""


class Child:
    """A CHILD process; ``stop()`` kills it and whatever it forked."""

    def __init__(self):
        self.p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        self.pid = self.p.pid
        self.forked: list[int] = []

    def say(self, *lines: str) -> None:
        self.p.stdin.write("".join(line + "\n" for line in lines))
        self.p.stdin.flush()

    def expect(self, word: str) -> str:
        line = self.p.stdout.readline()
        assert line.startswith(word), line
        return line

    def fork(self) -> int:
        """A child of this process (it sleeps); its pid once fork() returned."""
        self.say("fork")
        pid = int(self.expect("forked").split()[1])
        self.forked.append(pid)
        return pid

    def reap(self, pid: int) -> None:
        self.say(f"reap {pid}")
        self.expect("reaped")
        self.forked.remove(pid)

    def runtime_ns(self) -> int:
        with open(f"/proc/{self.pid}/schedstat") as f:
            return int(f.read().split()[0])

    def stop(self) -> None:
        for pid in self.forked:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
