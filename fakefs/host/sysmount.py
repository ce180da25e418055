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
_libc.syscall.restype = ctypes.c_long  # syscall(2) returns a long

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


def bind(source: str, target: str) -> None:
    """Bind-mount ``source`` (recursively where the kernel allows) at ``target``."""
    try:
        mount(source, target, None, MS_BIND | MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        # gVisor (2022) refuses every recursive bind with EINVAL; a plain
        # bind is the same here (the sources have no submounts).
        mount(source, target, None, MS_BIND)


def umount(target: str, detach: bool = False) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH if detach else 0), f"umount {target}")


# The new mount API (Linux 5.2; mounting beneath another mount: 6.5).
# x86_64 and arm64 share these numbers (asm-generic).
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 428, 429, 430, 431, 432
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
FSOPEN_CLOEXEC = 1
FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_BENEATH = 0x200
MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x02, 0x04
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000


def _syscall(number: int, *args) -> int:
    ret = _libc.syscall(number, *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def new_mount(fstype: str, source: str, options: dict[str, str | None]) -> int:
    """A detached mount of a new ``fstype`` filesystem (fsopen, fsconfig,
    fsmount), nosuid and nodev; ``options`` are its mount options (None: a
    flag). Returns the mount's fd, to be placed with move_mount_beneath()."""
    fs = _syscall(SYS_FSOPEN, fstype.encode(), FSOPEN_CLOEXEC)
    try:
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_STRING, b"source", source.encode(), 0)
        for key, value in options.items():
            if value is None:
                _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_FLAG, key.encode(), None, 0)
            else:
                _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0)
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0)
        return _syscall(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    finally:
        os.close(fs)


def clone_mount(path: str | int) -> int:
    """A detached copy of the mount at ``path``, or of the detached mount
    whose fd is ``path`` (open_tree OPEN_TREE_CLONE), like the source of a
    bind mount. Returns its fd."""
    if isinstance(path, int):
        return _syscall(SYS_OPEN_TREE, path, b"", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH)
    return _syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)


def attach_mount(mount_fd: int, target: str) -> None:
    """Mount the detached mount ``mount_fd`` at ``target`` (move_mount)."""
    _syscall(SYS_MOVE_MOUNT, mount_fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH)


def replace_mount(mount_fd: int, target: str) -> None:
    """Put the detached mount ``mount_fd`` in place of the top mount at
    ``target`` without a moment in which the directory underneath shows:
    it is slid beneath the old one (MOVE_MOUNT_BENEATH), then the old one is
    detached. OSError (EINVAL, ENOSYS: an older kernel, gVisor) when the
    kernel cannot; nothing has changed then."""
    _syscall(SYS_MOVE_MOUNT, mount_fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_BENEATH)
    umount(target, detach=True)


def mount_fuse(target: str, replace: bool = False, clear=None) -> tuple[int, str]:
    """A FUSE mount of fakefs at ``target`` on a fresh /dev/fuse connection;
    returns the connection's fd and the fstype used ("fuse.fakefs" names the
    filesystem in mountinfo where the kernel supports subtypes; gVisor knows
    only "fuse").

    ``replace``: a dead mount of ours is at ``target``: the new one takes its
    place without the directory underneath ever showing (replace_mount).
    Where the kernel cannot, ``clear()`` removes the dead one first."""
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    try:
        options = {"fd": str(fd), "rootmode": "40000", "user_id": str(os.geteuid()),
                   "group_id": str(os.getegid()), "allow_other": None, "default_permissions": None}
        if replace:
            try:
                mount_fd = new_mount("fuse", "fakefs", {**options, "subtype": "fakefs"})
                try:
                    replace_mount(mount_fd, target)
                finally:
                    os.close(mount_fd)
                return fd, "fuse.fakefs"
            except OSError:
                if clear is not None:
                    clear()
        data = ",".join(k if v is None else f"{k}={v}" for k, v in options.items())
        for fstype in ("fuse.fakefs", "fuse"):
            try:
                mount("fakefs", target, fstype, MS_NOSUID | MS_NODEV, data)
                return fd, fstype
            except OSError as exc:
                if fstype == "fuse" or exc.errno not in (errno.ENODEV, errno.EINVAL):
                    raise
        raise AssertionError("unreachable: the last fstype re-raises")
    except BaseException:
        os.close(fd)
        raise


def unshare_mount_namespace(make_private: bool = True) -> None:
    """A new mount namespace for this process. Making everything private
    stops our mounts leaking to the parent namespace; gVisor refuses the
    propagation change (util-linux's ``unshare -m`` fails there), which is
    harmless because its mounts do not propagate anyway."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Remember (for this process and its children) that fakefs made this
    # namespace: its mounts hide nothing from the init system (hiding.py),
    # and gVisor's namespaces, which have no ns links, get a name.
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
