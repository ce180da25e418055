"""Surfaces: one vocabulary of cgroupfs operations over several implementations.

The differential suite runs the same operations against the real cgroup v1
of this machine and against fakefs, and compares what each one answers.

Every operation works on a path *relative to a throwaway base cgroup* that
the surface creates as a child of its hierarchy's root (``fakefs-diff-<rand>``)
and returns an :data:`Outcome`: ``("ok", value)`` or ``("err", "EINVAL")``
(the errno's name). A model bug that is not a KernelError comes back as
``("exc", "TypeError: ...")`` so one crash does not hide the other results.

Implementations:

* :class:`PathSurface` does plain ``os.*`` calls under any directory laid out
  like ``/sys/fs/cgroup`` (one directory per hierarchy).
  ``KernelSurface`` is a PathSurface over ``/sys/fs/cgroup``; a FUSE mount
  of fakefs is a PathSurface over its mount point (see ``CANDIDATES``).
* :class:`ModelSurface` drives ``fakefs.model`` directly (no mount), playing
  the part of the VFS + FUSE backend for the operations the model has no
  method for (open(O_CREAT), unlink, the VFS checks of rmdir/rename).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import signal
import stat
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pytest

from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.kernfs import kernfs_order
from fakefs.model.kparse import kernel_strstrip, kstrtoll
from fakefs.model.tree import CgroupModel

Outcome = tuple  # ("ok", value) | ("err", "ENAME") | ("exc", "Type: msg")

CGROUP_ROOT = "/sys/fs/cgroup"
BASE_PREFIX = "fakefs-diff-"

# The hierarchies under test, as mount options; the directory is the
# controller name, or the name= value (this machine mounts cpu and cpuacct
# separately, see /proc/self/mountinfo).
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "name=systemd")


def hier_dir(controller: str) -> str:
    return controller[5:] if controller.startswith("name=") else controller


def errname(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def fmt(outcome: Outcome) -> str:
    """Outcome as it reads best in a failure message: ``ok 5`` / ``err EINVAL``."""
    kind, value = outcome
    if kind != "ok":
        return f"{kind} {value}"
    text = repr(value)
    return f"ok {text[:400]}...({len(text)} chars)" if len(text) > 400 else f"ok {text}"


def short(value: object, limit: int = 40) -> str:
    """repr() of a step argument, long inputs elided with their length."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}...({len(value)} chars)"
    return repr(value)


def describe(step: tuple) -> str:
    return " ".join([step[0]] + [short(a) for a in step[1:]])


