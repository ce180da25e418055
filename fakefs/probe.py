"""``fakefs probe``: what this sandbox allows, in a few seconds.

Every check gives a verdict (``ok``: true, false, or null when it could not
be asked) and a one-line reason. The probe itself uses the standard library
only. Each check runs in a forked child of its own (its own process group),
so nothing the sandbox does can hang the probe: a child still running at its
deadline is killed with its whole group, its verdict is null, "timed out
after N s", and the others are not held up (they all run at once). The FUSE
handshakes import their backend (pyfuse3, trio) in their child, so the probe
still runs and says so when pyfuse3 cannot be imported. A check that mounts
does it in scratch directories, in its child's own mount namespace where one
can be made: its mounts end with the child, even a killed one, not even a
stale FUSE mount stays; scratch directories a killed child leaves are swept
(by one more child under a deadline).

The summary says which backend ``--backend auto`` will use (and why each one
before it was passed over) and, for kubelet and runc under ``fakefs run``,
what fakefs fixes and what will still stop them here, with the error text
the program would print.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import itertools
import json
import os
import select
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

# Standard library only below fakefs.probe (fakefs.backends imports its
# backends on demand): the probe must run, and say so, where pyfuse3, trio
# or psutil cannot be imported. tests/test_probe.py checks it.
from fakefs.backends import AUTO_ORDER, BACKENDS
from fakefs.errors import MountError
from fakefs.host import mountinfo
from fakefs.host.gvisor import gvisor_evidence
from fakefs.host.hostfiles import ProcessInfo
from fakefs.host.procfs import read_text, status_value
from fakefs.host.sysmount import (CLONE_NEWNS, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_REC, libc, mount,
                                  umount, unshare_mount_namespace)

SCHEMA = 1
REAP_POLL = 0.01  # seconds


@dataclass(frozen=True)
class Timing:
    """Seconds. Every check runs in a child killed at its deadline; they all
    start at once, so the probe ends by the last deadline plus
    ``kill_grace``, plus a sweep (``sweep`` + ``kill_grace``) when a killed
    check left scratch directories. ``budget`` counts from the start of the
    process (a loaded machine can take seconds to start Python), at most
    ``max_startup`` before the checks start: no deadline is later than
    ``budget - reserve``, so the command ends within ``budget`` (the README
    promises under 5 s). ``fakefs probe --budget`` scales them all."""

    budget: float = 4.5
    check: float = 2.5
    handshake: float = 3.0  # imports, then a fresh FUSE server: model, mount, INIT, a request
    mountinfo: float = 1.0  # the mounting checks wait for it
    kill_grace: float = 0.2  # after SIGKILL, how long to wait for the child to be gone
    sweep: float = 0.5
    max_startup: float = 2.0

    @classmethod
    def for_budget(cls, budget: float) -> "Timing":
        scale = budget / cls.budget
        return cls(budget, cls.check * scale, cls.handshake * scale, cls.mountinfo * scale,
                   cls.kill_grace * scale, cls.sweep * scale, cls.max_startup * scale)

    @property
    def reserve(self) -> float:
        return 2 * self.kill_grace + self.sweep + 0.1  # the last 0.1 s: the report


DEFAULT_TIMING = Timing()

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb",
                  "net_cls", "net_prio", "perf_event", "rdma")
KUBELET_TUNABLES = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
# kubelet's cgroup v1 manager looks these up in mountinfo (fstype cgroup).
KUBELET_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids")
CAPS = {"CAP_DAC_OVERRIDE": 1, "CAP_NET_ADMIN": 12, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
        "CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24, "CAP_SYSLOG": 34}
# Which check decides whether a backend can be used here.
BACKEND_CHECKS = {"fuse": "fuse_pyfuse3", "fuse-raw": "fuse_raw", "tmpfs": "tmpfs_backend"}

SYS_OPENAT2 = 437  # x86_64 and aarch64 alike (new syscalls share numbers)
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)
KEYCTL_JOIN_SESSION_KEYRING = 1
PR_SET_CHILD_SUBREAPER = 36


def check(ok: bool | None, reason: str, **detail) -> dict:
    out = {"ok": ok, "reason": reason}
    if detail:
        out["detail"] = detail
    return out


def _errname(err: int) -> str:
    return f"{errno.errorcode.get(err, err)} ({os.strerror(err)})"


def _mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> int:
    """0, or the errno."""
    try:
        mount(source, target, fstype, flags, data)
    except OSError as exc:
        return exc.errno
    return 0


def _umount(target: str) -> int:
    """0, or the errno."""
    try:
        umount(target, detach=True)
    except OSError as exc:
        return exc.errno
    return 0


def _umount_all(target: str) -> None:
    """Every mount stacked on ``target``, by its path: never by a look in
    mountinfo, which hangs in gVisor while a FUSE mount there goes
    unanswered (and a killed FUSE check leaves just that)."""
    for _ in range(8):
        if _umount(target):
            return


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(mountpoint, fstype, source, super options) of each mount. Read once
    per probe, before anything of the probe's is mounted (see run_probe)."""
    try:
        return [(m.mountpoint, m.fstype, m.source, m.super_options) for m in mountinfo.read_mounts()]
    except (OSError, ValueError):
        return []


# -- the checks (each runs in a child of its own: see CheckChild) ---------------------

def check_python_module(name: str) -> dict:
    try:
        importlib.import_module(name)
    except Exception as exc:  # an ImportError, or a broken extension module
        return check(False, f"{name} cannot be imported: {exc}")
    return check(True, f"{name} imports")


