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
            ))
    return mounts


def mounts_at(mountpoint: str) -> list[Mount]:
    return [m for m in read_mounts() if m.mountpoint == mountpoint]


def mount_namespace_id() -> str:
    try:
        return os.readlink("/proc/self/ns/mnt").strip("mnt:[]")
    except FileNotFoundError:
        # gVisor (2022) has no /proc/self/ns/mnt: a namespace fakefs made is
        # named by the token it left in the environment (sysmount).
        return os.environ.get("FAKEFS_PRIVATE_MNTNS", "sandbox").strip("mnt:[]")