def require(condition: bool, reason: str) -> None:
    """Skip when the machine lacks what a kernel comparison needs; under CI
    (environment variable CI set) that is a broken runner, so fail instead."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"required for the differential suite under CI: {reason}", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------
# Host facts of the machine the kernel surface runs on
# ---------------------------------------------------------------------------

def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return default


def machine_host_facts() -> HostFacts:
    """The HostFacts a fakefs daemon on this machine is given (read-only
    reads of sysfs/procfs), so the model is compared like for like."""
    from fakefs.host.facts import read_host_facts

    return read_host_facts()


# ---------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------

class Surface:
    """Operations on paths relative to this surface's base cgroup ("" is the
    base itself). Subclasses implement the primitives; ``run`` plays a script."""

    label = "surface"

    def __init__(self, controller: str):
        self.controller = controller
        self.hier = hier_dir(controller)
        self.basename = BASE_PREFIX + secrets.token_hex(4)
        self.sleepers: dict[str, int] = {}  # script name -> pid

    # primitives ---------------------------------------------------------
    def mkdir(self, rel: str) -> Outcome: raise NotImplementedError
    def rmdir(self, rel: str) -> Outcome: raise NotImplementedError
    def rename(self, rel: str, new_rel: str) -> Outcome: raise NotImplementedError
    def create(self, rel: str) -> Outcome: raise NotImplementedError  # open(O_WRONLY|O_CREAT)
    def unlink(self, rel: str) -> Outcome: raise NotImplementedError
    def listdir(self, rel: str) -> dict[str, int]: raise NotImplementedError
    def list_root(self) -> dict[str, int]: raise NotImplementedError  # read-only
    def read(self, rel: str) -> Outcome: raise NotImplementedError
    def write(self, rel: str, data: bytes) -> Outcome: raise NotImplementedError
    def spawn_sleeper(self) -> int: raise NotImplementedError
    def kill_sleeper(self, pid: int) -> None: raise NotImplementedError
    def close(self) -> None: raise NotImplementedError

    # helpers --------------------------------------------------------------
    def pid_of(self, name: str) -> int:
        if name not in self.sleepers:
            self.sleepers[name] = self.spawn_sleeper()
        return self.sleepers[name]

    def normalize(self, text: str) -> str:
        """Replace this surface's sleeper pids with their script names, so
        that cgroup.procs of two surfaces compare equal."""
        for name, pid in self.sleepers.items():
            text = re.sub(rf"\b{pid}\b", f"<{name}>", text)
        return text

    def expand(self, data: str) -> bytes:
        """``{S1}``, ``{S1:#x}``... in an input become a sleeper's pid."""
        names = set(re.findall(r"\{(\w+)(?::[^}]*)?\}", data))
        if not names:
            return data.encode("latin-1")
        return data.format(**{n: self.pid_of(n) for n in names}).encode("latin-1")

    def run(self, steps: Iterable[tuple]) -> list[tuple[str, Outcome]]:
        """Play a script of steps and return its transcript.

        Steps: ("mkdir", rel) ("rmdir", rel) ("rename", rel, new) ("create",
        rel) ("unlink", rel) ("read", rel) ("write", rel, text) ("list", rel)
        (its child cgroups) ("kill", sleeper). Text may name sleepers as
        ``{S1}``; read results are normalised back to ``<S1>``.
        """
        transcript = []
        for step in steps:
            op, *args = step
            if op == "write":
                data = self.expand(args[1])
                out = self.write(args[0], data)
                if data != args[1].encode("latin-1") and out == ("ok", len(data)):
                    # Pids differ in length between surfaces: compare "all of it".
                    out = ("ok", "all bytes")
            elif op == "read":
                out = self.read(args[0])
                if out[0] == "ok":
                    out = ("ok", self.normalize(out[1]))
            elif op == "list":
                # Child cgroups only: control files are the inventory tests' job.
                try:
                    out = ("ok", sorted(n for n, m in self.listdir(args[0]).items() if m == stat.S_IFDIR))
                except OSError as e:
                    out = ("err", errname(e.errno))
                except KernelError as e:
                    out = ("err", errname(e.errno))
            elif op == "kill":
                self.kill_sleeper(self.sleepers.pop(args[0]))
                out = ("ok", None)
            else:
                out = getattr(self, op)(*args)
            transcript.append((describe(step), out))
        return transcript


# ---------------------------------------------------------------------------
# Real directories: the kernel, or a FUSE mount of fakefs
# ---------------------------------------------------------------------------

def _pid_candidates(data: bytes) -> set[int]:
    """The pid a procs/tasks write names, as the kernel reads it:
    kstrtoint(strstrip(buf), 0) on the NUL-terminated buffer (both with and
    without the NUL cut, to err on refusing). Reading digits in other bases
    as well refused innocent writes: a sleeper's pid "4803" read as hex is
    18435, which may be any live process."""
    found: set[int] = set()
    raw = data.decode("latin-1")
    # The kernel parses a C string: a NUL ends it.
    for text in {kernel_strstrip(raw), kernel_strstrip(raw.split("\0")[0])}:
        if len(text) > 40:
            continue  # far beyond any pid
        try:
            found.add(kstrtoll(text))
        except KernelError:
            pass
    return found


class PathSurface(Surface):
    """Plain os.* calls under ``root_dir/<hierarchy>/fakefs-diff-<rand>``.

    Safety (the machine is shared): every path stays under the base child;
    procs/tasks writes may only name this surface's own sleepers (never pid
    0 = ourselves, never another process), and never on the memory
    hierarchy, where our sleepers must stay in our own memory cgroup.
    """

    label = "path"

    def __init__(self, root_dir: str, controller: str, label: str | None = None):
        super().__init__(controller)
        if label:
            self.label = label
        self.hier_root = os.path.join(root_dir, self.hier)
        self.base = os.path.join(self.hier_root, self.basename)
        self._procs: dict[int, subprocess.Popen] = {}
        os.mkdir(self.base)

    def _path(self, rel: str) -> str:
        parts = [p for p in rel.split("/") if p]
        if ".." in parts:
            raise ValueError(f"path escapes the base cgroup: {rel!r}")
        return os.path.join(self.base, *parts) if parts else self.base

    @staticmethod
    def _call(fn: Callable[[], object]) -> Outcome:
        try:
            return ("ok", fn())
        except OSError as e:
            return ("err", errname(e.errno))

    def mkdir(self, rel):
        return self._call(lambda: os.mkdir(self._path(rel)))

    def rmdir(self, rel):
        if not rel.strip("/"):
            raise ValueError("the base is removed by close()")
        return self._call(lambda: os.rmdir(self._path(rel)))

    def rename(self, rel, new_rel):
        return self._call(lambda: os.rename(self._path(rel), self._path(new_rel)))

    def create(self, rel):
        return self._call(lambda: os.close(os.open(self._path(rel), os.O_WRONLY | os.O_CREAT, 0o644)))

    def unlink(self, rel):
        return self._call(lambda: os.unlink(self._path(rel)))

    @staticmethod
    def _entries(path: str) -> dict[str, int]:
        out = {}
        for name in os.listdir(path):
            st = os.lstat(os.path.join(path, name))
            # Directory permissions are the backend's business, not the
            # model's: compare only the type for directories.
            out[name] = stat.S_IFDIR if stat.S_ISDIR(st.st_mode) else st.st_mode & 0o177777
        return out

    def listdir(self, rel):
        return self._entries(self._path(rel))

    def list_root(self):
        # Only control files: the real root holds other people's cgroups.
        return {n: m for n, m in self._entries(self.hier_root).items() if m != stat.S_IFDIR}

    def read(self, rel):
        def go():
            fd = os.open(self._path(rel), os.O_RDONLY)
            try:
                chunks = []
                while chunk := os.read(fd, 65536):
                    chunks.append(chunk)
                return b"".join(chunks).decode("latin-1")
            finally:
                os.close(fd)
        return self._call(go)

    def write(self, rel, data):
        path = self._path(rel)
        if os.path.basename(path) in ("cgroup.procs", "tasks"):
            self._check_attach(data)

        def go():
            # No O_CREAT/O_TRUNC: exactly one write(2) of the buffer, as kernfs sees it.
            fd = os.open(path, os.O_WRONLY)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)
        return self._call(go)

    def _check_attach(self, data: bytes) -> None:
        mine = set(self._procs)
        for pid in _pid_candidates(data):
            if pid in mine:
                if self.hier == "memory":
                    raise RuntimeError("refusing to move a process on the real memory hierarchy")
                continue
            if pid == 0 or (pid > 0 and os.path.exists(f"/proc/{pid}")):
                raise RuntimeError(f"refusing a procs/tasks write naming pid {pid} (not our sleeper)")

    def spawn_sleeper(self):
        proc = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._procs[proc.pid] = proc
        return proc.pid

    def kill_sleeper(self, pid):
        proc = self._procs.pop(pid)
        proc.send_signal(signal.SIGKILL)
        # Reaped => it has left its cgroups (cgroup_exit runs in do_exit).
        proc.wait(timeout=10)

    def close(self):
        """Kill our sleepers, then rmdir deepest-first; retries ride out the
        short window in which a reaped task still pins a css_set."""
        errors = []
        for pid in list(self._procs):
            try:
                self.kill_sleeper(pid)
            except Exception as e:  # keep cleaning
                errors.append(f"kill {pid}: {e!r}")
        self.sleepers.clear()
        if not os.path.isdir(self.base):
            return
        for dirpath, _dirs, _files in os.walk(self.base, topdown=False):
            for attempt in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or attempt == 49:
                        errors.append(f"rmdir {dirpath}: {errname(e.errno)}")
                        break
                    time.sleep(0.02)
        if errors:
            raise RuntimeError(f"cleanup of {self.base} incomplete: {errors}")


