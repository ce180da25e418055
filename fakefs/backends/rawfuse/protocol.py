"""The FUSE kernel protocol: every opcode number, flag and structure layout
the raw backend uses, in one place.

Transcribed from the kernel's ``include/uapi/linux/fuse.h`` (protocol 7.32
header; we speak 7.31 at most, the version gVisor announces). All structures
are in the host's byte order with explicit padding, so ``=`` (native order,
standard sizes, no implicit alignment) packs them exactly.
"""

from __future__ import annotations

import enum
import struct
from collections import namedtuple

# -- versions -------------------------------------------------------------------
FUSE_KERNEL_VERSION = 7
# The highest minor we speak. 7.31 is what gVisor announces; every structure
# we use has had its current size since 7.23 (init_out) and before.
SERVER_MINOR = 31
# Below 7.12 create_in/mkdir_in and friends had other sizes; nothing this
# old is worth the compatibility paths (Linux has sent >= 7.12 since 2.6.31).
MIN_MINOR = 12

FUSE_ROOT_ID = 1
# fuse_dev_do_read() refuses buffers smaller than this.
FUSE_MIN_READ_BUFFER = 8192


class Opcode(enum.IntEnum):
    LOOKUP = 1
    FORGET = 2  # no reply
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36
    BMAP = 37
    DESTROY = 38
    IOCTL = 39
    POLL = 40
    NOTIFY_REPLY = 41
    BATCH_FORGET = 42  # no reply
    FALLOCATE = 43
    READDIRPLUS = 44
    RENAME2 = 45
    LSEEK = 46
    COPY_FILE_RANGE = 47
    SETUPMAPPING = 48
    REMOVEMAPPING = 49


# Requests the kernel never waits a reply for.
NO_REPLY = frozenset({Opcode.FORGET, Opcode.BATCH_FORGET})

# -- INIT flags (fuse_init_in.flags / fuse_init_out.flags) ----------------------
FUSE_ASYNC_READ = 1 << 0
FUSE_POSIX_LOCKS = 1 << 1
FUSE_FILE_OPS = 1 << 2
FUSE_ATOMIC_O_TRUNC = 1 << 3
FUSE_EXPORT_SUPPORT = 1 << 4
FUSE_BIG_WRITES = 1 << 5
FUSE_DONT_MASK = 1 << 6
FUSE_SPLICE_WRITE = 1 << 7
FUSE_SPLICE_MOVE = 1 << 8
FUSE_SPLICE_READ = 1 << 9
FUSE_FLOCK_LOCKS = 1 << 10
FUSE_HAS_IOCTL_DIR = 1 << 11
FUSE_AUTO_INVAL_DATA = 1 << 12
FUSE_DO_READDIRPLUS = 1 << 13
FUSE_READDIRPLUS_AUTO = 1 << 14
FUSE_ASYNC_DIO = 1 << 15
FUSE_WRITEBACK_CACHE = 1 << 16
FUSE_NO_OPEN_SUPPORT = 1 << 17
FUSE_PARALLEL_DIROPS = 1 << 18
FUSE_HANDLE_KILLPRIV = 1 << 19
FUSE_POSIX_ACL = 1 << 20
FUSE_ABORT_ERROR = 1 << 21
FUSE_MAX_PAGES = 1 << 22
FUSE_CACHE_SYMLINKS = 1 << 23
FUSE_NO_OPENDIR_SUPPORT = 1 << 24
FUSE_EXPLICIT_INVAL_DATA = 1 << 25
FUSE_MAP_ALIGNMENT = 1 << 26
FUSE_SUBMOUNTS = 1 << 27
FUSE_HANDLE_KILLPRIV_V2 = 1 << 28

# fuse_init_out sizes older kernels expect (a longer reply is EINVAL there).
FUSE_COMPAT_INIT_OUT_SIZE = 8  # minor < 5
FUSE_COMPAT_22_INIT_OUT_SIZE = 24  # minor < 23

# -- fuse_setattr_in.valid --------------------------------------------------------
FATTR_MODE = 1 << 0
FATTR_UID = 1 << 1
FATTR_GID = 1 << 2
FATTR_SIZE = 1 << 3
FATTR_ATIME = 1 << 4
FATTR_MTIME = 1 << 5
FATTR_FH = 1 << 6
FATTR_ATIME_NOW = 1 << 7
FATTR_MTIME_NOW = 1 << 8
FATTR_LOCKOWNER = 1 << 9
FATTR_CTIME = 1 << 10

# -- fuse_open_out.open_flags -------------------------------------------------------
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_NONSEEKABLE = 1 << 2
FOPEN_CACHE_DIR = 1 << 3
FOPEN_STREAM = 1 << 4

# -- fuse_getattr_in.getattr_flags --------------------------------------------------
FUSE_GETATTR_FH = 1 << 0

