"""Thin wrappers over mount(2), umount2(2) and unshare(2) (Python 3.11's os
module has none of them)."""

from __future__ import annotations

import ctypes
import errno
import os
import time

# The C library, shared by every ctypes user in fakefs. Loaded by soname:
# ctypes.util.find_library() runs ldconfig, which would cost every daemon's
# start-up time.
libc = _libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2
CLONE_NEWNS = 0x00020000


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def umount(target: str, detach: bool = False) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH if detach else 0), f"umount {target}")


def unshare_mount_namespace(make_private: bool = True) -> None:
    """A new mount namespace for this process. Making everything private
    stops our mounts leaking to the parent namespace; gVisor refuses the
    propagation change (util-linux's ``unshare -m`` fails there), which is
    harmless because its mounts do not propagate anyway."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Remember (for this process and its children) that fakefs made this
    # namespace: mounting over system paths is then safe.
    try:
        os.environ[PRIVATE_NS_ENV] = os.readlink("/proc/self/ns/mnt")
    except FileNotFoundError:
        # gVisor has no /proc/self/ns/mnt: a fresh token names this namespace.
        os.environ[PRIVATE_NS_ENV] = f"anon-{os.getpid()}-{time.monotonic_ns()}"
    if make_private:
        try:
            mount("none", "/", None, MS_REC | MS_PRIVATE)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EPERM):
                raise


PRIVATE_NS_ENV = "FAKEFS_PRIVATE_MNTNS"


def in_private_mount_namespace() -> bool:
    """True only when we can tell this is not the host's mount namespace:
    fakefs created it (recorded in the environment), or PID 1's namespace is
    readable and differs. When in doubt, the answer is False (not safe)."""
    try:
        mine = os.readlink("/proc/self/ns/mnt")
    except FileNotFoundError:
        # No namespace links (gVisor): only a namespace fakefs made counts.
        return os.environ.get(PRIVATE_NS_ENV, "").startswith("anon-")
    except OSError:
        return False
    if os.environ.get(PRIVATE_NS_ENV) == mine:
        return True
    try:
        return os.readlink("/proc/1/ns/mnt") != mine
    except OSError:
        return False
