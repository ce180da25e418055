"""Setting up and tearing down what is measured: fakefs mounts (through its
CLI, as a user would), lxcfs, a throwaway child of the real cgroupfs, a tmpfs.

Everything runs in the benchmark's private mount namespace; every mount,
daemon and real cgroup made here is undone by its ``close()``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

from .load import first_read

REAL_CPU = "/sys/fs/cgroup/cpu"
REAL_MEMORY_STAT = "/sys/fs/cgroup/memory/memory.stat"


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _fakefs_cmd() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "fakefs")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "fakefs"]


class FakefsMount:
    """``fakefs mount TARGET --backend NAME`` and ``fakefs umount TARGET``."""

    def __init__(self, target: str, run_dir: str, backend: str = "fuse"):
        self.target = target
        self.backend = backend
        self.run_dir = run_dir
        self.env = dict(os.environ, FAKEFS_RUN_DIR=run_dir)
        self.mounted = False
        os.makedirs(target, exist_ok=True)

    def mount(self, probe: str = "cpu,cpuacct/cpu.shares") -> float:
        """Seconds from invoking the CLI to the first successful read of ``probe``."""
        t0 = time.monotonic()
        res = subprocess.run(_fakefs_cmd() + ["mount", self.target, "--backend", self.backend],
                             env=self.env, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"fakefs mount failed: {res.stderr.strip()}")
        self.mounted = True
        t1 = first_read(os.path.join(self.target, probe), time.monotonic() + 10)
        if t1 is None:
            raise RuntimeError(f"fakefs mount at {self.target}: {probe} never became readable")
        return t1 - t0

    @property
    def pid(self) -> int | None:
        """The serving process (the one holding the tree; its supervisor is
        the pid ``fakefs status`` shows)."""
        from fakefs.runtime import registry

        saved = os.environ.get("FAKEFS_RUN_DIR")
        os.environ["FAKEFS_RUN_DIR"] = self.run_dir
        try:
            record = registry.load(os.path.realpath(self.target))
        finally:
            if saved is None:
                del os.environ["FAKEFS_RUN_DIR"]
            else:
                os.environ["FAKEFS_RUN_DIR"] = saved
        return record.server_pid or record.pid if record is not None else None

    def wait_for(self, *parts: str, timeout: float = 10.0) -> str:
        """A path that appears a moment after mkdir (the tmpfs backend's
        watcher fills a new cgroup directory)."""
        path = self.p(*parts)
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not appear within {timeout:.0f} s")
            time.sleep(0.005)
        return path

    def p(self, *parts: str) -> str:
        return os.path.join(self.target, *parts)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(_fakefs_cmd() + ["umount", self.target], env=self.env, capture_output=True)
            self.mounted = False


class Lxcfs:
    """``lxcfs -f DIR`` (Debian's lxcfs: cgroup v1 view and /proc files)."""

    PROBE = "cgroup/cpu/cpu.shares"

    def __init__(self, target: str, pidfile: str, log: str):
        self.target = target
        self.pidfile = pidfile
        self.log = log
        self.proc: subprocess.Popen | None = None
        os.makedirs(target, exist_ok=True)

    @staticmethod
    def available() -> str | None:
        return shutil.which("lxcfs")

    @staticmethod
    def version() -> str:
        try:
            res = subprocess.run(["lxcfs", "--version"], capture_output=True, text=True, timeout=5)
            return (res.stdout or res.stderr).strip().strip('"')
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    def start(self) -> float:
        """Seconds from invoking lxcfs to the first successful read of its cgroup view."""
        with open(self.log, "ab") as log:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(["lxcfs", "-f", "-p", self.pidfile, self.target],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        t1 = first_read(os.path.join(self.target, self.PROBE), time.monotonic() + 10)
        if t1 is None:
            self.close()
            raise RuntimeError(f"lxcfs did not serve {self.PROBE} (see {self.log})")
        return t1 - t0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def p(self, *parts: str) -> str:
        return os.path.join(self.target, *parts)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        _lazy_umount(self.target)


class RealChild:
    """A throwaway child of the machine's real cpu hierarchy (unique name)."""

    def __init__(self):
        self.name = f"fakefs-bench-{secrets.token_hex(4)}"
        self.path = os.path.join(REAL_CPU, self.name)
        os.mkdir(self.path)

    @staticmethod
    def available() -> bool:
        return os.path.isfile(os.path.join(REAL_CPU, "cpu.shares"))

    def p(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def close(self) -> None:
        if not os.path.isdir(self.path):
            return
        # Deepest first: rmdir on cgroupfs removes only empty cgroups.
        for dirpath, dirnames, _ in sorted(os.walk(self.path), key=lambda w: -w[0].count("/")):
            for d in dirnames:
                try:
                    os.rmdir(os.path.join(dirpath, d))
                except OSError:
                    pass
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)  # a removed child may still be dying
        print(f"bench: could not remove real cgroup {self.path}", file=sys.stderr)


def _real_cpu_options() -> str:
    """The controllers of the machine's cpu hierarchy as mountinfo shows them
    (``cpu`` or ``cpu,cpuacct``): a second mount must name exactly those."""
    from fakefs.host.mountinfo import read_mounts

    where = os.path.realpath(REAL_CPU)
    for m in read_mounts():
        if m.mountpoint == where and m.fstype == "cgroup":
            opts = [o for o in m.super_options.split(",") if o not in ("rw", "ro")]
            return ",".join(opts)
    return "cpu"


def kernel_mount_time(target: str) -> float:
    """Seconds from invoking mount(8) for the cgroup v1 cpu hierarchy to its first read."""
    os.makedirs(target, exist_ok=True)
    options = _real_cpu_options()
    t0 = time.monotonic()
    res = subprocess.run(["mount", "-t", "cgroup", "-o", options, "cgroup", target], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"mount -t cgroup: {res.stderr.strip()}")
    try:
        t1 = first_read(os.path.join(target, "cpu.shares"), time.monotonic() + 10)
    finally:
        _lazy_umount(target)
    if t1 is None:
        raise RuntimeError("the kernel's cgroup mount never became readable")
    return t1 - t0


class Tmpfs:
    """A tmpfs holding copies of the files read: the physical limit of a read."""

    def __init__(self, target: str):
        from fakefs.host.sysmount import mount

        self.target = target
        os.makedirs(target, exist_ok=True)
        mount("tmpfs", target, "tmpfs", 0, "size=16m")
        self.mounted = True

    def p(self, *parts: str) -> str:
        return os.path.join(self.target, *parts)

    def put(self, name: str, data: bytes) -> str:
        path = self.p(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def close(self) -> None:
        if self.mounted:
            _lazy_umount(self.target)
            self.mounted = False


def _lazy_umount(target: str) -> None:
    from fakefs.host.sysmount import umount

    try:
        umount(target, detach=True)
    except OSError:
        pass
