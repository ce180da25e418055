"""The transports that carry the operations layer (fakefs.vfs.ops) to the
kernel, one module each, all with the same entry point ``serve(session)``:

- ``fuse``: pyfuse3 (libfuse) — the default where the kernel accepts it;
- ``fuse-raw``: the FUSE protocol spoken over /dev/fuse without libfuse —
  works where pyfuse3 refuses the kernel's INIT (gVisor offers no READDIRPLUS);
- ``tmpfs``: plain files in a tmpfs kept in step by inotify — where FUSE is
  refused.

A backend mounts ``session.target``, reports readiness once, serves until
unmounted or stopped, and unmounts. Everything else a daemon does (building
the tree, the registry, state saving, signals) is the runtime's, reached only
through the session's hooks, so backends import nothing above this layer.
"""

from __future__ import annotations

import importlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from fakefs.errors import MountError
from fakefs.host.sysmount import mount_fuse, umount
from fakefs.vfs.nodes import Node

# CLI name -> module. Imported on first use, not here: pyfuse3 may be missing
# or unusable on a machine where the other backends work.
BACKENDS = {
    "fuse": "fakefs.backends.fuse",
    "fuse-raw": "fakefs.backends.rawfuse.server",
    "tmpfs": "fakefs.backends.tmpfs",
}
# What --backend auto tries, in order.
AUTO_ORDER = ("fuse", "fuse-raw", "tmpfs")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# The tmpfs backend binds this directory of its private tmpfs at the target.
TMPFS_TREE_DIR = "fakefs-tree"


def is_fakefs_mount(fstype: str, source: str, root: str) -> bool:
    """How a mount of any backend looks in mountinfo: FUSE with source
    ``fakefs``, or the tmpfs backend's tree, known by its root (gVisor shows
    every tmpfs source as ``none``)."""
    return ((fstype in ("fuse.fakefs", "fuse") and source == "fakefs")
            or (fstype == "tmpfs" and root == f"/{TMPFS_TREE_DIR}"))


@dataclass
class Session:
    """What the runtime hands a backend to serve one mount."""

    target: str
    root: Node
    # Where a backend may keep files of its own (tmpfs: its scratch mount).
    scratch_dir: str
    # Readiness, reported once: None when the mount answers, else the reason.
    on_ready: Callable[[str | None], None]
    # The mount is live, served by the named backend (the runtime records it).
    on_mounted: Callable[[str], None]
    # The runtime's trio loop: runs ``serve()`` with the daemon's own tasks
    # (stop signals, fork watching, state saving) beside it; ``stop()`` ends
    # a transport that has its own way to finish (pyfuse3.terminate).
    run_serving: Callable[[Callable[[], Awaitable[None]], Callable[[], None] | None], None]
    # fuse-raw under a supervisor: the socket to hand the connection over,
    # the connection a restarted server continues, and its inode log.
    supervisor_conn: Any = None
    held_connection: dict | None = None
    inode_log: str = ""
    # A restart after a crash: the dead mount of the previous server is
    # still at the target; the new one replaces it without the directory
    # underneath showing in between (host.sysmount.replace_mount), or, where
    # the kernel cannot, after ``clear_target()`` removed it.
    replace_existing: bool = False
    clear_target: Callable[[], None] = lambda: None
    options: dict = field(default_factory=dict)
    _reported: bool = False

    def report(self, error: str | None) -> None:
        if not self._reported:
            self._reported = True
            self.on_ready(error)

    def fail(self, message: str) -> MountError:
        """Report ``message`` as the reason the mount failed; returns the
        error to raise."""
        self.report(message)
        return MountError(message)

    def mount_fuse(self) -> int:
        """A FUSE mount of fakefs at the target (in place of a dead one after
        a crash); returns the /dev/fuse connection's fd."""
        try:
            fd, _fstype = mount_fuse(self.target, self.replace_existing, self.clear_target)
        except OSError as exc:
            what = "/dev/fuse" if exc.filename == "/dev/fuse" else f"FUSE mount at {self.target}"
            raise self.fail(f"{what} refused: {exc.strerror}") from None
        return fd

    def unmount(self) -> None:
        """Detach the mount at the target, if it is still there."""
        try:
            umount(self.target, detach=True)
        except OSError:
            pass  # already unmounted (fakefs umount, or by hand)

    def ready_before_serving(self) -> None:
        """Report readiness for a backend that calls run_serving() next: a
        SIGTERM sent as soon as the mount is announced must not kill the
        daemon before trio listens (it would leave a stale mount), so the stop
        signals stay blocked until run_serving's receiver is open."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self.report(None)


def load(name: str) -> ModuleType:
    """The backend module of a CLI name; MountError if it is unknown or cannot
    be used on this machine."""
    module = BACKENDS.get(name)
    if module is None:
        raise MountError(f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MountError(f"backend {name} is not usable here: {exc}") from None
