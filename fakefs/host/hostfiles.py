"""The machine's own /proc, /sys/devices/system/cpu and real cgroup
hierarchies, reached through private mounts that nothing bound later covers.

fakefs binds views over /proc/meminfo, /proc/stat, ... and
/sys/devices/system/cpu/online, and ``fakefs run`` serves a fake tree over
/sys/fs/cgroup. A daemon must still read the real files: one that read a
view it serves through its own mount would wait on itself for ever, and the
limits of a real cgroup are not where the fake covers them. A bind mount of
a directory without MS_REC carries none of the mounts below it, a fresh
mount of procfs, sysfs or a cgroup hierarchy none at all, and a mount
detached at once (``umount -l``) stays usable through a directory fd opened
before while no path leads to it. So each is mounted in a scratch directory,
opened, and detached; files below are read relative to that fd, or by path
through ``/proc/self/fd/N/``.

Only reads go through these handles.
"""

from __future__ import annotations

import os
import tempfile
import time

from fakefs.host.mountinfo import read_mounts
from fakefs.host.procfs import STAT_STARTTIME, read_text, stat_fields, status_fields
from fakefs.host.sysmount import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, mount, umount
from fakefs.model.procviews import hierarchies_of, parse_proc_cgroup

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class PrivateDir:
    """An open directory (usually of a detached mount) to read files below."""

    def __init__(self, fd: int, what: str):
        self.fd = fd
        self.what = what  # how it was reached, for messages

    @property
    def path(self) -> str:
        """A path that leads into the directory (through the fd)."""
        return f"/proc/self/fd/{self.fd}"

    def read(self, rel: str) -> str | None:
        """The text of the file ``rel`` below (None when it cannot be read)."""
        try:
            fd = os.open(rel.lstrip("/") or ".", _FILE_FLAGS, dir_fd=self.fd)
        except OSError:
            return None
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return b"".join(chunks).decode("latin-1")
                chunks.append(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)

    def listdir(self, rel: str) -> list[str]:
        try:
            fd = os.open(rel.strip("/") or ".", _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self.fd)
        except OSError:
            return []
        try:
            return os.listdir(fd)
        except OSError:
            return []
        finally:
            os.close(fd)

    def readlink(self, rel: str) -> str | None:
        try:
            return os.readlink(rel.lstrip("/"), dir_fd=self.fd)
        except OSError:
            return None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_detached(source: str, fstype: str | None, options: str | None = None, below: str = "") -> PrivateDir:
    """Mount ``source`` (a bind without MS_REC when ``fstype`` is None) in a
    scratch directory, open it (or ``below`` inside it), detach the mount and
    return the open directory. Raises OSError."""
    scratch = tempfile.mkdtemp(prefix="fakefs-private-")
    try:
        if fstype is None:
            mount(source, scratch, None, MS_BIND)
        else:
            mount(source, scratch, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
        try:
            fd = os.open(os.path.join(scratch, below), _DIR_FLAGS)
        finally:
            umount(scratch, detach=True)
    finally:
        os.rmdir(scratch)
    what = f"bind of {source}" if fstype is None else f"{fstype} mount{' -o ' + options if options else ''}"
    return PrivateDir(fd, what)


_private: dict[str, PrivateDir | None] = {}


def _first_that_opens(key: str, attempts) -> PrivateDir | None:
    if key not in _private:
        _private[key] = None
        for attempt in attempts:
            try:
                _private[key] = attempt()
                break
            except OSError:
                continue
    return _private[key]


def private_proc() -> PrivateDir | None:
    """This process's private handle on the real procfs (None when no
    mount is allowed here: then nothing can be bound over /proc either)."""
    return _first_that_opens("proc", (lambda: open_detached("/proc", None),
                                      lambda: open_detached("proc", "proc")))


def private_cpu_dir() -> PrivateDir | None:
    """A private handle on the real /sys/devices/system/cpu."""
    return _first_that_opens("cpu", (lambda: open_detached("/sys/devices/system/cpu", None),
                                     lambda: open_detached("sysfs", "sysfs", below="devices/system/cpu")))


def open_private_handles() -> bool:
    """Open both handles now (a daemon does this at start, before anything
    it serves may be bound over the real files). True when both opened."""
    return private_proc() is not None and private_cpu_dir() is not None


def real_path(path: str) -> str:
    """``path`` (under /proc or /sys/devices/system/cpu) through this
    process's private handle when it has one, else ``path`` itself."""
    for prefix, key in (("/proc", "proc"), ("/sys/devices/system/cpu", "cpu")):
        handle = _private.get(key)
        if handle is not None and (path == prefix or path.startswith(prefix + "/")):
            return handle.path + path[len(prefix):]
    return path


def read_real(path: str) -> str | None:
    return read_text(real_path(path))


class RealCgroups:
    """The real cgroup v1 hierarchies as the kernel has them, whatever is
    mounted over /sys/fs/cgroup here: each hierarchy is mounted afresh (the
    kernel gives the existing hierarchy for the same controllers) and
    detached; where that is refused, a visible cgroup mount of it is bound.
    A hierarchy that cannot be reached reads as missing."""

    RETRY_S = 5.0

    def __init__(self, proc: PrivateDir | None = None):
        self.proc = proc
        self._dirs: dict[str, PrivateDir | None] = {}  # hierarchy options -> handle
        self._by_key: dict[str, str] = {}  # controller or name=X -> hierarchy options
        self._looked_at = 0.0
        self._learn()

    def _proc_read(self, rel: str) -> str | None:
        if self.proc is not None:
            return self.proc.read(rel)
        return read_real(f"/proc/{rel}")

    def _learn(self) -> None:
        """Which hierarchies exist (this process's /proc/self/cgroup)."""
        self._looked_at = time.monotonic()
        for options in hierarchies_of(self._proc_read("self/cgroup") or ""):
            for key in options.split(","):
                self._by_key[key] = options

    def _dir(self, key: str) -> PrivateDir | None:
        options = self._by_key.get(key)
        if options is None and time.monotonic() - self._looked_at > self.RETRY_S:
            self._learn()  # gVisor lists a controller once a hierarchy of it is mounted
            options = self._by_key.get(key)
        if options is None:
            return None
        if options not in self._dirs:
            self._dirs[options] = self._open(options)
        return self._dirs[options]

    def _open(self, options: str) -> PrivateDir | None:
        try:
            return open_detached("cgroup", "cgroup", options)
        except OSError:
            pass
        wanted = set(options.split(","))
        for m in read_mounts(f"{self.proc.path}/self/mountinfo" if self.proc else "/proc/self/mountinfo"):
            if m.fstype == "cgroup" and m.root == "/" and wanted <= set(m.super_options.split(",")):
                try:
                    return open_detached(m.mountpoint, None)
                except OSError:
                    continue
        return None

    def has(self, controller: str) -> bool:
        return self._dir(controller) is not None

    def cgroups_of(self, pid: int) -> dict[str, str]:
        """{controller or name=X: path} of a process (or thread)."""
        return parse_proc_cgroup(self._proc_read(f"{pid}/cgroup") or "")

    def read(self, controller: str, path: str, name: str) -> str | None:
        d = self._dir(controller)
        if d is None:
            return None
        rel = path.strip("/")
        return d.read(f"{rel}/{name}" if rel else name)

    MAX_TIDS = 65536

    def subtree_tids(self, controller: str, path: str) -> list[int]:
        """The threads in a cgroup and its descendants (``tasks`` files)."""
        d = self._dir(controller)
        if d is None:
            return []
        out: list[int] = []
        pending = [path.strip("/")]
        while pending and len(out) < self.MAX_TIDS:
            rel = pending.pop()
            for line in (d.read(f"{rel}/tasks" if rel else "tasks") or "").split():
                if line.isdigit():
                    out.append(int(line))
            for name in d.listdir(rel):
                child = f"{rel}/{name}" if rel else name
                if not name.startswith(".") and d.read(f"{child}/tasks") is not None:
                    pending.append(child)
        return out


# -- processes -------------------------------------------------------------------


class ProcessInfo:
    """What the views need about the reading process, from the private procfs."""

    def __init__(self, proc: PrivateDir | None):
        self.proc = proc
        self.clk_tck = os.sysconf("SC_CLK_TCK")

    def read(self, rel: str) -> str | None:
        return self.proc.read(rel) if self.proc is not None else read_real(f"/proc/{rel}")

    def pid_namespace(self, pid: int | str) -> str | None:
        if self.proc is not None:
            return self.proc.readlink(f"{pid}/ns/pid")
        try:
            return os.readlink(f"/proc/{pid}/ns/pid")
        except OSError:
            return None

    def _status(self, pid: int) -> dict[str, str]:
        return status_fields(self.read(f"{pid}/status") or "")

    def namespace_init(self, pid: int) -> int | None:
        """The init (PID 1) of ``pid``'s innermost PID namespace, as a PID
        here: the nearest ancestor whose innermost NSpid is 1."""
        for _ in range(4096):
            status = self._status(pid)
            nspids = status.get("NSpid", "").split()
            if not nspids:
                return None
            if nspids[-1] == "1":
                return pid
            try:
                pid = int(status.get("PPid", "0"))
            except ValueError:
                return None
            if pid <= 0:
                return None
        return None

    def start_ticks(self, pid: int) -> int | None:
        text = self.read(f"{pid}/stat")
        if not text:
            return None
        try:
            return int(stat_fields(text)[STAT_STARTTIME])
        except (ValueError, IndexError):
            return None

    def age_s(self, pid: int) -> float | None:
        """How long ago ``pid`` started (on the boot-time clock, as procfs)."""
        start = self.start_ticks(pid)
        if start is None:
            return None
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        return max(0.0, now - start / self.clk_tck)
