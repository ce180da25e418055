"""The /proc/sys model: a table of sysctl entries and their proc handlers.

Pure: host values (cap_last_cap, osrelease, nf_conntrack_max, ...) are passed
in as the text someone else read from the real files; nothing here touches
the filesystem.

The handlers mirror kernel/sysctl.c of Linux 6.18 (proc_dointvec family,
proc_douintvec_minmax / proc_dou8vec_minmax, proc_doulongvec_minmax,
proc_dointvec_jiffies, proc_dostring) and were checked byte for byte against
this VM's kernel by writing inside throwaway network / user / UTS namespaces
(route_localnet, ip_local_port_range, tcp_rmem, nf_conntrack_* timeouts,
nf_conntrack_tcp_be_liberal, user/max_inotify_watches, kernel/hostname).

Rules common to every numeric handler (sysctl_writes_strict = 1, the
default, kernel/sysctl.c):

* a write at a non-zero file position is ignored and reported as fully
  written (proc_first_pos_non_zero_ignore());
* a read at a non-zero position returns nothing (``*ppos && !write``);
* only the first PAGE_SIZE - 1 bytes of a write are looked at;
* a write returns the bytes it consumed: trailing text after the last value
  the entry holds is left over, so the caller sees a short write
  (``*lenp -= left``), except for proc_douintvec (single value) which always
  reports the whole buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from fakefs.model.errors import KernelError, einval
from fakefs.model.kparse import INT_MAX, KSPACE, PAGE_SIZE, U32_MAX, fixup_radix, parse_integer

# CONFIG_HZ of the measured kernel (/boot/config: CONFIG_HZ=250). It only
# shows in proc_dointvec_jiffies' overflow bound INT_MAX / HZ = 8589934.
DEFAULT_HZ = 250

# proc_wspace_sep[]: the only characters allowed right after a number.
_PROC_WSPACE_SEP = frozenset(" \t\n")
_TMPBUFLEN = 22  # kernel/sysctl.c TMPBUFLEN


# --------------------------------------------------------------------------
# The number reader shared by every numeric handler
# --------------------------------------------------------------------------


class _Cursor:
    """A write buffer as the proc handlers walk it: ``buf`` is the window
    (the first PAGE_SIZE - 1 bytes), ``pos`` how far they got."""

    def __init__(self, text: str, page_size: int):
        self.buf = text[: page_size - 1]
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.buf) - self.pos

    def skip_spaces(self) -> None:
        # proc_skip_spaces(): bounded by the window since 6.1.
        while self.pos < len(self.buf) and self.buf[self.pos] in KSPACE:
            self.pos += 1

    def get_long(self) -> tuple[int, bool]:
        """proc_get_long() with proc_wspace_sep as the allowed trailers."""
        size = self.left
        if size == 0:
            raise einval("no data")
        tmp = self.buf[self.pos : self.pos + min(size, _TMPBUFLEN - 1)]
        j = 0
        neg = False
        if tmp[0] == "-" and size > 1:
            neg, j = True, 1
        if j >= len(tmp) or not "0" <= tmp[j] <= "9":
            raise einval("not a number")
        # strtoul_lenient(): base 0 on the scratch copy, digits up to the
        # first that is not one.
        base, start = fixup_radix(tmp, j, 0)
        value, length, overflow = parse_integer(tmp, start, base)
        if overflow:
            raise einval("overflow")  # strtoul_lenient() -ERANGE -> -EINVAL
        # A number filling the whole 21-byte scratch buffer may continue
        # beyond it: refused outright.
        if length == _TMPBUFLEN - 1:
            raise einval("number too long")
        if length < size and self.buf[self.pos + length] not in _PROC_WSPACE_SEP:
            raise einval("bad trailer")
        self.pos += length
        return value, neg


# --------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------


class Handler:
    """A proc handler. ``data`` is the kernel-side value list (e.g. jiffies
    for proc_dointvec_jiffies); ``write`` mutates a copy of it in place and
    may raise after a partial update, exactly as the kernel stores vector
    elements one by one."""

    name = "?"
    numeric = True

    def format(self, data: list) -> str:
        raise NotImplementedError

    def read(self, data: list, offset: int = 0, size: int | None = None) -> str:
        text = self.format(data)
        if size is None:
            size = len(text)
        if size == 0 or offset != 0:
            return ""  # __do_proc_dointvec(): (*ppos && !write) -> 0 bytes
        # Values are put with proc_put_long(), which truncates; the
        # newline only goes in if room is left.
        return text[:size]

    def write(self, data: list, text: str, pos: int = 0, page_size: int = PAGE_SIZE) -> int:
        raise NotImplementedError

    @staticmethod
    def _write_vector(data: list, text: str, pos: int, page_size: int, count: int,
                      convert: Callable[[int, bool], int]) -> int:
        """The element loop __do_proc_dointvec() and
        __do_proc_doulongvec_minmax() share: up to ``count`` values separated
        by blanks, each stored as soon as ``convert(magnitude, negative)``
        accepts it (a later failure keeps the earlier ones); the count of
        bytes consumed is returned. Strict mode: a write at a non-zero
        position is ignored but reported as written."""
        if not text:
            return 0
        if pos:
            return len(text)
        cur = _Cursor(text, page_size)
        first = True
        err: KernelError | None = None
        for index in range(count):
            cur.skip_spaces()
            if not cur.left:
                break
            try:
                data[index] = convert(*cur.get_long())
            except KernelError as e:
                err = e
                break
            first = False
        if err is None:
            cur.skip_spaces()
        if first:
            raise err or einval("nothing written")
        if err is not None:
            raise err  # earlier elements stay stored, as in the kernel
        return len(text) - cur.left

    def parse_initial(self, text: str) -> list:
        """Seed from a host file's text (trusted; no validation)."""
        return [int(tok) for tok in text.split()]