def check_dev_fuse() -> dict:
    if not os.path.exists("/dev/fuse"):
        return check(False, "/dev/fuse does not exist")
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return check(False, f"/dev/fuse exists but does not open: {_errname(exc.errno)}")
    return check(True, "/dev/fuse opens for reading and writing")


def detect_gvisor() -> dict:
    return check(*gvisor_evidence())


def check_openat2() -> dict:
    how = ctypes.create_string_buffer(struct.pack("QQQ", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, 0))
    fd = libc.syscall(SYS_OPENAT2, -100, b"/", how, 24)
    if fd >= 0:
        os.close(fd)
        return check(True, "openat2(2) works")
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return check(False, "openat2(2) is missing (ENOSYS): runc's cgroup library then checks every "
                            "opened cgroup file with fstatfs and refuses any that is not cgroupfs")
    return check(False, f"openat2(2) fails: {_errname(err)}")


def check_sysctl(path: str, need_write: bool) -> dict:
    full = f"/proc/sys/{path}"
    try:
        st = os.stat(full)
    except OSError as exc:
        return check(False, f"{full}: {_errname(exc.errno)}", present=False, writable=False,
                     error=_go_error(exc.errno))
    if not need_write:
        try:
            with open(full) as f:
                value = f.read().strip()
        except OSError as exc:
            return check(False, f"{full} present but unreadable: {_errname(exc.errno)}", present=True)
        return check(True, f"{full} reads {value!r}", present=True)
    # sysctl_perm(): the mode bits bind root too (gVisor even lets the open
    # through but the entry stays read-only), so look at both.
    if not st.st_mode & 0o200:
        return check(False, f"{full} is read-only here (mode {oct(st.st_mode & 0o777)})", present=True,
                     writable=False)
    try:
        os.close(os.open(full, os.O_WRONLY | os.O_CLOEXEC))
    except OSError as exc:
        return check(False, f"{full} present, open for writing: {_errname(exc.errno)}", present=True,
                     writable=False)
    return check(True, f"{full} present and writable", present=True, writable=True)


def _go_error(err: int) -> str:
    """An errno as Go programs (kubelet, runc) print it."""
    text = os.strerror(err)
    return text[:1].lower() + text[1:]