# -- access(2) mask bits as FUSE_ACCESS carries them (R_OK/W_OK/X_OK) ----------------
MAY_EXEC, MAY_WRITE, MAY_READ = 1, 2, 4


class Malformed(Exception):
    """A request too short for its opcode's structures, or otherwise unparsable."""


class Layout:
    """One C structure: its field names and ``struct`` format in order."""

    def __init__(self, name: str, fields: list[tuple[str, str]]):
        self.name = name
        self.fields = [f for f, _ in fields]
        self.struct = struct.Struct("=" + "".join(fmt for _, fmt in fields))
        self.size = self.struct.size
        self.tuple = namedtuple(name, self.fields)
        self._index = {f: i for i, f in enumerate(self.fields)}
        self._zeros = [0] * len(self.fields)

    def unpack(self, buf: bytes | memoryview, offset: int = 0):
        if len(buf) - offset < self.size:
            raise Malformed(f"{self.name}: {len(buf) - offset} bytes, need {self.size}")
        return self.tuple._make(self.struct.unpack_from(buf, offset))

    def pack(self, **values) -> bytes:
        # Every reply goes through here: fields by index, zeros for the rest.
        args = self._zeros.copy()
        try:
            for field, value in values.items():
                args[self._index[field]] = value
        except KeyError:
            unknown = sorted(set(values) - set(self.fields))
            raise TypeError(f"{self.name} has no field(s) {unknown}") from None
        return self.struct.pack(*args)


def _layout(name: str, *fields: str) -> Layout:
    """Fields written as "type name" with C's fixed-width types."""
    codes = {"u64": "Q", "s64": "q", "u32": "I", "s32": "i", "u16": "H"}
    out = []
    for decl in fields:
        ctype, _, fname = decl.partition(" ")
        if "[" in fname:  # an array: "u32 spare[6]" -> spare0..spare5
            base, count = fname[:-1].split("[")
            out += [(f"{base}{i}", codes[ctype]) for i in range(int(count))]
        else:
            out.append((fname, codes[ctype]))
    return Layout(name, out)


IN_HEADER = _layout("fuse_in_header", "u32 len", "u32 opcode", "u64 unique", "u64 nodeid", "u32 uid",
                    "u32 gid", "u32 pid", "u32 padding")
OUT_HEADER = _layout("fuse_out_header", "u32 len", "s32 error", "u64 unique")

ATTR = _layout("fuse_attr", "u64 ino", "u64 size", "u64 blocks", "u64 atime", "u64 mtime", "u64 ctime",
               "u32 atimensec", "u32 mtimensec", "u32 ctimensec", "u32 mode", "u32 nlink", "u32 uid", "u32 gid",
               "u32 rdev", "u32 blksize", "u32 flags")
KSTATFS = _layout("fuse_kstatfs", "u64 blocks", "u64 bfree", "u64 bavail", "u64 files", "u64 ffree",
                  "u32 bsize", "u32 namelen", "u32 frsize", "u32 padding", "u32 spare[6]")

# Replies that carry a fuse_attr are written as the fixed part followed by ATTR.
ENTRY_OUT_HEAD = _layout("fuse_entry_out", "u64 nodeid", "u64 generation", "u64 entry_valid",
                         "u64 attr_valid", "u32 entry_valid_nsec", "u32 attr_valid_nsec")
ATTR_OUT_HEAD = _layout("fuse_attr_out", "u64 attr_valid", "u32 attr_valid_nsec", "u32 dummy")

INIT_IN = _layout("fuse_init_in", "u32 major", "u32 minor", "u32 max_readahead", "u32 flags")
INIT_OUT = _layout("fuse_init_out", "u32 major", "u32 minor", "u32 max_readahead", "u32 flags",
                   "u16 max_background", "u16 congestion_threshold", "u32 max_write", "u32 time_gran",
                   "u16 max_pages", "u16 map_alignment", "u32 unused[8]")

FORGET_IN = _layout("fuse_forget_in", "u64 nlookup")
BATCH_FORGET_IN = _layout("fuse_batch_forget_in", "u32 count", "u32 dummy")
FORGET_ONE = _layout("fuse_forget_one", "u64 nodeid", "u64 nlookup")
GETATTR_IN = _layout("fuse_getattr_in", "u32 getattr_flags", "u32 dummy", "u64 fh")
SETATTR_IN = _layout("fuse_setattr_in", "u32 valid", "u32 padding", "u64 fh", "u64 size", "u64 lock_owner",
                     "u64 atime", "u64 mtime", "u64 ctime", "u32 atimensec", "u32 mtimensec", "u32 ctimensec",
                     "u32 mode", "u32 unused4", "u32 uid", "u32 gid", "u32 unused5")
