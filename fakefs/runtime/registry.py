"""Which fakefs daemons serve which mount points, kept as one small JSON file
per mount under the run directory (``/run/fakefs`` or ``$FAKEFS_RUN_DIR``).

Entries are keyed by mount namespace and target, because the same path can
be mounted separately in private namespaces.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import asdict, dataclass

from fakefs.backends import is_fakefs_mount
from fakefs.host.mountinfo import mounts_at
from fakefs.host.procfs import read_text, stat_state
from fakefs.host.sysmount import umount
from fakefs.runtime.rundir import names_of, path_for, remove as remove_file, write_atomically


@dataclass
class MountRecord:
    target: str
    pid: int
    backend: str
    tree: str
    mntns: str
    started: float
    log: str = ""
    # pid is the daemon that owns the mount (the supervisor, which restarts
    # the server after a crash); server_pid the process serving requests.
    server_pid: int = 0

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie is not serving: look at its state.
        text = read_text(f"/proc/{self.pid}/stat")
        return text is not None and stat_state(text) != "Z"


def _path(mntns: str | None, target: str) -> str:
    return path_for("mount", target, ".json", mntns)


def save(record: MountRecord) -> None:
    write_atomically(_path(record.mntns, record.target), json.dumps(asdict(record)).encode())


def load(target: str, mntns: str | None = None) -> MountRecord | None:
    try:
        with open(_path(mntns, target)) as f:
            return MountRecord(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def remove(target: str, mntns: str | None = None) -> None:
    remove_file(_path(mntns, target))


def all_records(mntns: str | None = None) -> list[MountRecord]:
    out = []
    for path in names_of("mount", ".json", mntns):
        try:
            with open(path) as f:
                out.append(MountRecord(**json.load(f)))
        except (OSError, ValueError, TypeError):
            continue
    return out


def is_stale(target: str) -> bool:
    """A FUSE mount whose daemon is gone answers ENOTCONN."""
    try:
        os.stat(target)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def fakefs_mounted_at(target: str) -> bool:
    return any(is_fakefs_mount(m.fstype, m.source, m.root) for m in mounts_at(target))


def clear_dead_mounts(target: str) -> None:
    """Detach the dead fakefs mounts at ``target`` (a bind stacked on the
    mount point shows as one more layer)."""
    for _ in range(8):
        if not (is_stale(target) or fakefs_mounted_at(target)):
            return
        try:
            umount(target, detach=True)
        except OSError:
            return
