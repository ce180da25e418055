"""The raw FUSE transport's protocol handling, fed request buffers as the
kernel writes them to /dev/fuse.

The ``GVISOR_*`` and ``LINUX_*`` buffers were recorded from real sessions
(runsc 2022-12-19 inside ``runsc do``, and Linux 6.18) serving a model with
the hierarchies cpu,cpuacct and memory; where a recorded request names a
node or handle, the test re-targets it to the one this session handed out.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from fakefs.vfs.cgroupfs import CgroupFsRoot, ControlNode
from fakefs.vfs.procviews import CgroupRootWithViews, ViewsDir
from fakefs.vfs.ops import ROOT_INODE, FsOps
from fakefs.backends.rawfuse import protocol as P
from fakefs.backends.rawfuse.protocol import Opcode
from fakefs.backends.rawfuse.server import MAX_WRITE, FuseSession
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel

# gVisor: protocol 7.31, flags = FUSE_MAX_PAGES only, max_readahead 128 KiB.
GVISOR_INIT = bytes.fromhex(
    "380000001a000000020000000000000000000000000000000000000000000000"
    "0100000000000000070000001f0000000000020000004000")
# Linux 6.18: protocol 7.45, a full fuse_init_in (flags2 and unused words).
LINUX_INIT = bytes.fromhex(
    "680000001a000000020000000000000000000000000000000000000000000000"
    "0000000000000000070000002d00000000000200fbffff73fd05000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000")
# LOOKUP "cpu,cpuacct" in the root (gVisor, pid 3).
GVISOR_LOOKUP_CPU = bytes.fromhex(
    "34000000010000000e0000000000000001000000000000000000000000000000"
    "03000000000000006370752c6370756163637400")
# OPENDIR of the root, then READDIR at offsets 0 and 8 (4096-byte buffers).
GVISOR_OPENDIR_ROOT = bytes.fromhex(
    "300000001b000000040000000000000001000000000000000000000000000000"
    "03000000000000000008010000000000")
GVISOR_READDIR_ROOT_0 = bytes.fromhex(
    "500000001c000000080000000000000001000000000000000000000000000000"
    "0300000000000000010000000000000000000000000000000010000000000000"
    "00000000000000000008010000000000")
GVISOR_READDIR_ROOT_8 = bytes.fromhex(
    "500000001c0000000a0000000000000001000000000000000000000000000000"
    "0300000000000000010000000000000008000000000000000010000000000000"
    "00000000000000000008010000000000")
# On cpu.cfs_period_us (node 7, fh 1): READ 4096 at 0, GETATTR naming the
# handle (FUSE_GETATTR_FH: gVisor's size check before it cuts a read), READ at 3.
GVISOR_READ_0 = bytes.fromhex(
    "500000000f000000180000000000000007000000000000000000000000000000"
    "0300000000000000010000000000000000000000000000000010000000000000"
    "00000000000000000000000000000000")
GVISOR_GETATTR_FH = bytes.fromhex(
    "38000000030000001a0000000000000007000000000000000000000000000000"
    "030000000000000001000000000000000100000000000000")
GVISOR_READ_3 = bytes.fromhex(
    "500000000f0000001c0000000000000007000000000000000000000000000000"
    "0300000000000000010000000000000003000000000000000010000000000000"
    "00000000000000000000000000000000")
# WRITE "0x10\n" to cpu.shares of a child (node 9, fh 2), as Linux sends it
# (pid 1010, write_flags FUSE_WRITE_LOCKOWNER, the opener's flags).
LINUX_WRITE = bytes.fromhex(
    "55000000100000004a0000000000000009000000000000000000000000000000"
    "f20300000000000002000000000000000000000000000000050000000200000"
    "08ce7ede85e7fbaf00180000000000000307831300a")


def retarget(buf: bytes, nodeid: int | None = None, fh: int | None = None, unique: int | None = None) -> bytes:
    """A recorded request aimed at this session's node/handle ids."""
    hdr = P.IN_HEADER.unpack(buf)._asdict()
    if nodeid is not None:
        hdr["nodeid"] = nodeid
    if unique is not None:
        hdr["unique"] = unique
    body = bytearray(buf[P.IN_HEADER.size:])
    if fh is not None:  # fh leads every fuse_read_in/write_in/getattr's tail
        offset = 8 if hdr["opcode"] == Opcode.GETATTR else 0
        body[offset:offset + 8] = fh.to_bytes(8, "little" if os.sys.byteorder == "little" else "big")
    return P.IN_HEADER.pack(**hdr) + bytes(body)


_unique = iter(range(1000, 10**9, 2))


def request(opcode: int, nodeid: int = ROOT_INODE, body: bytes = b"", uid: int = 0, gid: int = 0,
            pid: int = 100) -> bytes:
    return P.IN_HEADER.pack(len=P.IN_HEADER.size + len(body), opcode=opcode, unique=next(_unique),
                            nodeid=nodeid, uid=uid, gid=gid, pid=pid) + body


def answer(reply: bytes | None, of: bytes) -> tuple[int, bytes]:
    """(error, payload) of a reply, checking its header against the request."""
    assert reply is not None, "expected a reply"
    out = P.OUT_HEADER.unpack(reply)
    assert out.len == len(reply)
    assert out.unique == P.IN_HEADER.unpack(of).unique
    return out.error, reply[P.OUT_HEADER.size:]