@dataclass
class IntVec(Handler):
    """proc_dointvec / proc_dointvec_minmax / proc_dointvec_jiffies over
    ``count`` ints (table->maxlen / sizeof(int))."""

    count: int = 1
    minimum: int | None = None  # extra1
    maximum: int | None = None  # extra2
    jiffies_hz: int | None = None  # proc_dointvec_jiffies when set
    post: Callable[[int], int] | None = None  # a wrapper handler's fix-up
    name: str = "proc_dointvec"

    def _to_user(self, v: int) -> int:
        if self.jiffies_hz:
            # do_proc_dointvec_jiffies_conv(): lval / HZ on the magnitude.
            mag = abs(v) // self.jiffies_hz
            return -mag if v < 0 else mag
        return v

    def format(self, data: list) -> str:
        return "\t".join(str(self._to_user(v)) for v in data[: self.count]) + "\n"

    def parse_initial(self, text: str) -> list:
        vals = [int(tok) for tok in text.split()]
        if self.jiffies_hz:
            vals = [v * self.jiffies_hz for v in vals]
        return vals

    def _conv(self, lval: int, neg: bool) -> int:
        if self.jiffies_hz:
            # do_proc_dointvec_jiffies_conv(): lval > INT_MAX / HZ fails.
            if lval > INT_MAX // self.jiffies_hz:
                raise einval("jiffies overflow")
            return -(lval * self.jiffies_hz) if neg else lval * self.jiffies_hz
        # do_proc_dointvec_conv()
        if neg:
            if lval > INT_MAX + 1:
                raise einval("int overflow")
            val = -lval
        else:
            if lval > INT_MAX:
                raise einval("int overflow")
            val = lval
        # do_proc_dointvec_minmax_conv(): -EINVAL outside [extra1, extra2].
        if self.minimum is not None and val < self.minimum:
            raise einval("below minimum")
        if self.maximum is not None and val > self.maximum:
            raise einval("above maximum")
        return val

    def write(self, data: list, text: str, pos: int = 0, page_size: int = PAGE_SIZE) -> int:
        def convert(lval: int, neg: bool) -> int:
            val = self._conv(lval, neg)
            return self.post(val) if self.post else val

        return self._write_vector(data, text, pos, page_size, self.count, convert)


@dataclass
class UIntMinMax(Handler):
    """proc_douintvec_minmax (and proc_dou8vec_minmax, which wraps it with
    a 0..255 default range): one unsigned value only."""

    minimum: int | None = None
    maximum: int | None = None
    name: str = "proc_douintvec_minmax"

    def format(self, data: list) -> str:
        return f"{data[0]}\n"

    def write(self, data: list, text: str, pos: int = 0, page_size: int = PAGE_SIZE) -> int:
        count = len(text)
        if count == 0:
            return 0
        if pos:
            return count
        cur = _Cursor(text, page_size)
        # do_proc_douintvec_w(): every failure, the range check's -ERANGE
        # included, is returned as -EINVAL.
        cur.skip_spaces()
        if not cur.left:
            raise einval("nothing written")
        lval, neg = cur.get_long()
        if neg or lval > U32_MAX:
            raise einval("negative or too large")
        if (self.minimum is not None and lval < self.minimum) or (
            self.maximum is not None and lval > self.maximum
        ):
            raise einval("out of range")
        data[0] = lval
        # Nothing after the value is looked at, and *lenp is left alone:
        # "1 garbage" is accepted as a full write (measured).
        return count


