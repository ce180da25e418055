"""Ending every process started inside ``fakefs run`` when its command ends.

What counts as started inside: the processes of run's own mount namespace
(where /proc/PID/ns/mnt can be read), run's descendants (orphans come back
to run, which makes itself their subreaper where the kernel allows it; gVisor
does not), and the members of the cgroups run made for the command. They get
SIGTERM, a moment to exit, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import time

from fakefs.host.procfs import STAT_PPID, STAT_STATE, read_text, stat_fields
from fakefs.host.sysmount import libc

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (so they stay
    findable and are reaped here); False where refused (gVisor: EINVAL)."""
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid), or None once it is gone."""
    try:
        fields = stat_fields(read_text(f"/proc/{pid}/stat") or "")
        return fields[STAT_STATE], int(fields[STAT_PPID])
    except (ValueError, IndexError):
        return None


def _pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        st = _stat(pid)
        if st is not None and st[0] not in ("Z", "X"):
            out.add(pid)
    return out


def descendants(of: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        st = _stat(pid)
        if st is not None:
            children.setdefault(st[1], []).append(pid)
    out: set[int] = set()
    todo = [of]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def namespace_members() -> set[int]:
    """Processes of this mount namespace; none where the links cannot be read."""
    try:
        mine = os.readlink("/proc/self/ns/mnt")
    except OSError:
        return set()
    out = set()
    for pid in _pids():
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") == mine:
                out.add(pid)
        except OSError:
            continue
    return out


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_started_here(also=lambda: set(), grace: float = 1.0, timeout: float = 5.0) -> set[int]:
    """SIGTERM, then after ``grace`` SIGKILL, every process started inside
    run (see the module), plus the pids ``also()`` names; returns those
    still alive after ``timeout`` (none, unless they cannot be killed)."""
    me = os.getpid()

    def started() -> set[int]:
        _reap()
        return _alive((namespace_members() | descendants(me) | set(also())) - {me})

    deadline = time.monotonic() + timeout
    kill_at = time.monotonic() + grace
    termed: set[int] = set()
    left = started()
    while left and time.monotonic() < deadline:
        killing = time.monotonic() >= kill_at
        for pid in left if killing else left - termed:
            try:
                os.kill(pid, signal.SIGKILL if killing else signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        termed |= left
        time.sleep(0.02)
        left = started()
    return left