def check_dev_kmsg() -> dict:
    try:
        os.close(os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError as exc:
        return check(False, f"/dev/kmsg: {_errname(exc.errno)}", error=_go_error(exc.errno))
    return check(True, "/dev/kmsg opens")


def check_capabilities() -> dict:
    status = read_text("/proc/self/status")
    try:
        eff = int(status_value(status, "CapEff") or "0", 16) if status is not None else None
    except ValueError:
        eff = None
    if eff is None:
        return check(None, "cannot read /proc/self/status")
    have = [name for name, bit in CAPS.items() if eff >> bit & 1]
    missing = [name for name in CAPS if name not in have]
    ok = "CAP_SYS_ADMIN" in have
    reason = ("CAP_SYS_ADMIN present (mounts possible)" if ok else "no CAP_SYS_ADMIN: no mount of any kind")
    return check(ok, reason, effective=f"{eff:016x}", present=have, missing=missing)


def check_cgroup_layout(mounts: list[tuple[str, str, str, str]]) -> dict:
    v1 = [m for m in mounts if m[1] == "cgroup"]
    v2 = [m for m in mounts if m[1] == "cgroup2"]
    if v1 and v2:
        layout = "hybrid"
    elif v1:
        layout = "v1"
    elif v2:
        layout = "v2"
    else:
        layout = "none"
    where = ", ".join(sorted({m[0] for m in v1 + v2})[:6])
    reason = {"none": "no cgroup filesystem is mounted",
              "v1": f"cgroup v1 only ({where})",
              "v2": f"cgroup v2 only ({where})",
              "hybrid": f"cgroup v1 with a cgroup v2 mount ({where})"}[layout]
    return check(layout != "none", reason, layout=layout)


def mounted_v1_controllers(mounts: list[tuple[str, str, str, str]]) -> dict[str, str]:
    found = {}
    for mountpoint, fstype, _source, opts in mounts:
        if fstype == "cgroup":
            for opt in opts.split(","):
                if opt in V1_CONTROLLERS or opt.startswith("name="):
                    found.setdefault(opt, mountpoint)
    return found


# -- checks that mount: in scratch directories, through the child's ChildContext --------

def check_mount_namespace() -> dict[str, dict]:
    results = {}
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        results["mntns_unshare"] = check(False, f"unshare(CLONE_NEWNS): {_errname(err)}")
        results["mntns_private"] = check(None, "no new mount namespace to make private")
        return results
    results["mntns_unshare"] = check(True, "a new mount namespace can be made without changing propagation")
    err = _mount("none", "/", None, MS_REC | MS_PRIVATE)
    if err:
        results["mntns_private"] = check(False, f"making / private refused: {_errname(err)} "
                                                f"(util-linux `unshare -m` fails; fakefs does without it)")
    else:
        results["mntns_private"] = check(True, "propagation can be changed to private")
    return results


def check_tmpfs_mount(ctx: "ChildContext") -> dict:
    scratch = ctx.scratch_dir()
    err = ctx.mount("fakefs-probe", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    if err:
        return check(False, f"mount -t tmpfs: {_errname(err)}")
    try:
        with open(os.path.join(scratch, "f"), "w") as f:
            f.write("x")
        return check(True, "a tmpfs mounts and takes files")
    except OSError as exc:
        return check(False, f"tmpfs mounted but a file cannot be made: {_errname(exc.errno)}")
    finally:
        _umount(scratch)


def check_bind_mount_dir(ctx: "ChildContext") -> dict:
    scratch = ctx.scratch_dir()
    src_dir, dst_dir = os.path.join(scratch, "src"), os.path.join(scratch, "dst")
    os.mkdir(src_dir)
    os.mkdir(dst_dir)
    with open(os.path.join(src_dir, "marker"), "w") as f:
        f.write("bind")
    err = ctx.mount(src_dir, dst_dir, None, MS_BIND)
    if err:
        return check(False, f"bind mount of a directory: {_errname(err)}")
    seen = os.path.exists(os.path.join(dst_dir, "marker"))
    _umount(dst_dir)
    return check(seen, "a directory bind-mounts" if seen else "bind mount made but its content is not visible")


def check_bind_mount_file(ctx: "ChildContext") -> dict:
    scratch = ctx.scratch_dir()
    src_file, dst_file = os.path.join(scratch, "marker"), os.path.join(scratch, "dst-file")
    with open(src_file, "w") as f:
        f.write("bind")
    open(dst_file, "w").close()
    err = ctx.mount(src_file, dst_file, None, MS_BIND)
    if err:
        return check(False, f"bind mount of a file: {_errname(err)}")
    with open(dst_file) as f:
        seen = f.read() == "bind"
    _umount(dst_file)
    return check(seen, "a file bind-mounts (e.g. /dev/null over /dev/kmsg)" if seen else
                 "file bind mount made but its content is not visible")


def check_cgroup_v1(ctx: "ChildContext", ctrl: str, mounts: list[tuple[str, str, str, str]]) -> dict:
    mounted = mounted_v1_controllers(mounts)
    if ctrl in mounted:
        return check(True, f"authentic cgroupfs mounted at {mounted[ctrl]}", state="mounted")
    cg = ctx.scratch_dir()
    err = ctx.mount("cgroup", cg, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, ctrl)
    if err == 0:
        _umount(cg)
        return check(True, f"mount -t cgroup -o {ctrl} works here", state="mountable")
    return check(False, f"not mounted, and mount -t cgroup -o {ctrl}: {_errname(err)}", state="missing")


def check_inotify() -> dict:
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return check(False, f"inotify_init1: {_errname(ctypes.get_errno())}")
    os.close(fd)
    return check(True, "inotify works")


def check_session_keyring() -> dict:
    ret = libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None)
    err = ctypes.get_errno()
    return (check(True, "keyctl(JOIN_SESSION_KEYRING) works") if ret >= 0 else
            check(False, f"keyctl(JOIN_SESSION_KEYRING): {_errname(err)}"))


def check_child_subreaper() -> dict:
    ret = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    err = ctypes.get_errno()
    return (check(True, "prctl(PR_SET_CHILD_SUBREAPER) works") if ret == 0 else
            check(False, f"prctl(PR_SET_CHILD_SUBREAPER): {_errname(err)}"))


# -- FUSE handshakes: each backend mounts a scratch directory and answers a request -------

# backend -> (check key, what to call it). Most of a handshake's CPU time is
# imports (trio, pyfuse3, fakefs: 0.5 s of the 0.6 s it takes), and the
# probe shares the CPU with whatever the sandbox runs: one child imports
# them all (the python_* checks) and forks a child per handshake, so they
# are imported once. The children share its process group (one kill at the
# deadline takes them all) and its mount namespace.
FUSE_HANDSHAKES = {"fuse-raw": ("fuse_raw", "raw /dev/fuse server"), "fuse": ("fuse_pyfuse3", "pyfuse3 (libfuse)")}
# What each backend needs beyond the standard library, imported in that order.
BACKEND_MODULES = {"fuse-raw": ("trio", "psutil"), "fuse": ("pyfuse3",)}
SERVING_MODULES = ("fakefs.runtime.serving", "fakefs.vfs.cgroupfs", "fakefs.vfs.ops", "fakefs.host.facts",
                   "fakefs.backends.rawfuse.server")


def check_fuse_backends(ctx: "ChildContext", backends) -> dict:
    """The python_* import checks, then the FUSE handshake of each backend
    there is, each in a child forked once what it needs is imported (the raw
    server's before pyfuse3's: an import of pyfuse3 that hangs does not hold
    it up)."""
    imports: dict[str, dict] = {}
    children = []
    for backend, modules in BACKEND_MODULES.items():
        for name in modules:
            imports[name] = check_python_module(name)
            ctx.verdict(f"python_{name}", imports[name])
        if backend == "fuse-raw":
            for module in SERVING_MODULES:
                try:
                    importlib.import_module(module)
                except Exception:  # the handshake says why
                    pass
        if backend in backends:
            key, what = FUSE_HANDSHAKES[backend]
            failed = [imports[name] for name in modules if not imports[name]["ok"]]
            body = lambda b=backend, w=what, f=failed: check_fuse_handshake(ctx, b, w, f)  # noqa: E731
            children.append((key, ctx.fork(key, body)))
    for key, pid in children:
        _, status = os.waitpid(pid, 0)  # the probe's deadline bounds this wait
        if status:  # it died before its verdict
            ctx.verdict(key, check(False, f"the check's process died ({_death(status)})"))
    return {}


def check_fuse_handshake(ctx: "ChildContext", backend: str, what: str, failed_imports: list[dict]) -> dict:
    """Serve a pids tree with ``backend`` on a scratch directory, list it from
    a thread, stop."""
    dev_fuse = check_dev_fuse()
    if not dev_fuse["ok"]:
        return check(False, f"{what}: {dev_fuse['reason']}")
    if failed_imports:
        return check(False, f"{what}: {failed_imports[0]['reason']}")
    if os.geteuid() != 0:
        return check(False, f"{what}: fakefs mounts need root")
    scratch = ctx.scratch_dir()
    os.environ["FAKEFS_RUN_DIR"] = ctx.scratch_dir()
    ctx.announce_mount(scratch)  # serve() mounts it
    # Here, in the handshake's child, not at the top: serving needs trio,
    # which the probe must run without.
    from fakefs.runtime.serving import MountRequest, serve

    out: dict = {"ready": None, "listing": None, "error": None}

    def ready(err):
        out["ready"] = err is None
        if err is not None:
            out["error"] = err
            return

        def look():
            # Signals are the serving main thread's business. Under gVisor an
            # interrupted FUSE request ends with EINTR (about 1 probe in 30 on a
            # loaded machine, none in 60 with signals blocked here), which says
            # nothing about the mount: block them, and repeat an interrupted
            # request as PEP 475 would (os.listdir does not).
            signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP})
            for _attempt in range(3):
                try:
                    out["listing"] = sorted(os.listdir(scratch))
                    os.stat(os.path.join(scratch, "pids", "cgroup.procs"))
                    out["error"] = None
                    break
                except OSError as exc:
                    out["error"] = f"mounted, but the first request failed: {exc.strerror}"
                    if exc.errno != errno.EINTR:
                        break
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=look, daemon=True).start()

    try:
        serve(MountRequest(target=scratch, backend=backend, hierarchies=["pids"]), ready)
    except MountError as exc:
        out["error"] = out["error"] or str(exc)
    except Exception as exc:
        out["error"] = out["error"] or f"{type(exc).__name__}: {exc}"
    if out["ready"] and not out["error"]:
        return check(True, f"{what}: mounted, INIT completed, the tree answers ({', '.join(out['listing'])})")
    return check(False, f"{what}: {out['error'] or 'refused'}")


