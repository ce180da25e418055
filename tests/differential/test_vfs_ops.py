"""What the VFS asks of a filesystem beyond cgroup rules, compared with the
real cgroupfs on both FUSE backends: extended attributes (kernfs keeps
trusted., security. and user. ones per node, with limits on user.), times
set by utime, "." and ".." in a directory listing, and names that are not
UTF-8. Each test plays the same script in a fresh child of the real
hierarchy and of the mount's, and every step must answer the same.

The mounts live in a world-searchable scratch directory so that steps can
also run as uid 65534 (what the VFS decides from the mode bits and
capabilities must come out the same through FUSE).
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import time

import pytest

from tests.support import FUSE_BACKENDS

from .surfaces import KernelSurface, PathSurface, errname, kernel_cgroup_v1_available, machine_layout_mount, require

pytestmark = pytest.mark.kernel

CONTROLLER = "cpu"
NOBODY = 65534
_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(scope="module", params=FUSE_BACKENDS)
def fuse_mount(request):
    with machine_layout_mount(request.param) as path:
        yield path


@pytest.fixture
def bases(fuse_mount):
    """(kernel base, mount base): fresh children of the cpu hierarchy."""
    ok, why = kernel_cgroup_v1_available(CONTROLLER)
    require(ok, why)
    kernel = KernelSurface(CONTROLLER)
    try:
        cand = PathSurface(fuse_mount, CONTROLLER, label="mount")
    except BaseException:
        kernel.close()
        raise
    try:
        yield kernel.base, cand.base
    finally:
        try:
            cand.close()
        finally:
            kernel.close()


def outcome(fn, *args):
    try:
        value = fn(*args)
    except OSError as exc:
        return ["err", errname(exc.errno)]
    return ["ok", value.decode("latin-1") if isinstance(value, bytes) else value]


def play(bases, script, as_nobody: bool = False) -> None:
    """``script(base)`` -> list of (step, outcome); the same on both."""
    kernel_base, mount_base = bases
    run = _as_nobody if as_nobody else (lambda fn, base: fn(base))
    kernel, mount = run(script, kernel_base), run(script, mount_base)
    diff = [f"{step}: kernel {k} | mount {m}" for (step, k), (_, m) in zip(kernel, mount) if k != m]
    assert len(kernel) == len(mount) and not diff, "\n".join(diff)


def _as_nobody(script, base):
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(wfd, json.dumps(script(base)).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return [tuple(step) for step in json.loads(data)]


def _getxattr_sized(path: str, name: str, size: int):
    """getxattr(2) with a buffer of ``size`` (0: the size query)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    n = _libc.getxattr(path.encode(), name.encode(), buf if size else None, size)
    if n < 0:
        raise OSError(ctypes.get_errno(), name)
    return n if size == 0 else buf.raw[:n]


def _listxattr_sized(path: str, size: int):
    buf = ctypes.create_string_buffer(max(size, 1))
    n = _libc.listxattr(path.encode(), buf if size else None, size)
    if n < 0:
        raise OSError(ctypes.get_errno(), path)
    return n if size == 0 else sorted(buf.raw[:n].split(b"\0")[:-1])


def _listed(path: str) -> list[str]:
    return sorted(os.listxattr(path))


# -- extended attributes ------------------------------------------------------------------

