"""``fakefs run --limit``: cgroup v1 limits where cgroup-aware programs look.

Programs such as libuv (node's ``process.constrainedMemory()``), the JVM or
.NET find their limits by path: the line of ``/proc/self/cgroup`` for a
controller gives the cgroup, and ``/sys/fs/cgroup/<controller>/<path>/``
holds its files. ``fakefs run`` does not move the command anywhere (it may
not touch real cgroups); it creates the command's own cgroup paths in the
fake hierarchies it mounted, writes the limits there through the fake's
kernel rules (exactly as an administrator would on cgroupfs), and puts the
command in them before it starts.

Limits (Docker's meaning):

* ``memory=SIZE``: memory.limit_in_bytes (memparse: ``512M``, ``1G``, bytes);
* ``cpus=N``: cpu.cfs_quota_us = N * cpu.cfs_period_us, with the period at
  its default 100000 us (``cpus=1.5`` is 150000/100000).

A hierarchy in which the command sits at the root (this VM's ``cpu:/``)
cannot hold a limit: cgroup v1 has no quota or memory limit on the root
cgroup (writes are EINVAL there), so what a program reads there is the
kernel's "unlimited". fakefs says so on stderr and leaves it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from fakefs.model.errors import KernelError
from fakefs.model.kparse import memparse
from fakefs.model.procviews import parse_proc_cgroup
from fakefs.host.mountinfo import read_mounts
from fakefs.errors import CliError

CFS_PERIOD_US = 100000  # the kernel's default period (default_cfs_period)
MIN_CFS_QUOTA_US = 1000  # tg_set_cfs_bandwidth: min_cfs_quota_period
KNOWN = ("memory", "cpus")
# How long a tmpfs-backend tree may take to fill a new cgroup or to show a
# written value (its watcher works right after the mkdir or close).
SETTLE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Setting:
    controller: str  # whose line of /proc/self/cgroup gives the path
    file: str
    value: str
    why: str


def parse_limit(spec: str) -> tuple[str, str]:
    """``"memory=512M"`` -> ("memory", "536870912"); one-line errors."""
    key, sep, value = spec.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not value:
        raise CliError(f"fakefs: --limit {spec!r}: expected KEY=VALUE ({', '.join(KNOWN)})")
    if key == "memory":
        try:
            size, rest = memparse(value)
        except KernelError:
            size, rest = 0, value
        if rest or size <= 0:
            raise CliError(f"fakefs: --limit memory={value}: not a size (bytes, or with K, M, G, T)")
        return key, str(size)
    if key == "cpus":
        try:
            cpus = float(value)
        except ValueError:
            raise CliError(f"fakefs: --limit cpus={value}: not a number") from None
        quota = round(cpus * CFS_PERIOD_US)
        if not cpus == cpus or quota < MIN_CFS_QUOTA_US or cpus > 1 << 20:
            raise CliError(f"fakefs: --limit cpus={value}: must be between 0.01 and {1 << 20}")
        return key, str(quota)
    raise CliError(f"fakefs: --limit {key}: unknown limit (known: {', '.join(KNOWN)})")


def parse_limits(specs: list[str] | dict[str, object]) -> dict[str, str]:
    items = specs.items() if isinstance(specs, dict) else (s.partition("=")[::2] for s in specs)
    out: dict[str, str] = {}
    for key, value in items:
        k, v = parse_limit(f"{key}={value}")
        out[k] = v
    return out


def settings(limits: dict[str, str]) -> list[Setting]:
    out = []
    if "memory" in limits:
        out.append(Setting("memory", "memory.limit_in_bytes", limits["memory"], "memory"))
    if "cpus" in limits:
        out.append(Setting("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US), "cpus"))
        out.append(Setting("cpu", "cpu.cfs_quota_us", limits["cpus"], "cpus"))
    return out


def own_cgroups(text: str) -> dict[str, str]:
    """/proc/self/cgroup -> {controller or name=X: path} (v1 lines only)."""
    return parse_proc_cgroup(text)


def _mount_of(path: str):
    """The mount that serves ``path`` (the last, deepest one)."""
    best = None
    for m in read_mounts():
        mp = m.mountpoint.rstrip("/") or "/"
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mountpoint.rstrip("/") or "/"):
                best = m
    return best


def is_fake(path: str) -> bool:
    m = _mount_of(os.path.realpath(path))
    return m is not None and m.source == "fakefs"


def _dir_of(target: str, key: str) -> str:
    return os.path.join(target, key[5:] if key.startswith("name=") else key)


def _write(path: str, value: str) -> None:
    # O_TRUNC: cgroupfs and the FUSE trees take each write() as the whole
    # value anyway, but a tree of plain files (the tmpfs backend) cannot see
    # where a write ended, and one that does not truncate is laid over the
    # old text (268435456 over 9223372036854771712 reads 2684354566854771712).
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _wait_until(done, timeout: float = SETTLE_TIMEOUT) -> None:
    """Until ``done()``, for the tmpfs backend's watcher: a FUSE tree (or
    cgroupfs) is done at once. In a tree of plain files the watcher gives a
    new cgroup its files right after mkdir (a write before finds none:
    ENOENT), and replaces a written text with the model's value right after
    close (a reader before sees the text). Past the deadline the caller goes
    on and reports what it then finds."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)