# -- running each check in a child under a deadline -------------------------------------

class ChildContext:
    """What a check's body can do in its child: make scratch directories and
    mount on them (both announced to the parent before they exist, undone
    by path when the body ends, or by the parent's sweep if the child is
    killed), and send a verdict as soon as it is known (kept even if the
    child is killed later). Messages are JSON lines on a pipe."""

    def __init__(self, wfd: int):
        self.wfd = wfd
        self.scratches: list[str] = []
        self.mounts: list[str] = []
        self.answered: set[str] = set()

    def send(self, message: dict) -> None:
        self.answered.update(message.get("verdicts", {}))
        data = json.dumps(message).encode() + b"\n"
        while data:
            data = data[os.write(self.wfd, data):]

    def verdict(self, key: str, verdict: dict) -> None:
        self.send({"verdicts": {key: verdict}})

    def scratch_dir(self) -> str:
        """A new directory in the temporary directory."""
        for n in itertools.count(len(self.scratches)):
            path = os.path.join(tempfile.gettempdir(), f"fakefs-probe-{os.getpid()}-{n}")
            self.send({"scratch": path})
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:  # left by an earlier probe: never reuse (nor remove) it
                continue
            self.scratches.append(path)
            return path

    def announce_mount(self, target: str) -> None:
        self.mounts.append(target)
        self.send({"mount": target})

    def mount(self, source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> int:
        """_mount(), announced first: 0, or the errno."""
        self.announce_mount(target)
        return _mount(source, target, fstype, flags, data)

    def clean_up(self) -> None:
        _undo(self.mounts, self.scratches)

    def fork(self, key: str, body) -> int:
        """``body()`` in a child of this child (same process group, same
        mount namespace); its verdict is sent as ``key``."""
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                self.scratches, self.mounts = [], []  # its own: the forking child undoes its own
                try:
                    self.verdict(key, body())
                except Exception as exc:
                    self.verdict(key, check(False, f"the check failed: {type(exc).__name__}: {exc}"))
                finally:
                    self.clean_up()
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        return pid


def _undo(mounts: list[str], scratches: list[str]) -> None:
    """Unmount (latest first) and remove, all by path."""
    for target in reversed(mounts):
        _umount_all(target)
    for path in scratches:
        shutil.rmtree(path, ignore_errors=True)


class CheckChild:
    """One check (or a few answered by one action) in a forked child: its own
    process group, stdio on /dev/null, its own mount namespace if it mounts
    (on Linux its mounts then end with it, even when it is killed; gVisor
    shares mounts across namespaces, hence the announcements and the sweep).
    ``body(ctx)`` returns the verdict (of its last key) or verdicts by key."""

    def __init__(self, keys: tuple[str, ...], body, timeout: float, mounts: bool = False):
        self.keys, self.body, self.timeout, self.mounts = keys, body, timeout, mounts
        self.pid = 0
        self.fd = -1
        self.deadline = 0.0
        self.allowed = timeout  # seconds it had: its timeout, or less to keep within the budget
        self.data = b""
        self.eof = False
        self.status: int | None = None  # the wait status, once reaped
        self.killed_at: float | None = None
        self.abandoned = False  # killed, but not gone within the kill grace

    def _run(self, ctx: ChildContext) -> None:
        """In the child."""
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if self.mounts:
            try:
                unshare_mount_namespace()
            except OSError:
                pass  # its mounts land in the probe's namespace: undone by path all the same
        try:
            try:
                verdicts = self.body(ctx)
                if "ok" in verdicts:
                    verdicts = {self.keys[-1]: verdicts}
            except Exception as exc:  # a verdict, never a traceback
                failed = check(False, f"the check failed: {type(exc).__name__}: {exc}")
                verdicts = {key: failed for key in self.keys if key not in ctx.answered}
            ctx.send({"verdicts": verdicts})
        finally:
            ctx.clean_up()
        ctx.send({"done": True})

    def start(self, started: float, latest: float) -> None:
        self.deadline = min(started + self.timeout, latest)
        self.allowed = max(0.1, round(self.deadline - started, 1))
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                os.setpgid(0, 0)
                os.close(rfd)
                self._run(ChildContext(wfd))
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(wfd)
        try:
            os.setpgid(pid, pid)  # here too: the group exists before any kill
        except OSError:
            pass
        self.pid, self.fd = pid, rfd

    # -- following it --------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.abandoned or (self.status is not None and (self.eof or self.killed_at is not None))

    def next_event(self, kill_grace: float) -> float:
        return self.deadline if self.killed_at is None else self.killed_at + kill_grace

    def read(self) -> None:
        chunk = os.read(self.fd, 1 << 16)
        if chunk:
            self.data += chunk
        else:
            self.eof = True

    def reap(self) -> None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status

    def kill(self, now: float) -> None:
        if self.killed_at is None:
            self.killed_at = now
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- what it said --------------------------------------------------------------
    def messages(self) -> list[dict]:
        out = []
        for line in self.data.split(b"\n"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # the empty tail, or a line cut by the kill
        return out

    def announced(self, kind: str) -> list:
        return [m[kind] for m in self.messages() if kind in m]

    def cleaned_up(self) -> bool:
        return any(m.get("done") for m in self.messages())

    def verdicts(self) -> dict[str, dict]:
        """What it sent; a key it never answered is null when it was killed
        at its deadline, false when it died by itself."""
        out: dict[str, dict] = {}
        for m in self.messages():
            out.update(m.get("verdicts", {}))
        if self.killed_at is not None:
            missing = check(None, f"timed out after {self.allowed:g} s", killed=True, exited=not self.abandoned)
        else:
            missing = check(False, f"the check's process died ({_death(self.status or 0)})")
        for key in self.keys:
            out.setdefault(key, missing)
        return out


def _death(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


class Runner:
    """Starts check children and follows them: a child still running at its
    deadline is killed (its whole process group), and one that is not gone
    within ``kill_grace`` after is left behind. Nothing here waits without
    a deadline. Use as a context manager: on the way out (^C included) the
    children still running are killed."""

    def __init__(self, started: float, latest: float, kill_grace: float):
        self.started, self.latest, self.kill_grace = started, latest, kill_grace
        self.children: list[CheckChild] = []

    def start(self, child: CheckChild) -> CheckChild:
        self.children.append(child)
        child.start(self.started, self.latest)
        return child

    def wait(self, children: list[CheckChild] | None = None) -> None:
        """Until ``children`` (default: all started) have finished; the
        others are followed meanwhile."""
        waiting = self.children if children is None else children
        while True:
            pending = [c for c in self.children if not c.finished]
            if not any(not c.finished for c in waiting):
                return
            now = time.monotonic()
            for c in pending:
                if c.killed_at is None and now >= c.deadline:
                    c.kill(now)
                elif c.killed_at is not None and now >= c.killed_at + self.kill_grace:
                    c.abandoned = True
            pending = [c for c in pending if not c.abandoned]
            if not pending:
                return
            wait = min(c.next_event(self.kill_grace) for c in pending) - now
            if any(c.eof or c.killed_at is not None for c in pending):
                wait = min(wait, REAP_POLL)  # on its way out: poll for the wait status
            readable = [c.fd for c in pending if not c.eof]
            if readable:
                ready = set(select.select(readable, [], [], max(0.0, wait))[0])
            else:
                ready = set()
                time.sleep(max(0.0, wait))
            for c in pending:
                if c.fd in ready:
                    c.read()
                c.reap()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        for c in self.children:
            if c.status is None and c.killed_at is None:
                c.kill(time.monotonic())
            c.close()


def sweep_after(children: list[CheckChild], timing: Timing) -> None:
    """What children that did not clean up after themselves (killed, or
    died) announced is undone by one more child under its own deadline: a
    directory can sit on a file system that hangs too."""
    unfinished = [c for c in children if not c.cleaned_up()]
    mounts = [target for c in unfinished for target in c.announced("mount")]
    scratches = [path for c in unfinished for path in c.announced("scratch")]
    if mounts or scratches:
        now = time.monotonic()
        with Runner(now, now + timing.sweep, timing.kill_grace) as runner:
            runner.start(CheckChild((), lambda _ctx: _undo(mounts, scratches) or {}, timing.sweep))
            runner.wait()


# -- the whole probe -----------------------------------------------------------------

def read_mounts(ctx: ChildContext) -> dict:
    """The mountinfo snapshot, sent to the parent, and the layout verdict."""
    mounts = _mountinfo()
    ctx.send({"mountinfo": mounts})
    return check_cgroup_layout(mounts)


def quick_checks(timing: Timing) -> list[CheckChild]:
    """Checks that mount nothing, and do not read mountinfo."""
    quick = [
        (("dev_fuse",), lambda _ctx: check_dev_fuse()),
        (("capabilities",), lambda _ctx: check_capabilities()),
        (("gvisor",), lambda _ctx: detect_gvisor()),
        (("openat2",), lambda _ctx: check_openat2()),
        (("sysctl:kernel/cap_last_cap",), lambda _ctx: check_sysctl("kernel/cap_last_cap", need_write=False)),
    ]
    quick += [((f"sysctl:{p}",), lambda _ctx, p=p: check_sysctl(p, need_write=True)) for p in KUBELET_TUNABLES]
    quick += [
        (("dev_kmsg",), lambda _ctx: check_dev_kmsg()),
        (("sys_fs_cgroup",), lambda _ctx: check_sys_fs_cgroup()),
        (("mntns_unshare", "mntns_private"), lambda _ctx: check_mount_namespace()),
        (("inotify",), lambda _ctx: check_inotify()),
        (("child_subreaper",), lambda _ctx: check_child_subreaper()),
    ]
    if SYS_KEYCTL is not None:
        quick.append((("session_keyring",), lambda _ctx: check_session_keyring()))
    return [CheckChild(keys, body, timing.check) for keys, body in quick]


def mounting_checks(backends, mounts: list | None, timing: Timing) -> list[CheckChild]:
    """The FUSE handshakes (slowest first) and the other checks that mount.
    ``mounts``: the mountinfo snapshot (None: it could not be read)."""
    keys = ("python_pyfuse3", "python_trio", "python_psutil")
    keys += tuple(key for backend, (key, _what) in sorted(FUSE_HANDSHAKES.items()) if backend in backends)
    children = [CheckChild(keys, lambda ctx: check_fuse_backends(ctx, backends), timing.handshake, mounts=True)]
    mounting = [
        (("tmpfs_mount",), check_tmpfs_mount),
        (("bind_mount_dir",), check_bind_mount_dir),
        (("bind_mount_file",), check_bind_mount_file),
    ]
    for ctrl in V1_CONTROLLERS:
        if mounts is None:
            body = lambda _ctx: check(None, "/proc/self/mountinfo could not be read in time")  # noqa: E731
        else:
            body = lambda ctx, c=ctrl: check_cgroup_v1(ctx, c, mounts)  # noqa: E731
        mounting.append(((f"cgroup_v1:{ctrl}",), body))
    return children + [CheckChild(k, b, timing.check, mounts=True) for k, b in mounting]


def check_sys_fs_cgroup() -> dict:
    target = "/sys/fs/cgroup"
    if not os.path.isdir(target):
        return check(False, f"{target} is missing: nothing to mount the cgroup tree on")
    ro = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
    return check(True, f"{target} exists" + (" (read-only: fakefs mounts over it, a mount point need not be "
                                               "writable)" if ro else ""), read_only=ro)


def _derived(checks: dict, needs: list[tuple[str, str]], ok_reason: str) -> dict:
    """A verdict that rests on others: false if one is false, unknown
    (null) if one could not be asked, else true."""
    failed = [f"{label}: {checks[k]['reason']}" for k, label in needs if checks.get(k, {}).get("ok") is False]
    if failed:
        return check(False, "; ".join(failed))
    unknown = [f"{label}: {checks[k]['reason'] if k in checks else 'not checked'}" for k, label in needs
               if checks.get(k, {}).get("ok") is None]
    if unknown:
        return check(None, "; ".join(unknown))
    return check(True, ok_reason)


def process_started(max_age: float) -> float:
    """When this process started, on time.monotonic()'s clock (its start
    time in /proc/self/stat is in clock ticks since boot), but at most
    ``max_age`` ago: the checks keep the rest of the budget however slowly
    Python started."""
    now = time.monotonic()
    age = ProcessInfo(None).age_s(os.getpid())
    return now if age is None else now - min(age, max_age)


def run_probe(timing: Timing = DEFAULT_TIMING, budget_from: float | None = None) -> dict:
    """``budget_from``: when the budget started (default: now)."""
    started = time.monotonic()
    latest = (started if budget_from is None else budget_from) + timing.budget - timing.reserve
    # Nothing of the probe's is mounted before mountinfo has been read: in
    # gVisor a read of it hangs while any FUSE mount goes unanswered (one
    # whose server has just refused INIT, or was killed at its deadline).
    with Runner(started, latest, timing.kill_grace) as runner:
        snapshot = runner.start(CheckChild(("cgroup_layout",), read_mounts, timing.mountinfo))
        for child in quick_checks(timing):
            runner.start(child)
        runner.wait([snapshot])
        mounts = next(iter(snapshot.announced("mountinfo")), None)
        for child in mounting_checks(BACKENDS, mounts, timing):
            runner.start(child)
        runner.wait()
    children = runner.children
    sweep_after(children, timing)
    checks: dict[str, dict] = {}
    for child in children:
        verdicts = child.verdicts()
        checks.update((key, verdicts[key]) for key in child.keys)  # in the plan's order
    for key, what in FUSE_HANDSHAKES.values():
        checks.setdefault(key, check(None, f"{what}: not available in this build"))

    tmpfs_needs = [("tmpfs_mount", "tmpfs"), ("bind_mount_dir", "bind mount"), ("inotify", "inotify"),
                   ("python_trio", "trio"), ("python_psutil", "psutil")]
    checks["tmpfs_backend"] = _derived(checks, tmpfs_needs, "tmpfs, bind mounts and inotify work: plain files kept "
                                                            "in step by a watcher (no write validation, no errnos)")
    backends = []
    for name in AUTO_ORDER:
        key = BACKEND_CHECKS.get(name)
        c = checks.get(key) if key else None
        if c is None:
            backends.append({"name": name, "usable": False, "reason": "no probe check for this backend"})
        else:
            backends.append({"name": name, "usable": bool(c["ok"]), "reason": c["reason"]})
    auto = next((b["name"] for b in backends if b["usable"]), None)
    report = {"schema": SCHEMA, "gvisor": bool(checks["gvisor"]["ok"]), "checks": checks,
              "backends": backends, "auto_backend": auto}
    report["consumers"] = {"kubelet": predict_kubelet(checks, auto), "runc": predict_runc(checks, auto)}
    report["elapsed_s"] = round(time.monotonic() - started, 3)
    return report


# -- predictions ---------------------------------------------------------------------------

def _stop(what: str, error: str, why: str, fixed_by: str | None) -> dict:
    return {"what": what, "error": error, "why": why, "fixed_by": fixed_by}


def _overlay_fix(checks: dict, auto: str | None) -> str | None:
    if auto and checks.get("bind_mount_dir", {}).get("ok"):
        return f"fakefs run/apply: a merged /proc/sys view (backend {auto})"
    return None


def _answered(checks: dict, key: str, what: str, unknown: list[str]) -> dict | None:
    """The check, or None when it has no verdict (it timed out): then what it
    would have told is listed in ``unknown``."""
    c = checks.get(key)
    if c is not None and c["ok"] is None:
        unknown.append(f"{what} ({c['reason']})")
        return None
    return c


def _controller_stop(checks: dict, ctrl: str, error: str, unknown: list[str]) -> dict | None:
    c = _answered(checks, f"cgroup_v1:{ctrl}", f"cgroup v1 {ctrl}", unknown)
    if c is None:
        return None
    state = c.get("detail", {}).get("state")
    if state == "mounted":
        return None
    if state == "mountable":
        return _stop(f"cgroup v1 {ctrl}", error, f"not mounted, but {c['reason']}",
                     "fakefs run/apply: mounts the authentic controller")
    return _stop(f"cgroup v1 {ctrl}", error,
                 f"{c.get('reason', 'unknown')}; a fake {ctrl} hierarchy is not discovered (mountinfo shows "
                 f"tmpfs or fuse, consumers look for fstype cgroup)", None)


def _summarise(stops: list[dict], notes: list[str], unknown: list[str], auto: str | None,
               settings: list[dict]) -> dict:
    """``runs``: false at the first unfixable stop; null when nothing known
    stops it but a check it depends on has no verdict. Without a usable
    backend, fakefs run/apply cannot be relied on to fix anything."""
    if auto is None:
        stops = [dict(s, fixed_by=None) for s in stops]
    blockers = [s for s in stops if s["fixed_by"] is None]
    if unknown:
        notes.append("not known here, its check has no verdict: " + "; ".join(unknown))
    runs = False if blockers else (None if unknown else True)
    return {"runs": runs, "stops": stops, "first_blocker": blockers[0] if blockers else None, "notes": notes,
            "settings": settings}


def _layout(checks: dict, unknown: list[str]) -> str | None:
    c = _answered(checks, "cgroup_layout", "the cgroup layout", unknown)
    return c["detail"]["layout"] if c else None


def _setting(name: str, value: str, why: str, **how: str) -> dict:
    """A setting a launcher must pass, with the ways to pass it (``how``:
    e.g. ``flag``, ``config``, ``k3s``, ``containerd``)."""
    return {"name": name, "value": value, "why": why, **how}


# kubelet 1.35 and later refuse any cgroup v1 layout unless told otherwise;
# fakefs's trees are cgroup v1 (statfs of /sys/fs/cgroup is not cgroup2's).
FAIL_CGROUP_V1 = _setting(
    "failCgroupV1", "false",
    "kubelet >= 1.35 (k3s >= v1.35) refuses to start on a cgroup v1 layout unless failCgroupV1 is false; "
    "this layout (and any fake tree at /sys/fs/cgroup) is cgroup v1 to it",
    flag="--fail-cgroupv1=false", config="failCgroupV1: false", k3s="--kubelet-arg=fail-cgroupv1=false",
    applies_to="kubelet >= 1.35")
NO_NEW_KEYRING = _setting(
    "noNewKeyring", "true",
    "joining a session keyring is a syscall this sandbox refuses: no file can fix it",
    flag="runc run --no-new-keyring", containerd="NoNewKeyring = true (runc runtime options)",
    applies_to="runc")


def predict_kubelet(checks: dict, auto: str | None) -> dict:
    stops, notes, unknown = [], [], []
    fix = _overlay_fix(checks, auto)
    for path in KUBELET_TUNABLES:
        c = _answered(checks, f"sysctl:{path}", f"sysctl {path}", unknown)
        if c is not None and not c["ok"]:
            present = c.get("detail", {}).get("present")
            error = (f"open /proc/sys/{path}: {c['detail'].get('error', 'no such file or directory')}" if not present else
                     f"write /proc/sys/{path}: permission denied")
            stops.append(_stop(f"sysctl {path}", error, c["reason"], fix))
    kmsg = _answered(checks, "dev_kmsg", "/dev/kmsg", unknown)
    if kmsg is not None and not kmsg["ok"]:
        error = kmsg.get("detail", {}).get("error", "no such file or directory")
        stops.append(_stop("/dev/kmsg", f"open /dev/kmsg: {error}", kmsg["reason"],
                           "fakefs run/apply: binds /dev/null there" if checks.get("bind_mount_file", {}).get("ok")
                           else None))
    layout = _layout(checks, unknown)
    if layout == "v2":
        notes.append("cgroup v2 host: kubelet uses cgroup v2; the fake cgroup v1 tree does not apply")
    elif layout is not None:
        for ctrl in KUBELET_CONTROLLERS:
            s = _controller_stop(checks, ctrl, f"failed to find subsystem mount for required subsystem: {ctrl}",
                                 unknown)
            if s:
                stops.append(s)
    if checks["openat2"]["ok"] is False:
        notes.append("openat2 is missing: the cgroup library kubelet vendors (runc's) refuses any cgroup file "
                     "that is not on cgroupfs (\"not a cgroup file\"), so fake files below authentic "
                     "mounts cannot be used")
    settings = [] if layout == "v2" else [FAIL_CGROUP_V1]
    return _summarise(stops, notes, unknown, auto, settings)


def predict_runc(checks: dict, auto: str | None) -> dict:
    """In the order runc 1.1 meets them: capabilities (cap_last_cap), the
    cgroup manager (devices is mandatory), then the container's setup."""
    stops, notes, unknown = [], [], []
    c = _answered(checks, "sysctl:kernel/cap_last_cap", "/proc/sys/kernel/cap_last_cap", unknown)
    if c is not None and not c["ok"]:
        stops.append(_stop("/proc/sys/kernel/cap_last_cap",
                           "open /proc/sys/kernel/cap_last_cap: "
                           + c.get("detail", {}).get("error", "no such file or directory"), c["reason"],
                           _overlay_fix(checks, auto)))
    layout = _layout(checks, unknown)
    if layout not in ("v2", None):
        s = _controller_stop(checks, "devices", "mountpoint for devices not found", unknown)
        if s:
            s["why"] += "; runc treats a missing devices hierarchy as fatal"
            stops.append(s)
        if checks["openat2"]["ok"] is False:
            # Only reached with fake files below authentic mounts: runc
            # discovers hierarchies through mountinfo, and finds no fake one.
            notes.append("openat2 is missing: runc refuses every cgroup file that is not on cgroupfs "
                         "(\"not a cgroup file\"), so it can only use authentic controllers here")
    settings = []
    keyring = _answered(checks, "session_keyring", "the session keyring", unknown)
    if keyring is not None and not keyring["ok"]:
        stops.append(_stop("session keyring", "unable to join session keyring",
                           keyring["reason"] + " (a syscall, not a file)",
                           None))
        notes.append("`runc run --no-new-keyring` avoids the session keyring")
        settings.append(NO_NEW_KEYRING)
    return _summarise(stops, notes, unknown, auto, settings)


# -- output -----------------------------------------------------------------------------

def render_text(report: dict) -> str:
    mark = {True: "yes", False: "no", None: "n/a"}
    lines = [f"fakefs probe ({report['elapsed_s']:.2f} s){' - gVisor' if report['gvisor'] else ''}", "", "checks:"]
    width = max(len(k) for k in report["checks"])
    for key, c in report["checks"].items():
        lines.append(f"  {key:<{width}}  {mark[c['ok']]:<3}  {c['reason']}")
    lines += ["", "backends (--backend auto tries them in this order):"]
    for b in report["backends"]:
        verdict = "usable" if b["usable"] else "passed over"
        lines.append(f"  {b['name']:<9} {verdict:<11} {b['reason']}")
    lines.append(f"  auto uses: {report['auto_backend'] or 'nothing (no backend works here)'}")
    for name, pred in report["consumers"].items():
        if pred["first_blocker"] is not None:
            verdict = f"stops at: {pred['first_blocker']['error']}"
        elif pred["runs"] is None:
            verdict = "nothing known stops it, but some checks have no verdict (see the notes)"
        elif not report["auto_backend"]:
            verdict = "none of the checked files and hierarchies is missing, but fakefs itself cannot work here"
        else:
            verdict = "nothing stops it that fakefs does not fix"
        lines += ["", f"{name}: {verdict}"]
        for s in pred["stops"]:
            how = f"fixed by {s['fixed_by']}" if s["fixed_by"] else "NOT fixable here"
            lines.append(f"  - {s['what']}: \"{s['error']}\" - {how} ({s['why']})")
        for n in pred["notes"]:
            lines.append(f"  note: {n}")
        for setting in pred["settings"]:
            how = setting.get("k3s") or setting.get("flag")
            lines.append(f"  set: {setting['name']}={setting['value']} ({how}): {setting['why']}")
    return "\n".join(lines)


def main(as_json: bool = False, budget: float | None = None) -> int:
    timing = DEFAULT_TIMING if budget is None else Timing.for_budget(budget)
    report = run_probe(timing, budget_from=process_started(timing.max_startup))
    print(json.dumps(report, indent=2) if as_json else render_text(report))
    return 0 if report["auto_backend"] else 1


if __name__ == "__main__":
    sys.exit(main("--json" in sys.argv[1:]))