def ok(session: FuseSession, buf: bytes) -> bytes:
    error, payload = answer(session.handle(buf), buf)
    assert error == 0, errno.errorcode.get(-error, error)
    return payload


def err(session: FuseSession, buf: bytes) -> str:
    error, payload = answer(session.handle(buf), buf)
    assert payload == b""
    return errno.errorcode[-error] if error else "ok"


def entry(payload: bytes):
    head = P.ENTRY_OUT_HEAD.unpack(payload)
    return head, P.ATTR.unpack(payload, P.ENTRY_OUT_HEAD.size)


def attr_of(payload: bytes):
    assert len(payload) == P.ATTR_OUT_SIZE
    return P.ATTR.unpack(payload, P.ATTR_OUT_HEAD.size)


def dirents(payload: bytes) -> list[tuple[str, int, int, int]]:
    out, offset = [], 0
    while offset < len(payload):
        d = P.DIRENT_HEAD.unpack(payload, offset)
        start = offset + P.DIRENT_HEAD.size
        out.append((payload[start:start + d.namelen].decode(), d.ino, d.off, d.type))
        offset += P.dirent_size(d.namelen)
    assert offset == len(payload)
    return out


def name(s: str) -> bytes:
    return s.encode() + b"\0"


def initialized(init: bytes, hierarchies: list[str]) -> FuseSession:
    """A session over a model with process 100, after ``init``."""
    procs = StaticProcessTable()
    procs.spawn(100)
    model = CgroupModel(HostFacts(), procs, hierarchies)
    s = FuseSession(FsOps(CgroupFsRoot(model)), log=lambda msg: None)
    ok(s, init)
    return s


@pytest.fixture
def session() -> FuseSession:
    return initialized(GVISOR_INIT, ["cpu,cpuacct", "memory"])


def lookup(s: FuseSession, parent: int, child: str) -> tuple[int, object]:
    head, a = entry(ok(s, request(Opcode.LOOKUP, parent, name(child))))
    return head.nodeid, a


def open_(s: FuseSession, inode: int, flags: int = os.O_RDONLY, pid: int = 100) -> int:
    out = P.OPEN_OUT.unpack(ok(s, request(Opcode.OPEN, inode, P.OPEN_IN.pack(flags=flags), pid=pid)))
    assert out.open_flags & P.FOPEN_DIRECT_IO
    return out.fh


def read(s: FuseSession, inode: int, fh: int, offset: int, size: int) -> bytes:
    return ok(s, request(Opcode.READ, inode, P.READ_IN.pack(fh=fh, offset=offset, size=size)))


def write(inode: int, fh: int, data: bytes, pid: int = 100) -> bytes:
    return request(Opcode.WRITE, inode, P.WRITE_IN.pack(fh=fh, size=len(data)) + data, pid=pid)


# -- INIT -------------------------------------------------------------------------------
def fresh() -> FuseSession:
    model = CgroupModel(HostFacts(), StaticProcessTable(), ["cpu,cpuacct"])
    return FuseSession(FsOps(CgroupFsRoot(model)), log=lambda msg: None)


def test_init_with_gvisor_takes_only_what_it_offers():
    s = fresh()
    out = P.INIT_OUT.unpack(ok(s, GVISOR_INIT))
    assert (out.major, out.minor) == (7, 31)
    assert out.flags == P.FUSE_MAX_PAGES  # all gVisor offers; no READDIRPLUS needed
    assert out.max_pages == MAX_WRITE // 4096 and out.max_write == MAX_WRITE
    assert out.max_readahead == 128 * 1024  # echoed back
    assert s.initialized and s.proto_minor == 31


def test_init_with_linux_negotiates_down_to_our_minor():
    s = fresh()
    payload = ok(s, LINUX_INIT)
    assert len(payload) == P.INIT_OUT.size  # 7.23+ reply size
    out = P.INIT_OUT.unpack(payload)
    assert (out.major, out.minor) == (7, 31)
    offered = P.INIT_IN.unpack(LINUX_INIT, P.IN_HEADER.size).flags
    assert offered & P.FUSE_DO_READDIRPLUS and offered & P.FUSE_WRITEBACK_CACHE
    assert offered & P.FUSE_NO_OPEN_SUPPORT and offered & P.FUSE_AUTO_INVAL_DATA
    # big writes, max_pages, and the page cache mode (a cgroup tree may be
    # served without OPEN; writes kill no set-id bits, as on kernfs); no
    # readdirplus, no writeback cache
    assert out.flags == (P.FUSE_BIG_WRITES | P.FUSE_MAX_PAGES | P.FUSE_AUTO_INVAL_DATA
                         | P.FUSE_HANDLE_KILLPRIV_V2)
    assert s.page_cache and s.ops.page_cache == "all"