MKNOD_IN = _layout("fuse_mknod_in", "u32 mode", "u32 rdev", "u32 umask", "u32 padding")
MKDIR_IN = _layout("fuse_mkdir_in", "u32 mode", "u32 umask")
RENAME_IN = _layout("fuse_rename_in", "u64 newdir")
RENAME2_IN = _layout("fuse_rename2_in", "u64 newdir", "u32 flags", "u32 padding")
LINK_IN = _layout("fuse_link_in", "u64 oldnodeid")
OPEN_IN = _layout("fuse_open_in", "u32 flags", "u32 unused")
CREATE_IN = _layout("fuse_create_in", "u32 flags", "u32 mode", "u32 umask", "u32 padding")
OPEN_OUT = _layout("fuse_open_out", "u64 fh", "u32 open_flags", "u32 padding")
RELEASE_IN = _layout("fuse_release_in", "u64 fh", "u32 flags", "u32 release_flags", "u64 lock_owner")
FLUSH_IN = _layout("fuse_flush_in", "u64 fh", "u32 unused", "u32 padding", "u64 lock_owner")
READ_IN = _layout("fuse_read_in", "u64 fh", "u64 offset", "u32 size", "u32 read_flags", "u64 lock_owner",
                  "u32 flags", "u32 padding")
WRITE_IN = _layout("fuse_write_in", "u64 fh", "u64 offset", "u32 size", "u32 write_flags", "u64 lock_owner",
                   "u32 flags", "u32 padding")
WRITE_OUT = _layout("fuse_write_out", "u32 size", "u32 padding")
ACCESS_IN = _layout("fuse_access_in", "u32 mask", "u32 padding")
# Before 7.33 (FUSE_SETXATTR_EXT, which we never ask for) setxattr_in has
# only these two fields; the name (NUL-terminated) and the value follow.
SETXATTR_IN = _layout("fuse_setxattr_in", "u32 size", "u32 flags")
GETXATTR_IN = _layout("fuse_getxattr_in", "u32 size", "u32 padding")
GETXATTR_OUT = _layout("fuse_getxattr_out", "u32 size", "u32 padding")
INTERRUPT_IN = _layout("fuse_interrupt_in", "u64 unique")
# fuse_dirent's fixed part; the name follows and the whole entry is padded
# to 8 bytes (FUSE_DIRENT_ALIGN).
DIRENT_HEAD = _layout("fuse_dirent", "u64 ino", "u64 off", "u32 namelen", "u32 type")

ENTRY_OUT_SIZE = ENTRY_OUT_HEAD.size + ATTR.size
ATTR_OUT_SIZE = ATTR_OUT_HEAD.size + ATTR.size

# Sizes fixed by the ABI; a wrong transcription fails at import, not at mount.
_EXPECTED_SIZES = {
    IN_HEADER: 40, OUT_HEADER: 16, ATTR: 88, KSTATFS: 80, INIT_IN: 16, INIT_OUT: 64, GETATTR_IN: 16,
    SETATTR_IN: 88, OPEN_OUT: 16, RELEASE_IN: 24, FLUSH_IN: 24, READ_IN: 40, WRITE_IN: 40, WRITE_OUT: 8,
    CREATE_IN: 16, MKDIR_IN: 8, MKNOD_IN: 16, RENAME2_IN: 16, FORGET_ONE: 16, DIRENT_HEAD: 24,
    SETXATTR_IN: 8, GETXATTR_IN: 8, GETXATTR_OUT: 8,
}
for _layout_obj, _size in _EXPECTED_SIZES.items():
    assert _layout_obj.size == _size, (_layout_obj.name, _layout_obj.size, _size)
assert ENTRY_OUT_SIZE == 128 and ATTR_OUT_SIZE == 104


def dirent_size(namelen: int) -> int:
    """FUSE_DIRENT_SIZE: header plus name, rounded up to 8 bytes."""
    return (DIRENT_HEAD.size + namelen + 7) & ~7


def pack_dirent(ino: int, off: int, dtype: int, name: bytes) -> bytes:
    raw = DIRENT_HEAD.pack(ino=ino, off=off, namelen=len(name), type=dtype) + name
    return raw + b"\0" * (dirent_size(len(name)) - len(raw))


# fuse_notify_code (sent as the error of a reply with unique 0).
# INVAL_INODE: forget an inode's attributes (off < 0) or also its pages.
NOTIFY_INVAL_INODE = 2
# RESEND: the kernel queues again every request read but not answered
# (fuse_resend).
NOTIFY_RESEND = 7
NOTIFY_INVAL_INODE_OUT = _layout("fuse_notify_inval_inode_out", "u64 ino", "s64 off", "s64 len")


def notification(code: int, payload: bytes) -> bytes:
    return OUT_HEADER.pack(len=OUT_HEADER.size + len(payload), error=code, unique=0) + payload


def reply(unique: int, error: int = 0, payload: bytes = b"") -> bytes:
    """A whole reply: fuse_out_header (error is a negative errno or 0) + payload."""
    return OUT_HEADER.pack(len=OUT_HEADER.size + len(payload), error=error, unique=unique) + payload
