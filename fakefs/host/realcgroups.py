"""The real cgroup hierarchies a command runs in, for ``fakefs run --limit``.

cgroup v1 keeps no limit on a root cgroup, so a program that sits in one
(``cpu:/`` on a host, every line in gVisor) reads "unlimited" whatever a
fake tree shows there. fakefs therefore runs the command in a fresh child
of each real hierarchy it would otherwise sit at the root of: a cgroup made
for this one run (``fakefs-run-<pid>``), below the cgroup the process is
already in, given nothing but the processes (a cpuset child gets its
parent's CPUs and memory nodes, without which it cannot hold a task), and
removed afterwards. ``/proc/self/cgroup`` then names that child, and the
fake tree shows it with the limits.

Where a controller has no line in ``/proc/self/cgroup`` at all (gVisor lists
a controller only once a cgroupfs hierarchy of it is mounted), its real
hierarchy is mounted first, at the place the fake tree will then cover.
"""

from __future__ import annotations

import errno
import os
import time

from fakefs.host.mountinfo import Mount, visible_mounts
from fakefs.model.procviews import parse_proc_cgroup
from fakefs.model.tree import V1_MOUNT_OPTIONS
from fakefs.host.sysmount import MS_NODEV, MS_NOEXEC, MS_NOSUID, mount, umount

# How to mount a hierarchy of a controller, in the order tried (gVisor mounts
# cpu with cpuacct, as a systemd host does).
MOUNT_OPTIONS = {"cpu": ["cpu,cpuacct", "cpu"], "cpuacct": ["cpu,cpuacct", "cpuacct"]}


def own_cgroups(text: str) -> dict[str, str]:
    """/proc/self/cgroup -> {controller or name=X: path} (v1 lines only)."""
    return parse_proc_cgroup(text)


def read_own_cgroups() -> str:
    with open("/proc/self/cgroup") as f:
        return f.read()


def mount_keys(m: Mount) -> list[str]:
    """What a cgroup v1 mount holds, as /proc/self/cgroup names it
    (``cpu``, ``cpuacct``, ``name=systemd``)."""
    return [o for o in m.super_options.split(",")
            if o and o not in V1_MOUNT_OPTIONS and not o.startswith("release_agent=")]


def real_hierarchies(mounts: list[Mount] | None = None) -> dict[str, Mount]:
    """controller (or name=X) -> the visible cgroup v1 mount of it."""
    out: dict[str, Mount] = {}
    for m in visible_mounts(mounts):
        if m.fstype == "cgroup":
            for key in mount_keys(m):
                out.setdefault(key, m)
    return out


def write_file(path: str, value: str) -> None:
    """One write() of ``value``, as a cgroup file takes one command.
    O_TRUNC: cgroupfs and the FUSE trees take each write() as the whole
    value anyway, but a tree of plain files (the tmpfs backend) cannot see
    where a write ended, and one that does not truncate is laid over the
    old text (268435456 over 9223372036854771712 reads 2684354566854771712)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class RunCgroups:
    """The real cgroups one ``fakefs run`` makes, joins and removes. Made
    while the real hierarchies are still visible (before the fake tree goes
    over them): their cgroup.procs files are kept open, so the command
    joins them through those descriptors later."""

    def __init__(self, name: str):
        self.name = name
        self.made: list[str] = []  # real child cgroup directories, in order made
        self.procs_fds: list[int] = []
        self.mounted: list[str] = []  # mounts made so a controller gets listed, in order made

    def mount_unlisted(self, controllers: list[str], target: str) -> list[str]:
        """Mount a real hierarchy of each controller /proc/self/cgroup does
        not list, at ``target``/<dir> (on a fresh tmpfs over ``target``
        first, so no directory is made in what was there). Returns the
        controllers still unlisted, with why, as one-line reasons."""
        listed = own_cgroups(read_own_cgroups())
        missing = [c for c in controllers if c not in listed]
        problems = []
        if not missing:
            return problems
        try:
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
        except OSError as exc:
            return [f"{c}: no line in /proc/self/cgroup, and no tmpfs at {target} to mount it on: {exc.strerror}"
                    for c in missing]
        self.mounted.append(target)
        for controller in missing:
            errors = []
            for options in MOUNT_OPTIONS.get(controller, [controller]):
                where = os.path.join(target, options)
                os.makedirs(where, exist_ok=True)
                try:
                    mount("cgroup", where, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
                except OSError as exc:
                    errors.append(f"mount -t cgroup -o {options}: {errno.errorcode.get(exc.errno, exc.errno)}")
                    os.rmdir(where)
                    continue
                self.mounted.append(where)
                # systemd's aliases of a co-mounted hierarchy (cpu -> cpu,cpuacct),
                # which the fake tree's layout then keeps
                for alias in options.split(",") if "," in options else []:
                    if not os.path.lexists(os.path.join(target, alias)):
                        os.symlink(options, os.path.join(target, alias))
                break
            if controller not in own_cgroups(read_own_cgroups()):
                problems.append(f"{controller}: no line in /proc/self/cgroup and no hierarchy of it can be "
                                f"mounted here ({'; '.join(errors) or 'mounted, still not listed'})")
        return problems

    def make_children(self, keys: list[str]) -> dict[str, str]:
        """A fresh child in each real hierarchy of ``keys`` where this
        process sits at the root. Returns the /proc/self/cgroup paths the
        command will have ({key: path}) for every key it changes."""
        own = own_cgroups(read_own_cgroups())
        hierarchies = real_hierarchies()
        changed: dict[str, str] = {}
        done: dict[int, str] = {}  # mount id -> new path (co-mounted controllers)
        for key in keys:
            m = hierarchies.get(key)
            if m is None or own.get(key) not in ("/", "") or m.root != "/":
                continue
            if m.mount_id not in done:
                child = os.path.join(m.mountpoint, self.name)
                os.mkdir(child)
                self.made.append(child)
                if "cpuset" in mount_keys(m):
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        write_file(os.path.join(child, f), _read(os.path.join(m.mountpoint, f)))
                self.procs_fds.append(os.open(os.path.join(child, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC))
                done[m.mount_id] = "/" + self.name
            for k in mount_keys(m):
                changed[k] = done[m.mount_id]
        return changed

    def join(self) -> None:
        """In the command's process before exec."""
        me = str(os.getpid()).encode()
        for fd in self.procs_fds:
            os.write(fd, me)

    def members(self) -> set[int]:
        pids: set[int] = set()
        for child in self.made:
            try:
                pids.update(int(p) for p in _read(os.path.join(child, "cgroup.procs")).split())
            except (OSError, ValueError):
                pass
        return pids

    def remove(self, timeout: float = 5.0) -> list[str]:
        """Remove what was made, once its processes are gone. Returns problems."""
        problems = []
        for fd in self.procs_fds:
            os.close(fd)
        self.procs_fds = []
        for child in reversed(self.made):
            deadline = time.monotonic() + timeout
            while True:
                try:
                    os.rmdir(child)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    # EBUSY until the kernel has taken the last exited task out
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        problems.append(f"rmdir {child}: {exc.strerror}")
                        break
                    time.sleep(0.02)
        self.made = []
        for where in reversed(self.mounted):
            try:
                umount(where, detach=True)
            except OSError as exc:
                problems.append(f"umount {where}: {exc.strerror}")
        self.mounted = []
        return problems