def test_trees_that_need_open_keep_direct_io_on_linux():
    # A tree with per-reader files (the /proc views) or open-time checks
    # (merged /proc/sys views) cannot leave OPEN out.
    model = CgroupModel(HostFacts(), StaticProcessTable(), ["cpu,cpuacct"])
    s = FuseSession(FsOps(CgroupRootWithViews(CgroupFsRoot(model), ViewsDir(None, []))), log=lambda msg: None)
    out = P.INIT_OUT.unpack(ok(s, LINUX_INIT))
    assert out.flags == P.FUSE_BIG_WRITES | P.FUSE_MAX_PAGES and not s.page_cache


def test_init_with_an_older_kernel_uses_its_minor_and_reply_size():
    s = fresh()
    buf = request(Opcode.INIT, 0, P.INIT_IN.pack(major=7, minor=19, max_readahead=65536,
                                                 flags=P.FUSE_BIG_WRITES | P.FUSE_DO_READDIRPLUS))
    payload = ok(s, buf)
    assert len(payload) == P.FUSE_COMPAT_22_INIT_OUT_SIZE
    assert payload[:16] == P.INIT_OUT.pack(major=7, minor=19, max_readahead=65536, flags=P.FUSE_BIG_WRITES)[:16]


def test_init_refuses_ancient_protocols_and_answers_a_newer_major():
    s = fresh()
    assert err(s, request(Opcode.INIT, 0, P.INIT_IN.pack(major=7, minor=8))) == "EPROTO"
    assert not s.initialized and "7.8" in s.init_error
    s = fresh()
    payload = ok(s, request(Opcode.INIT, 0, P.INIT_IN.pack(major=8, minor=0)))
    assert len(payload) == 8 and payload == P.INIT_OUT.pack(major=7, minor=31)[:8]
    assert not s.initialized  # the kernel retries with major 7


def test_requests_before_init_and_a_second_init_are_refused():
    s = fresh()
    assert err(s, request(Opcode.GETATTR, 1, P.GETATTR_IN.pack())) == "EIO"
    ok(s, GVISOR_INIT)
    assert err(s, retarget(GVISOR_INIT, unique=77)) == "EPROTO"


# -- lookups and attributes ------------------------------------------------------------------
def test_lookup_recorded_from_gvisor(session):
    head, a = entry(ok(session, GVISOR_LOOKUP_CPU))
    # a hierarchy's name changes only through this filesystem: the kernel may keep it
    assert head.nodeid > ROOT_INODE and head.entry_valid > 0 and head.attr_valid > 0
    assert stat.S_ISDIR(a.mode) and stat.S_IMODE(a.mode) == 0o555 and a.ino == head.nodeid
    again, _ = entry(ok(session, retarget(GVISOR_LOOKUP_CPU, unique=99)))
    assert again.nodeid == head.nodeid  # stable inodes
    assert err(session, request(Opcode.LOOKUP, ROOT_INODE, name("nope"))) == "ENOENT"
    assert err(session, request(Opcode.LOOKUP, 12345, name("x"))) == "ENOENT"


def test_getattr_reports_exact_sizes_and_modes(session):
    cpu, _ = lookup(session, ROOT_INODE, "cpu,cpuacct")
    shares, a = lookup(session, cpu, "cpu.shares")
    assert a.size == len(b"1024\n") and stat.S_IMODE(a.mode) == 0o644
    # a file's attributes are never cached: its size follows its content
    assert entry(ok(session, request(Opcode.LOOKUP, cpu, name("cpu.shares"))))[0].attr_valid == 0
    payload = ok(session, request(Opcode.GETATTR, shares, P.GETATTR_IN.pack()))
    assert P.ATTR_OUT_HEAD.unpack(payload).attr_valid == 0
    got = attr_of(payload)
    assert (got.ino, got.size, got.mode, got.blksize) == (shares, 5, a.mode, 4096)
    link = attr_of(ok(session, request(Opcode.GETATTR, lookup(session, ROOT_INODE, "cpu")[0])))
    assert stat.S_ISLNK(link.mode) and link.size == len("cpu,cpuacct")
    assert ok(session, request(Opcode.READLINK, link.ino)) == b"cpu,cpuacct"


# -- reads of a snapshot -------------------------------------------------------------------------
def test_read_of_a_snapshot_at_offsets_with_gvisors_size_check(session):
    cpu, _ = lookup(session, ROOT_INODE, "cpu,cpuacct")
    ok(session, request(Opcode.MKDIR, cpu, P.MKDIR_IN.pack(mode=0o755) + name("snap")))
    child, _ = lookup(session, cpu, "snap")
    period, _ = lookup(session, child, "cpu.cfs_period_us")
    fh = open_(session, period)
    first = ok(session, retarget(GVISOR_READ_0, nodeid=period, fh=fh))
    assert first == b"100000\n"  # a 4096-byte READ gets the whole snapshot
    assert read(session, period, fh, 0, 2) == b"10"

    writer = open_(session, period, os.O_WRONLY)
    assert P.WRITE_OUT.unpack(ok(session, write(period, writer, b"2000"))).size == 4
    # the open handle keeps its snapshot, at every offset
    assert ok(session, retarget(GVISOR_READ_3, nodeid=period, fh=fh)) == b"000\n"
    assert read(session, period, fh, 7, 100) == b""
    # gVisor's size check names the handle: it sees the snapshot's size, so
    # it does not cut the read short; a plain GETATTR sees the new value's
    snap = attr_of(ok(session, retarget(GVISOR_GETATTR_FH, nodeid=period, fh=fh)))
    assert snap.size == len(b"100000\n")
    live = attr_of(ok(session, request(Opcode.GETATTR, period, P.GETATTR_IN.pack())))
    assert live.size == len(b"2000\n")
    fresh_fh = open_(session, period)
    assert read(session, period, fresh_fh, 0, 4096) == b"2000\n"
    for h in (fh, writer, fresh_fh):
        ok(session, request(Opcode.RELEASE, period, P.RELEASE_IN.pack(fh=h)))
    assert err(session, request(Opcode.READ, period, P.READ_IN.pack(fh=fh, size=10))) == "EBADF"


