"""What apply did, step by step, on disk before it is relied on: so that
``fakefs umount --all`` can undo it in reverse even after the daemons were
killed or fakefs itself crashed mid-apply."""

from __future__ import annotations

import errno
import json
import os

from fakefs.host.sysmount import bind, clone_mount, replace_mount, umount
from fakefs.runtime.rundir import ensure, namespace_path, write_atomically


def journal_path(mntns: str | None = None) -> str:
    return namespace_path("journal", ".json", mntns)


def read(mntns: str | None = None) -> list[dict]:
    """Applied profiles, oldest first: [{"profile", "stage", "done": [step dicts]}]."""
    try:
        with open(journal_path(mntns)) as f:
            data = json.load(f)
        return data.get("applied", []) if isinstance(data, dict) else []
    except (OSError, ValueError):
        return []


def write(applied: list[dict], mntns: str | None = None) -> None:
    ensure()
    path = journal_path(mntns)
    if not applied:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    write_atomically(path, json.dumps({"applied": applied}, indent=1).encode())


def _binds_from(mount_root: str) -> list[tuple[str, str]]:
    """(source, target) of the journaled bind mounts whose source lies in
    ``mount_root``, in the order they were made."""
    prefix = mount_root.rstrip("/") + "/"
    out = []
    for record in read():
        for entry in record.get("done", []):
            source = entry.get("source") or ""
            if entry.get("action") == "bind" and (source == mount_root or source.startswith(prefix)):
                out.append((source, entry["target"]))
    return out


def unbind_from(mount_root: str) -> list[str]:
    """After the daemon serving ``mount_root`` died (supervisor.py): detach
    the binds of its dead mount, which answer ENOTCONN and cover the real
    directories a restarted overlay server must open. Returns problems."""
    problems = []
    for _source, target in reversed(_binds_from(mount_root)):
        try:
            umount(target, detach=True)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: no longer a mount point
                problems.append(f"umount {target}: {exc.strerror}")
    return problems


def bind_from(mount_root: str, replace: bool = False) -> list[str]:
    """Redo those binds once a new daemon serves ``mount_root``; with
    ``replace``, each new bind takes the place of the dead one still there
    (host.sysmount.replace_mount), or where the kernel cannot, comes after
    it is detached. The journal stays as it is: the same targets are bound,
    so undo still unmounts them. Returns problems."""
    problems = []
    for source, target in _binds_from(mount_root):
        try:
            if replace:
                try:
                    clone = clone_mount(source)
                    try:
                        replace_mount(clone, target)
                    finally:
                        os.close(clone)
                    continue
                except OSError:
                    umount(target, detach=True)
            bind(source, target)
        except OSError as exc:
            problems.append(f"bind {source} -> {target}: {exc.strerror}")
    return problems