def KernelSurface(controller: str) -> PathSurface:
    return PathSurface(CGROUP_ROOT, controller, label="kernel")


# ---------------------------------------------------------------------------
# The pure model
# ---------------------------------------------------------------------------

def machine_hierarchies() -> tuple[str, ...]:
    """The hierarchies this machine announces in mountinfo under
    /sys/fs/cgroup, co-mounted as it mounts them (the layout fakefs copies
    where it covers them, fakefs/manager/layout.py); where none are (no
    cgroup v1 here: the kernel tests skip, or fail under CI), the hierarchies
    of CONTROLLERS one per directory."""
    from fakefs.manager.layout import announced_mounts

    specs = tuple(dict.fromkeys(a.spec for a in announced_mounts(CGROUP_ROOT) if a.spec is not None))
    return specs or CONTROLLERS


MACHINE_HIERARCHIES = machine_hierarchies()


class ModelSurface(Surface):
    """fakefs.model driven directly. Where the model has no operation (the
    VFS answers, or the FUSE backend must), the errno the backend has to
    return is decided here, with the kernel function that decides it."""

    label = "model"
    _next_pid = 400000  # fake pids, in StaticProcessTable only

    def __init__(self, controller: str, host: HostFacts | None = None):
        super().__init__(controller)
        self.processes = StaticProcessTable()
        self.model = CgroupModel(host=host or machine_host_facts(), processes=self.processes,
                                 hierarchies=MACHINE_HIERARCHIES)
        self.h = self.model.hierarchy(self.hier)
        self.base = self.h.mkdir(self.h.root, self.basename)

    @staticmethod
    def _call(fn: Callable[[], object]) -> Outcome:
        try:
            return ("ok", fn())
        except KernelError as e:
            return ("err", errname(e.errno))
        except Exception as e:  # a model bug: report it, do not abort the comparison
            return ("exc", f"{type(e).__name__}: {e}")

    def _cg(self, rel: str):
        node = self.base
        for part in (p for p in rel.split("/") if p):
            if part in self.h.files(node):
                # Walking through a file: path_lookupat gives ENOTDIR.
                raise KernelError(errno.ENOTDIR, rel)
            if part not in node.children:
                raise KernelError(errno.ENOENT, rel)
            node = node.children[part]
        return node

    def _split(self, rel: str):
        parent, _, name = rel.strip("/").rpartition("/")
        return self._cg(parent), name

    def _kind(self, rel: str) -> str:
        """"dir", "file" or "none" for the last component."""
        parent, name = self._split(rel)
        if name in parent.children:
            return "dir"
        if name in self.h.files(parent):
            return "file"
        return "none"

    def mkdir(self, rel):
        def go():
            parent, name = self._split(rel)
            self.h.mkdir(parent, name)
        return self._call(go)

    def rmdir(self, rel):
        def go():
            if self._kind(rel) == "file":
                raise KernelError(errno.ENOTDIR, "rmdir of a file (VFS may_delete)")
            self.h.rmdir(self._cg(rel))
        return self._call(go)

    def rename(self, rel, new_rel):
        def go():
            kind, new_kind = self._kind(rel), self._kind(new_rel)
            if kind == "none":
                raise KernelError(errno.ENOENT, rel)
            if kind == "file":
                # cgroup1_rename: only directories (cgroups) may be renamed.
                raise KernelError(errno.ENOTDIR, "rename of a control file")
            if new_kind == "file":
                # vfs_rename -> may_delete(isdir): a directory cannot replace a non-directory.
                raise KernelError(errno.ENOTDIR, "rename onto a file")
            new_parent, new_name = self._split(new_rel)
            self.h.rename(self._cg(rel), new_parent, new_name)
        return self._call(go)

    def create(self, rel):
        def go():
            kind = self._kind(rel)
            if kind == "dir":
                raise KernelError(errno.EISDIR, "open(O_WRONLY) of a directory")
            if kind == "none":
                # kernfs directories have no ->create: lookup_open() returns
                # EACCES. The FUSE backend's create() must answer the same.
                raise KernelError(errno.EACCES, "no file creation in cgroupfs")
            # O_CREAT on an existing file just opens it.
        return self._call(go)

    def unlink(self, rel):
        def go():
            kind = self._kind(rel)
            if kind == "none":
                raise KernelError(errno.ENOENT, rel)
            if kind == "dir":
                raise KernelError(errno.EISDIR, "unlink of a directory (VFS)")
            # kernfs has no ->unlink: vfs_unlink() returns EPERM. The FUSE
            # backend's unlink() must answer the same.
            raise KernelError(errno.EPERM, "control files cannot be removed")
        return self._call(go)

    def _entries(self, cg) -> dict[str, int]:
        out = {}
        files = self.h.files(cg)
        for name in kernfs_order([*files, *cg.children]):  # as the FUSE backends list them
            if name in cg.children:
                out[name] = stat.S_IFDIR
                continue
            attrs = cg.attrs.get(name)
            mode = attrs.mode if attrs is not None and attrs.mode is not None else files[name].mode
            out[name] = stat.S_IFREG | mode
        return out

    def listdir(self, rel):
        return self._entries(self._cg(rel))

    def list_root(self):
        return {n: m for n, m in self._entries(self.h.root).items() if m != stat.S_IFDIR}

    def _file_op(self, rel: str, fn):
        def go():
            parent, name = self._split(rel)
            if name in parent.children:
                raise KernelError(errno.EISDIR, "a cgroup directory")
            return fn(parent, name)
        return self._call(go)

    def read(self, rel):
        return self._file_op(rel, lambda cg, name: self.h.read_file(cg, name))

    def write(self, rel, data):
        return self._file_op(rel, lambda cg, name: self.h.write_file(cg, name, data))

    def spawn_sleeper(self):
        ModelSurface._next_pid += 1
        return self.processes.spawn(ModelSurface._next_pid)

    def kill_sleeper(self, pid):
        self.processes.exit(pid)

    def close(self):
        self.sleepers.clear()