def test_gvisor_page_reads_continue_the_snapshot_and_a_reread_renders_anew(session):
    """gVisor reads a whole page and hands the caller a prefix; its next
    READ starts inside what it was given. A read from the start again (a
    monitor's pread(fd, n, 0)) renders anew, as on kernfs."""
    cpu, _ = lookup(session, ROOT_INODE, "cpu,cpuacct")
    ok(session, request(Opcode.MKDIR, cpu, P.MKDIR_IN.pack(mode=0o755) + name("pages")))
    child, _ = lookup(session, cpu, "pages")
    period, _ = lookup(session, child, "cpu.cfs_period_us")
    fh = open_(session, period)
    writer = open_(session, period, os.O_WRONLY)
    assert read(session, period, fh, 0, 4096) == b"100000\n"  # the caller took 2 bytes of it
    ok(session, write(period, writer, b"2000"))
    assert read(session, period, fh, 2, 4096) == b"0000\n"  # the caller's next read: same snapshot
    assert attr_of(ok(session, request(Opcode.GETATTR, period, P.GETATTR_IN.pack(
        getattr_flags=P.FUSE_GETATTR_FH, fh=fh)))).size == 7
    assert read(session, period, fh, 0, 4096) == b"2000\n"  # from the start again: rendered anew
    assert attr_of(ok(session, request(Opcode.GETATTR, period, P.GETATTR_IN.pack(
        getattr_flags=P.FUSE_GETATTR_FH, fh=fh)))).size == 5


def test_write_only_files_refuse_reads_with_einval(session):
    memory, _ = lookup(session, ROOT_INODE, "memory")
    ok(session, request(Opcode.MKDIR, memory, P.MKDIR_IN.pack(mode=0o755) + name("m")))
    child, _ = lookup(session, memory, "m")
    force, a = lookup(session, child, "memory.force_empty")
    assert stat.S_IMODE(a.mode) == 0o200 and a.size == 0
    fh = open_(session, force, os.O_WRONLY)
    assert err(session, request(Opcode.READ, force, P.READ_IN.pack(fh=fh, size=10))) == "EBADF"


# -- writes ------------------------------------------------------------------------------------
def test_write_is_one_command(session):
    cpu, _ = lookup(session, ROOT_INODE, "cpu,cpuacct")
    ok(session, request(Opcode.MKDIR, cpu, P.MKDIR_IN.pack(mode=0o755) + name("a")))
    child, _ = lookup(session, cpu, "a")
    shares, _ = lookup(session, child, "cpu.shares")
    fh = open_(session, shares, os.O_WRONLY)
    buf = retarget(LINUX_WRITE, nodeid=shares, fh=fh)
    assert P.WRITE_OUT.unpack(ok(session, buf)).size == 5
    assert read(session, shares, open_(session, shares), 0, 4096) == b"16\n"
    assert err(session, write(shares, fh, b"5\n\n")) == "EINVAL"  # one write() = one command, parsed whole
    assert err(session, write(shares, fh, b"1" * 5000)) == "E2BIG"
    root_shares, _ = lookup(session, cpu, "cpu.shares")
    assert err(session, write(root_shares, open_(session, root_shares, os.O_WRONLY), b"100")) == "EINVAL"
    # a read-only handle cannot write
    assert err(session, write(shares, open_(session, shares), b"1")) == "EBADF"


def test_writer_identity_comes_from_the_request_header(session):
    memory, _ = lookup(session, ROOT_INODE, "memory")
    ok(session, request(Opcode.MKDIR, memory, P.MKDIR_IN.pack(mode=0o755) + name("j")))
    child, _ = lookup(session, memory, "j")
    procs, _ = lookup(session, child, "cgroup.procs")
    fh = open_(session, procs, os.O_WRONLY)
    ok(session, write(procs, fh, b"0", pid=100))
    assert read(session, procs, open_(session, procs), 0, 4096) == b"100\n"


