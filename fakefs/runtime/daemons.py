"""Starting and stopping mount daemons: what ``fakefs mount``/``umount`` do."""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
import traceback

from fakefs.errors import CliError, MountError
from fakefs.host.hiding import WAY_OUT, refusal
from fakefs.host.sysmount import umount
from fakefs.runtime import registry, rundir, statefile
from fakefs.runtime.readiness import await_report, reporter
from fakefs.runtime.registry import fakefs_mounted_at, is_stale
from fakefs.runtime.serving import MountRequest, serve
from fakefs.runtime.supervisor import supervise


def check_target(target: str, in_place: bool) -> str:
    if not target or any(c in target for c in "\0\n"):
        raise CliError(f"fakefs: bad mount target {target!r}")
    target = os.path.abspath(target)
    if os.geteuid() != 0:
        raise CliError("fakefs: must run as root (the mount is shared with every user via allow_other)")
    if is_stale(target):
        cleanup_stale(target)
    if not os.path.isdir(target):
        what = "does not exist" if not os.path.exists(target) else "is not a directory"
        raise CliError(f"fakefs: mount target {target} {what}")
    # The mount lands where the symlinks lead: check that place, not the name.
    resolved = os.path.realpath(target)
    why = None if in_place else refusal([resolved])
    if why:
        shown = target if resolved == target else f"{target} (-> {resolved})"
        raise CliError(f"fakefs: refusing to mount over {shown}: {why}; {WAY_OUT}")
    return resolved


def cleanup_stale(target: str) -> None:
    try:
        umount(target, detach=True)
    except OSError:
        pass
    registry.remove(target)


def start(request: MountRequest, foreground: bool = False) -> int:
    record = registry.load(request.target)
    if record is not None:
        if record.alive and fakefs_mounted_at(request.target):
            raise CliError(f"fakefs: {request.target} is already mounted by fakefs (pid {record.pid})")
        cleanup_stale(request.target)
    elif fakefs_mounted_at(request.target):
        raise CliError(f"fakefs: {request.target} already has a fakefs mount not made here")

    if foreground:
        def ready(err):
            if err is None:
                print(f"fakefs: serving {request.tree} at {request.target} (pid {os.getpid()})", flush=True)

        try:
            serve(request, ready)
        except MountError as exc:
            raise CliError(f"fakefs: {exc}") from None
        return 0
    return _start_background(request)


def _start_background(request: MountRequest) -> int:
    rundir.ensure()
    request.log = request.log or rundir.path_for("daemon", request.target, ".log")
    rfd, wfd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the daemon
        code = 1
        try:
            os.close(rfd)
            os.setsid()
            logfd = os.open(request.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            nullfd = os.open(os.devnull, os.O_RDONLY)
            os.dup2(nullfd, 0)
            os.dup2(logfd, 1)
            os.dup2(logfd, 2)
            reported = []
            report = reporter(wfd)

            def ready(err):
                reported.append(err)
                report(err)

            try:
                # A supervisor that runs the server as its child and
                # restarts it after a crash (supervisor.py).
                code = supervise(request, ready)
            except BaseException:
                traceback.print_exc()
                if not reported:
                    ready("daemon failed before the mount was ready (see log)")
        finally:
            os._exit(code)
    os.close(wfd)
    outcome, reason = await_report(rfd)
    if outcome == "ok":
        return 0
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    last = last_line(request.log)
    reason = reason or "daemon exited early"
    quoted = f", last line: {last}" if last and last not in reason else ""
    raise CliError(f"fakefs: {reason} (daemon log {request.log}{quoted})")


def last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def stop(target: str, timeout: float = 5.0, forget: bool = False) -> str:
    """Unmount and stop the daemon; returns what was done (for the CLI).
    ``forget``: also discard the tree's saved state (statefile.py), which the
    daemon writes once more as it stops."""
    target = os.path.realpath(os.path.abspath(target))
    record = registry.load(target)
    stale = is_stale(target)
    if record is None and not stale and not fakefs_mounted_at(target):
        if forget and statefile.forget(target):
            return f"fakefs: nothing mounted at {target}; its saved state is discarded"
        if not os.path.lexists(target):
            raise CliError(f"fakefs: nothing mounted at {target}: no such file or directory")
        return f"fakefs: nothing mounted at {target}"
    clean = False  # the daemon stopped when asked: its log says nothing worth keeping
    if record is not None and record.alive:
        # record.pid is the supervisor: it forwards SIGTERM to its server
        # and waits for the unmount (a stop, not a crash).
        os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and record.alive:
            time.sleep(0.02)
        if record.alive:
            os.kill(record.pid, signal.SIGKILL)
        else:
            clean = not stale
    if record is not None and record.server_pid and record.server_pid != record.pid:
        try:  # the server dies with its supervisor (PDEATHSIG); make sure
            os.kill(record.server_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if is_stale(target) or fakefs_mounted_at(target):
        try:
            umount(target, detach=True)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise CliError(f"fakefs: cannot unmount {target}: {exc.strerror}") from None
    registry.remove(target)
    if clean and record.log:
        rundir.remove(record.log)
    if forget:
        statefile.forget(target)
        return f"fakefs: unmounted {target}, saved state discarded"
    return f"fakefs: unmounted {target}"