@dataclass
class ULongVec(Handler):
    """proc_doulongvec_minmax over ``count`` unsigned longs."""

    count: int = 1
    minimum: int | None = None
    maximum: int | None = None
    name: str = "proc_doulongvec_minmax"

    def format(self, data: list) -> str:
        return "\t".join(str(v) for v in data[: self.count]) + "\n"

    def _conv(self, val: int, neg: bool) -> int:
        # 6.18 refuses a sign (older kernels skipped the value):
        # measured "-1" and "-0" -> EINVAL.
        if neg:
            raise einval("negative")
        if (self.minimum is not None and val < self.minimum) or (
            self.maximum is not None and val > self.maximum
        ):
            raise einval("out of range")
        return val

    def write(self, data: list, text: str, pos: int = 0, page_size: int = PAGE_SIZE) -> int:
        return self._write_vector(data, text, pos, page_size, self.count, self._conv)


@dataclass
class String(Handler):
    """proc_dostring / proc_do_uts_string with table->maxlen ``maxlen``."""

    maxlen: int = 65
    name: str = "proc_dostring"
    numeric: bool = False

    def format(self, data: list) -> str:
        return data[0][: self.maxlen] + "\n"

    def parse_initial(self, text: str) -> list:
        return [text[:-1] if text.endswith("\n") else text]

    def read(self, data: list, offset: int = 0, size: int | None = None) -> str:
        # _proc_do_string() read: honours the position; the newline is
        # added only if the caller's buffer has room after the data.
        s = data[0][: self.maxlen]
        if size is None:
            size = len(s) + 1
        if size == 0 or offset > len(s):
            return ""
        chunk = s[offset : offset + size]
        if len(chunk) < size:
            chunk += "\n"
        return chunk

    def write(self, data: list, text: str, pos: int = 0, page_size: int = PAGE_SIZE) -> int:
        count = len(text)
        if count == 0:
            return 0
        cur = data[0]
        # Strict mode: continue at the position, never past the string.
        length = min(len(cur), self.maxlen - 1)
        if pos > length:
            return count
        out = cur[:pos]
        for ch in text:
            if len(out) >= self.maxlen - 1 or ch in "\0\n":
                break
            out += ch
        data[0] = out
        return count


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SysctlEntry:
    path: str  # relative to /proc/sys
    mode: int
    handler: Handler
    default: tuple  # kernel-side data (jiffies for jiffies entries)
    source: str  # where the kernel defines it

    @property
    def root_may_write(self) -> bool:
        # proc_sys_permission() -> sysctl_perm() -> test_perm(): root gets
        # the owner bits and nothing more; no capability overrides them
        # ("sysctl entries that are not writeable, are _NOT_ writeable").
        return bool(self.mode & 0o200)


def _bridge_nf_post(val: int) -> int:
    # brnf_sysctl_call_tables(): any non-zero value is stored as 1.
    return 1 if val else 0