def test_setattr_truncate_and_chmod(session):
    cpu, _ = lookup(session, ROOT_INODE, "cpu,cpuacct")
    ok(session, request(Opcode.MKDIR, cpu, P.MKDIR_IN.pack(mode=0o755) + name("d")))
    child, _ = lookup(session, cpu, "d")
    shares, _ = lookup(session, child, "cpu.shares")
    a = attr_of(ok(session, request(Opcode.SETATTR, shares, P.SETATTR_IN.pack(valid=P.FATTR_SIZE, size=0))))
    assert a.size == 5  # O_TRUNC on a control file changes nothing
    a = attr_of(ok(session, request(Opcode.SETATTR, shares,
                                    P.SETATTR_IN.pack(valid=P.FATTR_MODE | P.FATTR_UID, mode=0o100664, uid=65534))))
    assert stat.S_IMODE(a.mode) == 0o664 and a.uid == 65534
    # utime: explicit times as sent; FATTR_*_NOW as Linux sends it (with its time of day)
    a = attr_of(ok(session, request(Opcode.SETATTR, shares, P.SETATTR_IN.pack(
        valid=P.FATTR_ATIME | P.FATTR_MTIME, atime=1, atimensec=5, mtime=2, mtimensec=7))))
    assert (a.atime, a.atimensec, a.mtime, a.mtimensec) == (1, 5, 2, 7) and a.ctime > 2
    a = attr_of(ok(session, request(Opcode.SETATTR, shares, P.SETATTR_IN.pack(
        valid=P.FATTR_MTIME | P.FATTR_MTIME_NOW, mtime=1234))))
    assert (a.atime, a.mtime) == (1, 1234)


def test_xattr_requests(session):
    cpu, _ = lookup(session, ROOT_INODE, "cpu,cpuacct")

    def setx(xname: bytes, value: bytes, flags: int = 0) -> bytes:
        return request(Opcode.SETXATTR, cpu, P.SETXATTR_IN.pack(size=len(value), flags=flags) + xname + b"\0" + value)

    def getx(xname: bytes, size: int) -> bytes:
        return request(Opcode.GETXATTR, cpu, P.GETXATTR_IN.pack(size=size) + xname + b"\0")

    assert ok(session, setx(b"user.\xff", b"v\0v")) == b""
    assert err(session, setx(b"user.\xff", b"x", os.XATTR_CREATE)) == "EEXIST"
    assert P.GETXATTR_OUT.unpack(ok(session, getx(b"user.\xff", 0))).size == 3  # the size query
    assert err(session, getx(b"user.\xff", 2)) == "ERANGE"
    assert ok(session, getx(b"user.\xff", 3)) == b"v\0v"
    assert err(session, getx(b"nope.x", 64)) == "ENOTSUP"
    assert ok(session, setx(b"trusted.t", b"")) == b""
    listing = P.GETXATTR_IN.pack(size=4096)
    assert ok(session, request(Opcode.LISTXATTR, cpu, listing)) == b"trusted.t\0user.\xff\0"
    assert ok(session, request(Opcode.LISTXATTR, cpu, listing, uid=1000)) == b"user.\xff\0"
    assert P.GETXATTR_OUT.unpack(ok(session, request(Opcode.LISTXATTR, cpu, P.GETXATTR_IN.pack()))).size == 17
    assert ok(session, request(Opcode.REMOVEXATTR, cpu, b"trusted.t\0")) == b""
    assert err(session, request(Opcode.REMOVEXATTR, cpu, b"trusted.t\0")) == "ENODATA"
    assert err(session, request(Opcode.SETXATTR, cpu, P.SETXATTR_IN.pack(size=10) + b"user.x\0short")) == "EINVAL"


# -- directories ---------------------------------------------------------------------------------
def test_readdir_recorded_from_gvisor_with_d_type(session):
    fh = P.OPEN_OUT.unpack(ok(session, GVISOR_OPENDIR_ROOT)).fh
    listing = dirents(ok(session, retarget(GVISOR_READDIR_ROOT_0, fh=fh)))
    kinds = {n: t for n, _, _, t in listing}
    # DT_DIR, DT_LNK; "." and ".." first (gVisor passes the server's entries through)
    assert kinds == {".": 4, "..": 4, "cpu,cpuacct": 4, "memory": 4, "cpu": 10, "cpuacct": 10}
    assert [n for n, _, _, _ in listing][:2] == [".", ".."]
    assert [off for _, _, off, _ in listing] == [2, 4, 6, 8, 10, 12]
    # gVisor's follow-up (recorded at offset 8 with two entries fewer) resumes
    # at the entry after the last one it got
    assert [n for n, _, _, _ in dirents(ok(session, retarget(GVISOR_READDIR_ROOT_8, fh=fh)))] == \
        [n for n, _, _, _ in listing][4:]
    assert ok(session, request(Opcode.READDIR, ROOT_INODE, P.READ_IN.pack(fh=fh, offset=13, size=4096))) == b""
    ok(session, request(Opcode.RELEASEDIR, ROOT_INODE, P.RELEASE_IN.pack(fh=fh)))
    assert err(session, retarget(GVISOR_READDIR_ROOT_0, fh=fh)) == "EBADF"