# ---------------------------------------------------------------------------
# What the kernel is compared against
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SurfaceFactory:
    id: str
    make: Callable[[str], Surface]  # controller -> surface with a fresh base


# Each candidate is compared with the real kernel: the model directly, and
# FUSE mounts of fakefs (conftest.diff_mount, PathSurface over them).
# "mount" is a real FUSE mount of fakefs laid out like this machine (the
# default backend); "mount-raw" the same served by fuse-raw, which on this
# kernel leaves OPEN out and lets the kernel keep every file's pages. The
# conftest mounts each once per session (or uses $FAKEFS_DIFF_MOUNT for
# "mount").
CANDIDATES: list[SurfaceFactory] = [SurfaceFactory("model", ModelSurface),
                                    SurfaceFactory("mount", lambda c: None),
                                    SurfaceFactory("mount-raw", lambda c: None)]


@contextmanager
def machine_layout_mount(backend: str | None = None) -> Iterator[str]:
    """fakefs mounted (through the CLI) with this machine's hierarchies, in
    a world-searchable scratch directory (steps may run as another user);
    unmounted and removed afterwards."""
    from tests.support import fakefs, require_root_and_fuse

    require_root_and_fuse()
    scratch = tempfile.mkdtemp(prefix="fakefs-diff-mnt-")
    os.chmod(scratch, 0o755)
    path = os.path.join(scratch, "mnt")
    os.mkdir(path)
    args = ["mount", path, *(["--backend", backend] if backend else [])]
    for h in MACHINE_HIERARCHIES:
        args += ["--hierarchy", h]
    try:
        res = fakefs(*args)
        assert res.returncode == 0, res.stderr
        try:
            yield path
        finally:
            fakefs("umount", path)
    finally:
        os.rmdir(path)
        os.rmdir(scratch)


def kernel_cgroup_v1_available(controller: str) -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root to create cgroups"
    path = os.path.join(CGROUP_ROOT, hier_dir(controller))
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[4] == path and fields[sep + 1] == "cgroup":
                    if controller in fields[sep + 3].split(","):
                        return True, ""
    except OSError as e:
        return False, f"cannot read mountinfo: {e}"
    return False, f"cgroup v1 {controller} not mounted at {path}"


def compare(label: str, transcript_a: list, transcript_b: list, name_a: str, name_b: str) -> list[str]:
    """Step-by-step differences of two transcripts, one line each."""
    out = []
    for (step, a), (_, b) in zip(transcript_a, transcript_b):
        if a != b:
            out.append(f"[{label}] {step}: {name_a} {fmt(a)} | {name_b} {fmt(b)}")
    return out