def build_entries(
    host: Mapping[str, str] | None = None,
    hz: int = DEFAULT_HZ,
    pid_max_limit: int = 4194304,
) -> dict[str, SysctlEntry]:
    """The synthetic table. ``host`` maps paths to the real files' text on
    the host; entries found there take the host's value as their default.
    Defaults given here are the kernel's compiled ones (or this VM's value
    where the kernel computes it at boot), used when the host has none.
    """
    host = host or {}
    jiffies = IntVec(jiffies_hz=hz, name="proc_dointvec_jiffies")

    def e(path, mode, handler, default, source):
        if path in host:
            default = tuple(handler.parse_initial(host[path]))
        elif isinstance(handler, IntVec) and handler.jiffies_hz:
            default = tuple(v * hz for v in default)
        return path, SysctlEntry(path, mode, handler, tuple(default), source)

    minmax = lambda lo, hi: IntVec(minimum=lo, maximum=hi, name="proc_dointvec_minmax")  # noqa: E731
    table = [
        # CAP_LAST_CAP (include/uapi/linux/capability.h: CAP_CHECKPOINT_RESTORE
        # = 40 in 6.18); const int, 0444.
        e("kernel/cap_last_cap", 0o444, IntVec(), (40,), "kernel/capability.c cap_last_cap, proc_dointvec"),
        e("kernel/osrelease", 0o444, String(maxlen=65), ("6.18.44-fc-v657",), "kernel/utsname_sysctl.c, proc_do_uts_string"),
        # mm/util.c overcommit_policy_handler(): proc_dointvec_minmax 0..2.
        e("vm/overcommit_memory", 0o644, minmax(0, 2), (0,), "mm/util.c, SYSCTL_ZERO..SYSCTL_TWO"),
        e("vm/panic_on_oom", 0o644, minmax(0, 2), (0,), "mm/oom_kill.c, SYSCTL_ZERO..SYSCTL_TWO"),
        # CONFIG_PANIC_TIMEOUT defaults to 0 (this VM boots with panic=1).
        e("kernel/panic", 0o644, IntVec(), (0,), "kernel/panic.c panic_timeout, proc_dointvec"),
        # proc_dointvec: no range (kubelet's 0..1 is a convention only).
        e("kernel/panic_on_oops", 0o644, IntVec(), (0,), "kernel/panic.c panic_on_oops, proc_dointvec"),
        e("kernel/keys/root_maxkeys", 0o644, minmax(1, INT_MAX), (1000000,),
          "security/keys/sysctl.c SYSCTL_ONE..SYSCTL_INT_MAX; key.c default"),
        e("kernel/keys/root_maxbytes", 0o644, minmax(1, INT_MAX), (25000000,),
          "security/keys/sysctl.c SYSCTL_ONE..SYSCTL_INT_MAX; key.c default"),
        # pid_max_min = RESERVED_PIDS + 1, pid_max_max = PID_MAX_LIMIT.
        e("kernel/pid_max", 0o644, minmax(301, pid_max_limit), (32768,), "kernel/pid.c pid_table"),
        # init_net view (in other netns the kernel makes it 0444).
        e("net/netfilter/nf_conntrack_max", 0o644, minmax(0, INT_MAX), (262144,),
          "net/netfilter/nf_conntrack_standalone.c NF_SYSCTL_CT_MAX"),
        e("net/netfilter/nf_conntrack_tcp_timeout_established", 0o644, jiffies, (432000,),
          "nf_conntrack_proto_tcp.c 5 DAYS, proc_dointvec_jiffies"),
        e("net/netfilter/nf_conntrack_tcp_timeout_close_wait", 0o644, jiffies, (60,),
          "nf_conntrack_proto_tcp.c 60 SECS, proc_dointvec_jiffies"),
        e("net/netfilter/nf_conntrack_tcp_be_liberal", 0o644, UIntMinMax(0, 1, name="proc_dou8vec_minmax"), (0,),
          "nf_conntrack_standalone.c, proc_dou8vec_minmax SYSCTL_ZERO..SYSCTL_ONE"),
        e("net/netfilter/nf_conntrack_udp_timeout", 0o644, jiffies, (30,),
          "nf_conntrack_proto_udp.c 30*HZ, proc_dointvec_jiffies"),
        e("net/netfilter/nf_conntrack_udp_timeout_stream", 0o644, jiffies, (120,),
          "nf_conntrack_proto_udp.c 120*HZ, proc_dointvec_jiffies"),
        e("net/ipv4/conf/all/route_localnet", 0o644, IntVec(), (0,), "net/ipv4/devinet.c devinet_conf_proc"),
        e("net/ipv4/ip_forward", 0o644, IntVec(), (0,), "net/ipv4/devinet.c devinet_sysctl_forward"),
        e("net/bridge/bridge-nf-call-iptables", 0o644, IntVec(post=_bridge_nf_post, name="brnf_sysctl_call_tables"),
          (1,), "net/bridge/br_netfilter_hooks.c"),
        e("net/bridge/bridge-nf-call-ip6tables", 0o644, IntVec(post=_bridge_nf_post, name="brnf_sysctl_call_tables"),
          (1,), "net/bridge/br_netfilter_hooks.c"),
        # Boot-time default scales with RAM (inotify_user_setup()); this VM: 192536.
        e("fs/inotify/max_user_watches", 0o644, ULongVec(minimum=0, maximum=INT_MAX), (192536,),
          "fs/notify/inotify/inotify_user.c it_zero..it_int_max"),
        e("fs/inotify/max_user_instances", 0o644, ULongVec(minimum=0, maximum=INT_MAX), (128,),
          "fs/notify/inotify/inotify_user.c it_zero..it_int_max"),
    ]
    return dict(table)


# --------------------------------------------------------------------------
# Permissions
# --------------------------------------------------------------------------


def perm_allows(mode: int, write: bool, euid: int = 0, in_root_group: bool = False) -> bool:
    """fs/proc/proc_sysctl.c test_perm(): owner bits for uid 0, group bits
    for members of gid 0, other bits otherwise; no capability override."""
    if euid == 0:
        mode >>= 6
    elif in_root_group:
        mode >>= 3
    need = 0o2 if write else 0o4
    return bool(mode & need)


__all__ = [
    "Handler", "IntVec", "UIntMinMax", "ULongVec", "String", "SysctlEntry", "build_entries", "perm_allows",
]