def test_readdir_resumes_at_linux_and_gvisor_offsets(session):
    memory, _ = lookup(session, ROOT_INODE, "memory")
    fh = P.OPEN_OUT.unpack(ok(session, request(Opcode.OPENDIR, memory, P.OPEN_IN.pack()))).fh

    def walk(next_offset) -> list[str]:
        names, offset = [], 0
        while True:
            batch = dirents(ok(session, request(Opcode.READDIR, memory, P.READ_IN.pack(fh=fh, offset=offset,
                                                                                         size=200))))
            if not batch:
                return names
            assert len(batch) < 10  # the 200-byte budget forces many batches
            names += [n for n, _, _, _ in batch]
            offset = next_offset(batch[-1][2])

    whole = [n for n, _, _, _ in dirents(ok(session, request(
        Opcode.READDIR, memory, P.READ_IN.pack(fh=fh, offset=0, size=65536))))]
    assert len(whole) > 20 and "memory.limit_in_bytes" in whole
    assert walk(lambda off: off) == whole  # Linux: resume at the last d_off
    assert walk(lambda off: off + 1) == whole  # gVisor: at d_off + 1
    types = {n: t for n, _, _, t in dirents(ok(session, request(
        Opcode.READDIR, memory, P.READ_IN.pack(fh=fh, offset=0, size=65536))))}
    assert types["memory.limit_in_bytes"] == 8  # DT_REG


def test_opendir_on_a_file_is_enotdir(session):
    cpu, _ = lookup(session, ROOT_INODE, "cpu,cpuacct")
    shares, _ = lookup(session, cpu, "cpu.shares")
    assert err(session, request(Opcode.OPENDIR, shares, P.OPEN_IN.pack())) == "ENOTDIR"
    assert err(session, request(Opcode.OPEN, cpu, P.OPEN_IN.pack())) == "EISDIR"


def test_mkdir_gives_the_control_files_at_once_and_namespace_rules(session):
    memory, _ = lookup(session, ROOT_INODE, "memory")
    head, a = entry(ok(session, request(Opcode.MKDIR, memory, P.MKDIR_IN.pack(mode=0o755) + name("c"))))
    assert stat.S_ISDIR(a.mode)
    procs, pa = lookup(session, head.nodeid, "cgroup.procs")
    assert stat.S_ISREG(pa.mode)
    assert err(session, request(Opcode.MKDIR, memory, P.MKDIR_IN.pack(mode=0o755) + name("c"))) == "EEXIST"
    assert err(session, request(Opcode.MKDIR, memory, P.MKDIR_IN.pack() + name("a\nb"))) == "EINVAL"
    assert err(session, request(Opcode.UNLINK, head.nodeid, name("cgroup.procs"))) == "EPERM"
    assert err(session, request(Opcode.CREATE, head.nodeid, P.CREATE_IN.pack(flags=os.O_CREAT | os.O_WRONLY,
                                                                             mode=0o644) + name("f"))) == "EACCES"
    assert err(session, request(Opcode.SYMLINK, head.nodeid, name("l") + name("t"))) == "EPERM"
    ok(session, request(Opcode.MKDIR, head.nodeid, P.MKDIR_IN.pack() + name("k")))
    assert err(session, request(Opcode.RMDIR, memory, name("c"))) == "EBUSY"
    assert ok(session, request(Opcode.RENAME, head.nodeid, P.RENAME_IN.pack(newdir=head.nodeid)
                               + name("k") + name("k2"))) == b""
    assert lookup(session, head.nodeid, "k2")[0]
    # cgroupfs refuses moving across directories, and any RENAME_* flag
    assert err(session, request(Opcode.RENAME, head.nodeid, P.RENAME_IN.pack(newdir=memory)
                                + name("k2") + name("out"))) == "EIO"
    assert err(session, request(Opcode.RENAME2, head.nodeid, P.RENAME2_IN.pack(newdir=head.nodeid, flags=1)
                                + name("k2") + name("k3"))) == "EINVAL"
    ok(session, request(Opcode.RMDIR, head.nodeid, name("k2")))
    ok(session, request(Opcode.RMDIR, memory, name("c")))
    assert err(session, request(Opcode.LOOKUP, memory, name("c"))) == "ENOENT"


def test_statfs_and_access(session):
    st = P.KSTATFS.unpack(ok(session, request(Opcode.STATFS)))
    assert (st.bsize, st.namelen, st.blocks) == (4096, 255, 0)
    cpu, _ = lookup(session, ROOT_INODE, "cpu,cpuacct")
    shares, _ = lookup(session, cpu, "cpu.shares")
    check = lambda mask, uid: err(session, request(Opcode.ACCESS, shares, P.ACCESS_IN.pack(mask=mask), uid=uid,
                                                    gid=uid))
    assert check(P.MAY_READ, 65534) == "ok"
    assert check(P.MAY_WRITE, 65534) == "EACCES"
    assert check(P.MAY_WRITE, 0) == "ok"
    assert check(P.MAY_EXEC, 0) == "EACCES"  # root still needs an x bit on files


# -- opcodes without replies, unknown opcodes, bad input ---------------------------------------------
def test_unknown_and_unserved_opcodes_get_enosys(session):
    assert err(session, request(99)) == "ENOSYS"
    assert err(session, request(Opcode.READDIRPLUS, ROOT_INODE, P.READ_IN.pack(size=4096))) == "ENOSYS"
    assert err(session, request(Opcode.FSYNC, ROOT_INODE, P.RELEASE_IN.pack())) == "ENOSYS"
    assert err(session, request(Opcode.CREATE + 4096)) == "ENOSYS"


