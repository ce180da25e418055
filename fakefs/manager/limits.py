"""``fakefs run --limit``: cgroup v1 limits where cgroup-aware programs look.

Programs such as libuv (node's ``process.constrainedMemory()``), the JVM or
.NET find their limits by path: the line of ``/proc/self/cgroup`` for a
controller gives the cgroup, and ``/sys/fs/cgroup/<controller>/<path>/``
holds its files. ``fakefs run`` creates the command's own cgroup paths in
the fake hierarchies it mounted, writes the limits there through the fake's
kernel rules (exactly as an administrator would on cgroupfs), and puts the
command in them before it starts. It never writes a limit to a real cgroup.

Limits (Docker's meaning):

* ``memory=SIZE``: memory.limit_in_bytes, in bytes or with Docker's units
  (``512m``, ``512MiB``, ``1.5G``: k, m, g, t, p are powers of 1024), at
  least one page;
* ``cpus=N``: cpu.cfs_quota_us = N * cpu.cfs_period_us, with the period at
  its default 100000 us (``cpus=1.5`` is 150000/100000);
* ``pids=N``: pids.max.

cgroup v1 has no limit on a root cgroup (writes are EINVAL there), so where
the command would sit at the root of a real hierarchy (``cpu:/`` on a host,
everything in gVisor) ``fakefs run`` gives it a fresh real child cgroup
first (fakefs/host/realcgroups.py); the fake shows that child with the limit.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from fakefs.errors import CliError
from fakefs.host.mountinfo import visible_mounts
from fakefs.host.realcgroups import own_cgroups, read_own_cgroups, write_file
from fakefs.runtime import registry

CFS_PERIOD_US = 100000  # the kernel's default period (default_cfs_period)
MIN_CFS_QUOTA_US = 1000  # tg_set_cfs_bandwidth: min_cfs_quota_period
PID_MAX_LIMIT = 4 * 1024 * 1024  # include/linux/threads.h: PIDS_MAX is PID_MAX_LIMIT + 1
KNOWN = ("memory", "cpus", "pids")
# Docker's --memory grammar (go-units RAMInBytes): a number, an optional
# space, a unit letter, an optional "i" and an optional "b"; binary units.
_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?(?:([kmgtp])i?b?|b)?", re.IGNORECASE)
_UNIT_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50}
# How long a tmpfs-backend tree may take to fill a new cgroup or to show a
# written value (its watcher works right after the mkdir or close).
SETTLE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Setting:
    controller: str  # whose line of /proc/self/cgroup gives the path
    file: str
    value: str
    why: str


def parse_size(value: str) -> int | None:
    """Docker's memory sizes: ``512m``, ``512MiB``, ``1.5G``, ``1048576``."""
    m = _SIZE.fullmatch(value)
    if m is None:
        return None
    number, unit = m.group(1), (m.group(2) or "").lower()
    return int(float(number) * (1 << _UNIT_SHIFT[unit])) if unit else int(float(number))


def parse_limit(spec: str) -> tuple[str, str]:
    """``"memory=512M"`` -> ("memory", "536870912"); one-line errors."""
    key, sep, value = spec.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not value:
        raise CliError(f"fakefs: --limit {spec!r}: expected KEY=VALUE ({', '.join(KNOWN)})")
    if key == "memory":
        size = parse_size(value)
        if size is None:
            raise CliError(f"fakefs: --limit memory={value}: not a size (bytes, or a number with k, m, g, t, "
                           "e.g. 512m, 512MiB, 1.5G)")
        page = os.sysconf("SC_PAGE_SIZE")
        if size < page:
            raise CliError(f"fakefs: --limit memory={value}: {size} bytes is below one page ({page} bytes); "
                           "the kernel would keep a limit of 0")
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
    if key == "pids":
        if not value.isdigit() or not 1 <= int(value) <= PID_MAX_LIMIT:
            raise CliError(f"fakefs: --limit pids={value}: must be a whole number from 1 to {PID_MAX_LIMIT}")
        return key, str(int(value))
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
    if "pids" in limits:
        out.append(Setting("pids", "pids.max", limits["pids"], "pids"))
    return out


def controllers(limits: dict[str, str]) -> list[str]:
    """The controllers whose hierarchies hold these limits."""
    return list(dict.fromkeys(s.controller for s in settings(limits)))


def _mount_of(path: str):
    """The mount that serves ``path`` (the deepest visible one: mounts the
    fake tree covers, e.g. real hierarchies run mounted first, do not count)."""
    best = None
    for m in visible_mounts():
        mp = m.mountpoint.rstrip("/") or "/"
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mountpoint.rstrip("/") or "/"):
                best = m
    return best


def is_fake(path: str) -> bool:
    """Served by a fakefs daemon of this namespace: its file system is the
    one mounted at a registered target (gVisor names no FUSE source or
    subtype, so the device is what tells)."""
    m = _mount_of(os.path.realpath(path))
    if m is None:
        return False
    targets = {r.target for r in registry.all_records()}
    return m.device in {x.device for x in visible_mounts() if x.mountpoint in targets}


def _dir_of(target: str, key: str) -> str:
    """The directory of the hierarchy holding ``key`` under ``target``: one
    named after it (or a symlink, as systemd makes for co-mounted
    controllers), else one whose name lists it (``cpu,cpuacct``)."""
    name = key[5:] if key.startswith("name=") else key
    path = os.path.join(target, name)
    if not os.path.isdir(path):
        try:
            entries = sorted(os.listdir(target))
        except OSError:
            entries = []
        path = next((os.path.join(target, e) for e in entries if name in e.split(",")
                     and os.path.isdir(os.path.join(target, e))), path)
    return path


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


def prepare(limits: dict[str, str], target: str = "/sys/fs/cgroup", own: dict[str, str] | None = None) -> list[str]:
    """Create the command's cgroup paths (``own``: {controller: path} as its
    /proc/self/cgroup will say; default: this process's) in every fake
    hierarchy under ``target`` and set ``limits`` there. Returns the
    cgroup.procs files the command should join. Never writes a real cgroup:
    a limit whose hierarchy is authentic here is an error."""
    if own is None:
        own = own_cgroups(read_own_cgroups())
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
    for s in settings(limits):
        hdir = _dir_of(target, s.controller)
        path = own.get(s.controller)
        if path is None:
            raise CliError(f"fakefs: --limit {s.why}: this kernel shows no {s.controller} line in /proc/self/cgroup")
        if not os.path.isdir(hdir) or not is_fake(hdir):
            raise CliError(f"fakefs: --limit {s.why}: {hdir} is not a fakefs hierarchy here "
                           f"(use a profile that fakes {s.controller}, e.g. cgroup-v1-fake)")
        if path in ("/", ""):
            raise CliError(f"fakefs: --limit {s.why}: the command would sit in the root {s.controller} cgroup, "
                           f"where cgroup v1 keeps no limit, and no child cgroup of it could be made here")
        file = os.path.join(hdir, path.lstrip("/"), s.file)
        _wait_until(lambda: os.path.exists(file))
        try:
            write_file(file, s.value)
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
            write_file(path, me)
        except OSError:
            pass  # membership is a courtesy for statistics; limits are already in place
