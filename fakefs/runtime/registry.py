"""Which fakefs daemons serve which mount points, kept as one small JSON file
per mount under the run directory (``/run/fakefs`` or ``$FAKEFS_RUN_DIR``).

Entries are keyed by mount namespace and target, because the same path can
be mounted separately in private namespaces.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from fakefs.host.mountinfo import mount_namespace_id


def run_dir() -> str:
    return os.environ.get("FAKEFS_RUN_DIR", "/run/fakefs")


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
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False


def _path(mntns: str, target: str) -> str:
    digest = hashlib.sha1(target.encode()).hexdigest()[:16]
    return os.path.join(run_dir(), f"mount-{mntns}-{digest}.json")


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader (or a crash) sees the
    old file or the new one, never a part: a 0600 temporary file, fsync,
    rename. Every file fakefs keeps in the run directory is written so."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask, and if tmp existed
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def save(record: MountRecord) -> None:
    write_atomically(_path(record.mntns, record.target), json.dumps(asdict(record)).encode())


def load(target: str, mntns: str | None = None) -> MountRecord | None:
    try:
        with open(_path(mntns or mount_namespace_id(), target)) as f:
            return MountRecord(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def remove(target: str, mntns: str | None = None) -> None:
    try:
        os.unlink(_path(mntns or mount_namespace_id(), target))
    except FileNotFoundError:
        pass


def all_records(mntns: str | None = None) -> list[MountRecord]:
    ns = mntns or mount_namespace_id()
    out = []
    try:
        names = sorted(os.listdir(run_dir()))
    except OSError:
        return []
    for name in names:
        if name.startswith(f"mount-{ns}-") and name.endswith(".json"):
            try:
                with open(os.path.join(run_dir(), name)) as f:
                    out.append(MountRecord(**json.load(f)))
            except (OSError, ValueError, TypeError):
                continue
    return out