def _xattr_script(base: str) -> list:
    steps = []
    file = os.path.join(base, "cpu.shares")

    def step(label, fn, *args):
        steps.append((label, outcome(fn, *args)))

    for where, path in (("dir", base), ("file", file)):
        step(f"{where} list empty", _listed, path)
        step(f"{where} get missing", os.getxattr, path, "user.missing")
        step(f"{where} remove missing", os.removexattr, path, "user.missing")
        for name in ("user.a", "trusted.b", "security.c"):
            step(f"{where} set {name}", os.setxattr, path, name, b"v-" + name.encode())
            step(f"{where} get {name}", os.getxattr, path, name)
        step(f"{where} set empty", os.setxattr, path, "user.empty", b"")
        step(f"{where} get empty", os.getxattr, path, "user.empty")
        step(f"{where} set binary", os.setxattr, path, "user.bin", bytes(range(256)))
        step(f"{where} get binary", os.getxattr, path, "user.bin")
        step(f"{where} set odd name", os.setxattr, path, os.fsdecode(b"user.\xff\x01"), b"1")
        step(f"{where} get odd name", os.getxattr, path, os.fsdecode(b"user.\xff\x01"))
        step(f"{where} list", _listed, path)
        step(f"{where} create existing", os.setxattr, path, "user.a", b"x", os.XATTR_CREATE)
        step(f"{where} create new", os.setxattr, path, "user.new", b"x", os.XATTR_CREATE)
        step(f"{where} replace missing", os.setxattr, path, "user.nothere", b"x", os.XATTR_REPLACE)
        step(f"{where} replace existing", os.setxattr, path, "user.a", b"replaced", os.XATTR_REPLACE)
        step(f"{where} get replaced", os.getxattr, path, "user.a")
        step(f"{where} size query", _getxattr_sized, path, "user.a", 0)
        step(f"{where} small buffer", _getxattr_sized, path, "user.a", 3)
        step(f"{where} exact buffer", _getxattr_sized, path, "user.a", 8)
        step(f"{where} list size query", _listxattr_sized, path, 0)
        step(f"{where} list small buffer", _listxattr_sized, path, 4)
        step(f"{where} list big buffer", _listxattr_sized, path, 4096)
        for name in ("foo.bar", "system.foo", "user.", "trusted.", "security.", "userx"):
            step(f"{where} set {name!r}", os.setxattr, path, name, b"x")
            step(f"{where} get {name!r}", os.getxattr, path, name)
            step(f"{where} remove {name!r}", os.removexattr, path, name)
        step(f"{where} set posix acl", os.setxattr, path, "system.posix_acl_access", b"x")
        step(f"{where} get posix acl", os.getxattr, path, "system.posix_acl_access")
        step(f"{where} name too long", os.setxattr, path, "user." + "n" * 251, b"x")
        step(f"{where} value too big", os.setxattr, path, "trusted.big", b"x" * 65537)
        step(f"{where} remove user.a", os.removexattr, path, "user.a")
        step(f"{where} remove again", os.removexattr, path, "user.a")
        step(f"{where} list after", _listed, path)
    return steps


def test_xattrs(bases):
    play(bases, _xattr_script)


def _xattr_limit_script(base: str) -> list:
    """kernfs' limits on user.* (count, then the sum of the values)."""
    steps = []
    for i in range(129):
        steps.append((f"set user.n{i}", outcome(os.setxattr, base, f"user.n{i}", b"v")))
    steps.append(("trusted past the count", outcome(os.setxattr, base, "trusted.t", b"v")))
    steps.append(("replace at the count", outcome(os.setxattr, base, "user.n0", b"w")))
    steps.append(("remove one", outcome(os.removexattr, base, "user.n127")))
    steps.append(("set one again", outcome(os.setxattr, base, "user.again", b"v")))
    file = os.path.join(base, "cpu.shares")
    for i in range(3):
        steps.append((f"set 64 KiB #{i}", outcome(os.setxattr, file, f"user.big{i}", b"x" * 65536)))
    steps.append(("small past the size", outcome(os.setxattr, file, "user.small", b"x" * 100)))
    steps.append(("trusted past the size", outcome(os.setxattr, file, "trusted.big", b"x" * 65536)))
    steps.append(("list", outcome(_listed, file)))
    return steps


def test_xattr_limits(bases):
    play(bases, _xattr_limit_script)


def test_xattrs_of_a_removed_cgroup_are_gone(bases):
    def script(base):
        child = os.path.join(base, "c")
        os.mkdir(child)
        out = [("set", outcome(os.setxattr, child, "user.k", b"1"))]
        os.rmdir(child)
        os.mkdir(child)
        out.append(("list after re-creating", outcome(_listed, child)))
        os.rmdir(child)
        return out

    play(bases, script)


def test_xattrs_as_an_unprivileged_user(bases):
    for base in bases:
        os.setxattr(base, "user.seen", b"1")
        os.setxattr(base, "trusted.hidden", b"1")

    def script(base):
        return [
            ("get user", outcome(os.getxattr, base, "user.seen")),
            ("get trusted", outcome(os.getxattr, base, "trusted.hidden")),
            ("list", outcome(_listed, base)),
            ("set user on a root dir", outcome(os.setxattr, base, "user.mine", b"1")),
            ("set trusted", outcome(os.setxattr, base, "trusted.mine", b"1")),
            ("set security", outcome(os.setxattr, base, "security.mine", b"1")),
            ("remove user", outcome(os.removexattr, base, "user.seen")),
        ]

    play(bases, script, as_nobody=True)


# -- times ---------------------------------------------------------------------------------

# Coarse clocks: a kernel timestamp may lag time.time_ns() by a tick.
SLACK_NS = 50_000_000


