"""The run directory (``/run/fakefs`` or ``$FAKEFS_RUN_DIR``): where fakefs
keeps what outlives a process — mount records, saved state, inode logs,
daemon logs, the manager's journal and staging directories.

One naming rule for all of them, and one atomic writer.
"""

from __future__ import annotations

import hashlib
import os

from fakefs.errors import CliError
from fakefs.host.mountinfo import mount_namespace_id


def run_dir() -> str:
    return os.environ.get("FAKEFS_RUN_DIR", "/run/fakefs")


def path_for(kind: str, target: str, suffix: str, mntns: str | None = None) -> str:
    """The file of ``kind`` (``mount``, ``state``, ``inodes``, ``daemon``)
    that belongs to the mount at ``target`` in a mount namespace (this one by
    default): the same path may be mounted separately in private namespaces."""
    digest = hashlib.sha1(target.encode()).hexdigest()[:16]
    return os.path.join(run_dir(), f"{kind}-{mntns or mount_namespace_id()}-{digest}{suffix}")


def namespace_path(kind: str, suffix: str = "", mntns: str | None = None) -> str:
    """The file of ``kind`` (``journal``, ``stage-PROFILE``) that belongs to
    a whole mount namespace."""
    return os.path.join(run_dir(), f"{kind}-{mntns or mount_namespace_id()}{suffix}")


def _unusable(reason: str) -> CliError:
    return CliError(f"fakefs: run directory {run_dir()} ($FAKEFS_RUN_DIR) is not usable: {reason}")


def ensure_usable() -> str:
    """The run directory, made if missing; a one-line error when it cannot
    hold fakefs's files (the CLI checks it before anything is mounted)."""
    path = run_dir()
    if os.path.lexists(path) and not os.path.isdir(path):
        raise _unusable("not a directory")
    try:
        ensure()
        os.listdir(path)
    except OSError as exc:
        raise _unusable(exc.strerror) from None
    return path


def listing() -> list[str]:
    """The run directory's entries: none when it does not exist yet (nothing
    was ever mounted), a one-line error when it cannot be read (what it
    records would be unknown)."""
    try:
        return sorted(os.listdir(run_dir()))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _unusable(exc.strerror) from None


def names_of(kind: str, suffix: str, mntns: str | None = None) -> list[str]:
    """The paths of every file of ``kind`` of a mount namespace."""
    prefix = f"{kind}-{mntns or mount_namespace_id()}-"
    names = listing()
    return [os.path.join(run_dir(), n) for n in names if n.startswith(prefix) and n.endswith(suffix)]


def ensure() -> str:
    """The run directory, made (0700) if missing."""
    path = run_dir()
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


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


def remove(path: str) -> bool:
    """Unlink ``path``; True if it was there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