def test_forget_and_batch_forget_take_no_reply(session):
    memory, _ = lookup(session, ROOT_INODE, "memory")
    ok(session, request(Opcode.MKDIR, memory, P.MKDIR_IN.pack() + name("gone")))
    gone, _ = lookup(session, memory, "gone")
    ok(session, request(Opcode.RMDIR, memory, name("gone")))
    assert session.handle(request(Opcode.FORGET, gone, P.FORGET_IN.pack(nlookup=2))) is None
    # the removed cgroup's inode is dropped; live ones survive a forget
    assert err(session, request(Opcode.GETATTR, gone, P.GETATTR_IN.pack())) == "ENOENT"
    batch = P.BATCH_FORGET_IN.pack(count=3) + P.FORGET_ONE.pack(nodeid=memory, nlookup=1)
    assert session.handle(request(Opcode.BATCH_FORGET, 0, batch)) is None  # count says 3, carries 1
    assert attr_of(ok(session, request(Opcode.GETATTR, memory, P.GETATTR_IN.pack()))).ino == memory
    assert session.handle(request(Opcode.FORGET, 4242, b"")) is None  # malformed: still silent


def test_interrupt_takes_no_reply_and_the_session_goes_on(session):
    lookup_req = GVISOR_LOOKUP_CPU
    assert session.handle(request(Opcode.INTERRUPT, 0, P.INTERRUPT_IN.pack(unique=P.IN_HEADER.unpack(
        lookup_req).unique))) is None
    assert session.handle(request(Opcode.INTERRUPT, 0, P.INTERRUPT_IN.pack(unique=10**12))) is None
    head, _ = entry(ok(session, lookup_req))
    assert head.nodeid > ROOT_INODE


def test_malformed_requests_never_raise(session):
    assert session.handle(b"") is None
    assert session.handle(b"\x01" * 20) is None  # shorter than a header: nobody to answer
    hdr = request(Opcode.LOOKUP, ROOT_INODE, name("memory"))
    assert err(session, hdr[:-3]) == "EIO"  # header length disagrees with the buffer
    assert err(session, request(Opcode.LOOKUP, ROOT_INODE, b"memory")) == "EINVAL"  # no NUL
    assert err(session, request(Opcode.LOOKUP, ROOT_INODE, b"\0")) == "EINVAL"  # empty name
    assert err(session, request(Opcode.READ, ROOT_INODE, b"\0" * 12)) == "EINVAL"
    assert err(session, request(Opcode.WRITE, ROOT_INODE, P.WRITE_IN.pack(fh=1, size=100) + b"short")) == "EINVAL"
    assert err(session, request(Opcode.RENAME, ROOT_INODE, P.RENAME_IN.pack(newdir=1) + name("a"))) == "EINVAL"
    assert err(session, request(Opcode.READDIR, ROOT_INODE, P.READ_IN.pack(fh=999, size=4096))) == "EBADF"
    # and the session still serves
    assert lookup(session, ROOT_INODE, "memory")[0] > ROOT_INODE


def test_a_bug_in_the_operations_costs_one_request_not_the_mount(session):
    def broken(*a, **k):
        raise ValueError("bug")

    session.ops.getattr = broken
    assert err(session, request(Opcode.GETATTR, ROOT_INODE, P.GETATTR_IN.pack())) == "EIO"
    assert P.KSTATFS.unpack(ok(session, request(Opcode.STATFS))).namelen == 255


def test_destroy_ends_the_session(session):
    assert ok(session, request(Opcode.DESTROY, 0)) == b""
    assert session.destroyed


# -- the page cache mode (Linux) ----------------------------------------------------------------
@pytest.fixture
def cached() -> FuseSession:
    return initialized(LINUX_INIT, ["cpu,cpuacct", "devices"])


def notices(s: FuseSession) -> list[int]:
    """The inodes whose attributes the session told the kernel to forget."""
    out = []
    for notice in s.take_notices():
        head = P.OUT_HEADER.unpack(notice)
        assert head.unique == 0 and head.error == P.NOTIFY_INVAL_INODE and head.len == len(notice)
        inval = P.NOTIFY_INVAL_INODE_OUT.unpack(notice, P.OUT_HEADER.size)
        assert inval.off == -1  # attributes only: never waits for a page lock
        out.append(inval.ino)
    return out


def test_page_cache_mode_opens_nothing_and_reads_by_inode(cached):
    cpu, _ = lookup(cached, ROOT_INODE, "cpu,cpuacct")
    head, a = entry(ok(cached, request(Opcode.LOOKUP, cpu, name("cpu.shares"))))
    assert head.attr_valid > 0 and a.size == 5  # kept until the kernel is told otherwise
    live, _ = entry(ok(cached, request(Opcode.LOOKUP, cpu, name("cpuacct.usage"))))
    assert live.attr_valid == 0  # statistics: every read asks
    # OPEN once with ENOSYS: the kernel opens every file itself from then on
    assert err(cached, request(Opcode.OPEN, head.nodeid, P.OPEN_IN.pack(flags=os.O_RDONLY))) == "ENOSYS"
    assert read(cached, head.nodeid, 0, 0, 4096) == b"1024\n"
    assert read(cached, head.nodeid, 0, 2, 4096) == b"24\n"
    assert err(cached, request(Opcode.FLUSH, head.nodeid, P.FLUSH_IN.pack())) == "ENOSYS"