def _times_script(base: str) -> list:
    steps = []
    for where, path in (("dir", base), ("file", os.path.join(base, "notify_on_release"))):
        before = time.time_ns() - SLACK_NS
        os.utime(path, ns=(1_000_000_000, 2_000_000_000))
        st = os.stat(path)
        steps.append((f"{where} utime explicit", [st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns >= before]))
        os.utime(path, ns=(3_000_000_123, 4_000_000_456))
        st = os.stat(path)
        steps.append((f"{where} utime nanoseconds", [st.st_atime_ns, st.st_mtime_ns]))
        before = time.time_ns() - SLACK_NS
        os.utime(path)  # now
        after = time.time_ns() + SLACK_NS
        st = os.stat(path)
        steps.append((f"{where} utime now", [before <= t <= after for t in (st.st_atime_ns, st.st_mtime_ns,
                                                                            st.st_ctime_ns)]))
        before = time.time_ns() - SLACK_NS
        os.utime(path, ns=(5_000_000_000, 6_000_000_000))
        os.chmod(path, stat.S_IMODE(os.stat(path).st_mode))
        st = os.stat(path)
        steps.append((f"{where} chmod changes ctime only", [st.st_atime_ns, st.st_mtime_ns,
                                                            st.st_ctime_ns >= before]))
    return steps


def test_utime(bases):
    play(bases, _times_script)


# -- "." and ".." ---------------------------------------------------------------------------

class _Dirent(ctypes.Structure):
    # glibc's struct dirent on 64-bit Linux
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]


def raw_listing(path: str) -> dict[bytes, tuple[int, int]]:
    """name -> (d_ino, d_type) straight from readdir(3), dots included
    (os.listdir and os.scandir leave them out)."""
    _libc.opendir.restype = ctypes.c_void_p
    _libc.readdir.restype = ctypes.POINTER(_Dirent)
    _libc.readdir.argtypes = [ctypes.c_void_p]
    _libc.closedir.argtypes = [ctypes.c_void_p]
    d = _libc.opendir(os.fsencode(path))
    assert d, os.strerror(ctypes.get_errno())
    out = {}
    try:
        while True:
            ent = _libc.readdir(d)
            if not ent:
                return out
            out[ent.contents.d_name] = (ent.contents.d_ino, ent.contents.d_type)
    finally:
        _libc.closedir(d)


def test_readdir_lists_dot_and_dotdot(bases):
    def script(base):
        os.mkdir(os.path.join(base, "sub"))
        out = []
        for where, path in (("base", base), ("sub", os.path.join(base, "sub"))):
            listing = raw_listing(path)
            out.append((f"{where} dots", [n.decode() for n in sorted(listing) if n in (b".", b"..")]))
            out.append((f"{where} . is itself", listing[b"."][0] == os.stat(path).st_ino))
            out.append((f"{where} .. is the parent", listing[b".."][0] == os.stat(os.path.dirname(path)).st_ino))
            out.append((f"{where} dot types", [listing[b"."][1], listing[b".."][1]]))
            out.append((f"{where} names", sorted(n.decode() for n in listing if n not in (b".", b".."))))
        os.rmdir(os.path.join(base, "sub"))
        return out

    play(bases, script)


def test_readdir_of_a_hierarchy_root_and_the_mount_root(fuse_mount):
    """The real roots are not ours to write; their dots are compared."""
    for real, fake in (("/sys/fs/cgroup/cpu", os.path.join(fuse_mount, "cpu")), ("/sys/fs/cgroup", fuse_mount)):
        listing = raw_listing(fake)
        assert listing[b"."][0] == os.stat(fake).st_ino, fake
        assert listing[b".."][0] == os.stat(os.path.join(fake, "..")).st_ino or fake == fuse_mount
        assert {b".", b".."} <= set(raw_listing(real)), real
    # ".." of the mount root is the root itself, as on any filesystem root
    assert raw_listing(fuse_mount)[b".."][0] == os.stat(fuse_mount).st_ino


# -- names that are not UTF-8 --------------------------------------------------------------

def test_names_that_are_not_utf8(bases):
    def script(base):
        out = []
        raw = os.fsencode(base)
        for name in (b"\xff", b"a\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x01", b"x\n\xff"):
            path = raw + b"/" + name
            out.append((f"mkdir {name!r}", outcome(os.mkdir, path)))
            out.append((f"listed {name!r}", name in os.listdir(raw)))
            out.append((f"open {name!r}", outcome(lambda: os.close(os.open(path + b"/cgroup.procs", os.O_RDONLY)))))
            out.append((f"setxattr {name!r}", outcome(os.setxattr, path, b"user." + name, b"1")))
            out.append((f"listxattr {name!r}", outcome(lambda: sorted(os.listxattr(path)))))
            out.append((f"rename {name!r}", outcome(os.rename, path, path + b"2")))
            out.append((f"rmdir {name!r}", outcome(os.rmdir, path + b"2")))
        return out

    play(bases, script)
