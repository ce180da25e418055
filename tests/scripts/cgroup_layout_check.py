"""Check the rule every cgroup client relies on, from inside a namespace
(``fakefs run``): for every line of /proc/self/mountinfo of fstype cgroup or
cgroup2, its mount point exists, is a directory (not a symlink: opened with
O_NOFOLLOW|O_DIRECTORY) and holds the control files the kernel puts at the
root of a hierarchy with those super options. The kernel's list is read
from a fresh mount of the same hierarchy in a scratch directory (for a
hierarchy already mounted, the kernel gives the same one again).

Prints one JSON object: {"lines": N, "problems": [...]}; exit 0 either way.
"""

import json
import os
import stat
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from fakefs.host.mountinfo import read_mounts  # noqa: E402
from fakefs.host.sysmount import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, mount, umount  # noqa: E402
from fakefs.model.tree import V1_MOUNT_OPTIONS  # noqa: E402

# Mount options that are not part of what makes a hierarchy (a fresh mount
# with them would be refused or change the hierarchy's flags).
NOT_HIERARCHY = V1_MOUNT_OPTIONS - {"none"}


def kernel_root_files(fstype: str, super_options: str) -> set[str]:
    opts = ",".join(o for o in super_options.split(",")
                    if o and o not in NOT_HIERARCHY and not o.startswith("release_agent=")) or None
    scratch = tempfile.mkdtemp(prefix="fakefs-layout-check-")
    try:
        mount("cgroup", scratch, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
              None if fstype == "cgroup2" else opts)
        try:
            return {n for n in os.listdir(scratch) if not os.path.isdir(os.path.join(scratch, n))}
        finally:
            umount(scratch, detach=True)
    finally:
        os.rmdir(scratch)


def files_at(mountpoint: str) -> set[str]:
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return {n for n in os.listdir(fd)
                if not stat.S_ISDIR(os.stat(n, dir_fd=fd, follow_symlinks=False).st_mode)}
    finally:
        os.close(fd)


def main() -> int:
    problems = []
    lines = [m for m in read_mounts() if m.fstype in ("cgroup", "cgroup2")]
    expected: dict[tuple[str, str], set[str]] = {}
    for m in lines:
        where = f"{m.mountpoint} ({m.fstype} {m.super_options})"
        try:
            st = os.lstat(m.mountpoint)
        except OSError as exc:
            problems.append(f"{where}: {exc.strerror}")
            continue
        if not stat.S_ISDIR(st.st_mode):
            problems.append(f"{where}: not a directory (mode {stat.filemode(st.st_mode)})")
            continue
        key = (m.fstype, m.super_options)
        if key not in expected:
            try:
                expected[key] = kernel_root_files(m.fstype, m.super_options)
            except OSError as exc:
                problems.append(f"{where}: the kernel refuses a fresh mount of it: {exc.strerror}")
                continue
        try:
            found = files_at(m.mountpoint)
        except OSError as exc:
            problems.append(f"{where}: open O_NOFOLLOW|O_DIRECTORY: {exc.strerror}")
            continue
        if found != expected[key]:
            problems.append(f"{where}: missing {sorted(expected[key] - found)}, extra {sorted(found - expected[key])}")
    print(json.dumps({"lines": len(lines), "problems": problems}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
