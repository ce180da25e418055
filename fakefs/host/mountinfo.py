"""Reading /proc/self/mountinfo (the same source runc and kubelet use)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Mount:
    mount_id: int
    parent_id: int
    root: str
    mountpoint: str
    fstype: str
    source: str
    super_options: str
    device: str = ""  # major:minor of the file system (a bind mount shares its source's)


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def read_mounts(path: str = "/proc/self/mountinfo") -> list[Mount]:
    mounts = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            mounts.append(Mount(
                mount_id=int(fields[0]), parent_id=int(fields[1]), root=_unescape(fields[3]),
                mountpoint=_unescape(fields[4]), fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]), super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
                device=fields[2],
            ))
    return mounts


def visible_mounts(mounts: list[Mount] | None = None) -> list[Mount]:
    """Mounts a path lookup can reach: mountinfo still lists mounts hidden
    under a later one (e.g. the hierarchy mounts after a private tmpfs went
    over /sys/fs/cgroup). A mount is visible when resolving its mount point
    from the root, taking the last mount made at each step, ends on it."""
    mounts = read_mounts() if mounts is None else mounts
    ids = {m.mount_id for m in mounts}
    on: dict[tuple[int, str], int] = {}  # (parent mount, mount point) -> last mount there
    for m in mounts:
        on[(m.parent_id, m.mountpoint)] = m.mount_id
    roots = [m.mount_id for m in mounts if m.parent_id not in ids or m.parent_id == m.mount_id]
    if not roots:
        return mounts

    def resolve(path: str) -> int:
        cur = roots[0]
        prefixes = ["/"] + ["/" + "/".join(path.strip("/").split("/")[:i + 1])
                            for i in range(len(path.strip("/").split("/"))) if path.strip("/")]
        for prefix in prefixes:
            seen = set()
            while (cur, prefix) in on and cur not in seen:
                seen.add(cur)
                cur = on[(cur, prefix)]
        return cur

    return [m for m in mounts if resolve(m.mountpoint) == m.mount_id]


def mounts_at(mountpoint: str) -> list[Mount]:
    return [m for m in read_mounts() if m.mountpoint == mountpoint]


def mount_namespace_id() -> str:
    try:
        return os.readlink("/proc/self/ns/mnt").strip("mnt:[]")
    except FileNotFoundError:
        # gVisor (2022) has no /proc/self/ns/mnt: a namespace fakefs made is
        # named by the token it left in the environment (sysmount).
        return os.environ.get("FAKEFS_PRIVATE_MNTNS", "sandbox").strip("mnt:[]")
