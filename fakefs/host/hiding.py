"""What a mount over a path would hide from the running system: the rule
``fakefs mount`` and ``fakefs apply`` follow before they mount anything.

A mount hides what lies below its mount point from every process of the
mount namespace it is made in. fakefs mounts wherever that hides nothing
the running system uses, and refuses (saying what, and the way out) only
where it would:

* In a mount namespace other than PID 1's (``fakefs run``, ``unshare -m``,
  a namespace fakefs made) and in a gVisor sandbox (its mounts are its
  own), it proceeds: the init system does not see the mount.
* In PID 1's namespace it proceeds over an empty directory, a tmpfs with no
  live cgroup mounts under it, or any directory with no kernel file system
  at or below it; it is refused where it would hide live cgroup
  hierarchies (``cgroup``/``cgroup2`` mounts at or below the path, as on a
  systemd host's /sys/fs/cgroup) or other kernel files the system reads (a
  proc, sysfs or devtmpfs mount below it, or a non-empty directory of one,
  e.g. /proc/sys/kernel).

PID 1 shares this namespace when /proc/1/ns/mnt is this process's or,
where those links cannot be read, when /proc/1/mountinfo lists the same
mounts (every namespace has mount ids of its own). When neither can be
read, it is taken to share it.
"""

from __future__ import annotations

import os

from fakefs.host.gvisor import is_gvisor
from fakefs.host.mountinfo import Mount, read_mounts, visible_mounts
from fakefs.host.realcgroups import mount_keys
from fakefs.host.sysmount import PRIVATE_NS_ENV

# The process whose view is the running system's (tests point it elsewhere).
INIT_PID = 1
CGROUP_FSTYPES = ("cgroup", "cgroup2")
# Kernel file systems whose files the running system reads: hiding them
# (or a non-empty directory of them) from PID 1's namespace is refused.
KERNEL_FSTYPES = CGROUP_FSTYPES + ("proc", "sysfs", "devtmpfs", "devpts", "securityfs", "debugfs", "tracefs",
                                   "bpf", "pstore", "configfs", "efivarfs", "mqueue", "hugetlbfs", "fusectl",
                                   "binfmt_misc")


def _mount_ids(pid: int | str) -> set[int]:
    return {m.mount_id for m in read_mounts(f"/proc/{pid}/mountinfo")}


def shares_init_namespace() -> bool:
    """Whether PID 1 (the init system) sees the mounts made here."""
    try:
        mine = os.readlink("/proc/self/ns/mnt")
    except OSError:
        mine = None
    made = os.environ.get(PRIVATE_NS_ENV, "")
    # fakefs made this namespace (sysmount.unshare_mount_namespace); gVisor
    # has no ns links, and there the token it left names the namespace.
    if made == mine or (mine is None and made.startswith("anon-")):
        return False
    try:
        if mine is not None:
            return os.readlink(f"/proc/{INIT_PID}/ns/mnt") == mine
    except OSError:
        pass
    try:
        return bool(_mount_ids("self") & _mount_ids(INIT_PID))
    except OSError:
        return True  # cannot tell: take the cautious answer


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _holder(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount whose files ``path`` shows (the deepest visible one above it)."""
    best = None
    for m in mounts:
        if _below(path, m.mountpoint) and (best is None or len(m.mountpoint) >= len(best.mountpoint)):
            best = m
    return best


def _name(m: Mount) -> str:
    if m.fstype == "cgroup":
        return f"{m.mountpoint} (cgroup {','.join(mount_keys(m))})"
    return f"{m.mountpoint} ({m.fstype})"


def hidden_by(path: str, mounts: list[Mount], keep: frozenset[str] = frozenset()) -> list[str]:
    """What a mount over ``path`` would hide that the running system uses,
    given the visible ``mounts``: kernel file system mounts at or below it
    (except those at a mount point in ``keep``, which the caller puts back),
    and the kernel's files in it when ``path`` is a non-empty directory of
    one."""
    hidden = [_name(m) for m in mounts
              if m.fstype in KERNEL_FSTYPES and _below(m.mountpoint, path) and m.mountpoint not in keep]
    holder = _holder(path, mounts)
    if not hidden and holder is not None and holder.fstype in KERNEL_FSTYPES and holder.mountpoint not in keep:
        try:
            if os.path.isdir(path) and os.listdir(path):
                hidden.append(f"the files of {path} ({holder.fstype})")
        except OSError:
            pass
    return hidden


def refusal(paths: list[str], keep: frozenset[str] = frozenset()) -> str | None:
    """Why mounting over ``paths`` is refused here, or None when it may
    proceed (see the module's rule)."""
    if is_gvisor() or not shares_init_namespace():
        return None
    mounts = visible_mounts()
    hidden: list[str] = []
    for path in paths:
        hidden += [h for h in hidden_by(path, mounts, keep) if h not in hidden]
    if not hidden:
        return None
    cgroups = [h for h in hidden if "(cgroup" in h]
    what = "the live cgroup hierarchies" if cgroups else "what the running system uses"
    return f"it would hide {what} ({', '.join(hidden)}) from the init system (PID {INIT_PID} uses this mount namespace)"


WAY_OUT = ("use `fakefs run -- CMD` (a mount namespace of its own), run it in a private namespace "
           "(`unshare -m`), or pass --in-place to do it anyway")