def test_page_cache_mode_writes_by_inode_and_invalidates_before_the_reply(cached):
    dev, _ = lookup(cached, ROOT_INODE, "devices")
    p, _ = entry(ok(cached, request(Opcode.MKDIR, dev, P.MKDIR_IN.pack(mode=0o755) + name("p"))))
    deny, _ = lookup(cached, p.nodeid, "devices.deny")
    allow, _ = lookup(cached, p.nodeid, "devices.allow")
    ok(cached, write(deny, 0, b"a"))
    ok(cached, write(allow, 0, b"c 1:3 r"))
    c, _ = entry(ok(cached, request(Opcode.MKDIR, p.nodeid, P.MKDIR_IN.pack(mode=0o755) + name("c"))))
    c_list, a = lookup(cached, c.nodeid, "devices.list")
    assert a.size == len(b"c 1:3 r\n") and notices(cached) == []
    before = a.mtime * 10**9 + a.mtimensec
    # the writer's identity comes from the header; the child's list follows
    reply = cached.handle(write(deny, 0, b"c 1:3 r", pid=4242))
    assert P.OUT_HEADER.unpack(reply).error == 0
    assert notices(cached) == [c_list]  # to be written before that reply
    after = attr_of(ok(cached, request(Opcode.GETATTR, c_list, P.GETATTR_IN.pack())))
    assert after.size == 0 and after.mtime * 10**9 + after.mtimensec != before
    assert read(cached, c_list, 0, 0, 4096) == b""
    # the written file's next reply has a new mtime, even for the same content
    a1 = attr_of(ok(cached, request(Opcode.GETATTR, deny, P.GETATTR_IN.pack())))
    ok(cached, write(deny, 0, b"c 1:3 r"))
    a2 = attr_of(ok(cached, request(Opcode.GETATTR, deny, P.GETATTR_IN.pack())))
    assert (a2.mtime, a2.mtimensec) != (a1.mtime, a1.mtimensec)


def test_page_cache_mode_lists_directories_without_rendering_files(cached, monkeypatch):
    cpu, _ = lookup(cached, ROOT_INODE, "cpu,cpuacct")
    monkeypatch.setattr(ControlNode, "snapshot", lambda *a: pytest.fail("a file was rendered"))
    fh = P.OPEN_OUT.unpack(ok(cached, request(Opcode.OPENDIR, cpu, P.OPEN_IN.pack()))).fh
    entries = dirents(ok(cached, request(Opcode.READDIR, cpu, P.READ_IN.pack(fh=fh, size=65536))))
    types = {n: t for n, _, _, t in entries}
    assert types["cpu.shares"] == stat.S_IFREG >> 12 and "cgroup.procs" in types


def test_a_restarted_server_refuses_the_dead_servers_handles_or_reads_by_inode():
    # After a crash (supervisor.py) the new server continues the connection
    # at a new generation: a handle the dead server gave out is EBADF, never
    # another file's. Without OPEN (Linux) there are no handles to lose.
    def restarted(flags: int) -> FuseSession:
        model = CgroupModel(HostFacts(), StaticProcessTable(), ["cpu,cpuacct"])
        s = FuseSession(FsOps(CgroupFsRoot(model)), log=lambda msg: None)
        s.adopt(31, flags, generation=2)
        return s

    s = restarted(P.FUSE_MAX_PAGES)  # as gVisor negotiated it
    cpu, _ = lookup(s, ROOT_INODE, "cpu,cpuacct")
    shares, _ = lookup(s, cpu, "cpu.shares")
    assert err(s, request(Opcode.READ, shares, P.READ_IN.pack(fh=1, size=10))) == "EBADF"
    assert read(s, shares, open_(s, shares), 0, 10) == b"1024\n"
    s = restarted(P.FUSE_BIG_WRITES | P.FUSE_MAX_PAGES | P.FUSE_AUTO_INVAL_DATA)  # as Linux did
    assert s.page_cache
    cpu, _ = lookup(s, ROOT_INODE, "cpu,cpuacct")
    shares, _ = lookup(s, cpu, "cpu.shares")
    assert read(s, shares, 0, 0, 10) == b"1024\n"


def test_page_cache_mode_shows_unreadable_files_with_a_size_that_makes_the_kernel_ask(cached):
    # a file without a read handler (EINVAL, as on cgroupfs)
    dev, _ = lookup(cached, ROOT_INODE, "devices")
    allow, a = lookup(cached, dev, "devices.allow")
    assert a.size == 4096  # a page: size 0 would read as an empty file
    assert err(cached, request(Opcode.READ, allow, P.READ_IN.pack(fh=0, size=4096))) == "EINVAL"


def test_abi_sizes_match_the_kernel_header():
    assert P.IN_HEADER.size == 40 and P.OUT_HEADER.size == 16
    assert P.ENTRY_OUT_SIZE == 128 and P.ATTR_OUT_SIZE == 104
    assert P.dirent_size(1) == 32 and P.dirent_size(8) == 32 and P.dirent_size(9) == 40
    assert len(P.pack_dirent(5, 2, 4, b"abc")) == 32
    with pytest.raises(TypeError):
        P.INIT_OUT.pack(nonsense=1)