def _reads(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def prepare(limits: dict[str, str], target: str = "/sys/fs/cgroup", self_cgroup: str | None = None,
            warn=lambda msg: print(msg, file=sys.stderr)) -> list[str]:
    """Create this process's cgroup paths in every fake hierarchy under
    ``target`` and set ``limits`` there. Returns the cgroup.procs files the
    command should join. Never writes a real cgroup: a limit whose
    hierarchy is authentic here is an error."""
    if self_cgroup is None:
        with open("/proc/self/cgroup") as f:
            self_cgroup = f.read()
    own = own_cgroups(self_cgroup)
    procs: list[str] = []
    for key, path in sorted(own.items()):
        hdir = _dir_of(target, key)
        if not os.path.isdir(hdir) or not is_fake(hdir) or path in ("/", ""):
            continue
        cg = os.path.join(hdir, path.lstrip("/"))
        try:
            os.makedirs(cg, exist_ok=True)
        except OSError as exc:
            raise CliError(f"fakefs: cannot create {cg} in the fake tree: {exc.strerror}") from None
        procs.append(os.path.join(os.path.realpath(cg), "cgroup.procs"))
        _wait_until(lambda: os.path.exists(procs[-1]))
    warned: set[str] = set()
    for s in settings(limits):
        hdir = _dir_of(target, s.controller)
        path = own.get(s.controller)
        if path is None:
            raise CliError(f"fakefs: --limit {s.why}: this kernel shows no {s.controller} line in /proc/self/cgroup")
        if not os.path.isdir(hdir) or not is_fake(hdir):
            raise CliError(f"fakefs: --limit {s.why}: {hdir} is not a fakefs hierarchy here "
                           f"(use a profile that fakes {s.controller}, e.g. cgroup-v1-fake)")
        if path in ("/", ""):
            if s.why in warned:
                continue
            warned.add(s.why)
            warn(f"fakefs: --limit {s.why}: this process is in the root {s.controller} cgroup, where cgroup v1 "
                 f"keeps no limit; programs reading {s.controller} limits by path see none")
            continue
        file = os.path.join(hdir, path.lstrip("/"), s.file)
        _wait_until(lambda: os.path.exists(file))
        try:
            _write(file, s.value)
        except OSError as exc:
            raise CliError(f"fakefs: --limit {s.why}: writing {s.value} to {file}: {exc.strerror}") from None
        # The kernel's value reads back with a newline, the text as written
        # has none: the command must not start before the value is in place.
        _wait_until(lambda: _reads(file) != s.value.encode())
    return list(dict.fromkeys(procs))


def join(procs_files: list[str]) -> None:
    """In the command's process before exec: join its fake cgroups (the
    fake sees this pid in them, so live statistics follow it)."""
    me = str(os.getpid())
    for path in procs_files:
        try:
            _write(path, me)
        except OSError:
            pass  # membership is a courtesy for statistics; limits are already in place
