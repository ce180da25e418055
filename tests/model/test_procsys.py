"""The /proc/sys model against Linux 6.18 as measured on the development VM.

Parser expectations come from writes made inside throwaway namespaces
(`unshare -n` on net/ipv4/conf/all/route_localnet, ip_local_port_range,
tcp_rmem and the nf_conntrack_* entries, `unshare -U -r` on
user/max_inotify_watches, `unshare -u` on kernel/hostname): each case lists
the bytes written, the write() result and the value read back.
"""

import errno

import pytest

from fakefs.model.errors import KernelError
from fakefs.model.kparse import INT_MAX
from fakefs.model.procsys import IntVec, String, UIntMinMax, ULongVec, build_entries, perm_allows


def _errno(fn, *args, **kw):
    with pytest.raises(KernelError) as exc:
        fn(*args, **kw)
    return exc.value.errno


class Sysctl:
    """The table's entries with values of their own, read and written through
    each entry's handler, as the served files (vfs/overlayfs.py) hold them."""

    def __init__(self, **build):
        self.entries = build_entries(**build)
        self.values = {p: list(e.default) for p, e in self.entries.items()}

    def text(self, path):
        return self.read(path)

    def read(self, path, offset=0, size=None):
        return self.entries[path].handler.read(self.values[path], offset, size)

    def write(self, path, text, offset=0):
        return self.entries[path].handler.write(self.values[path], text, offset)


def write_int(handler, text, start=0, pos=0):
    data = [start] * getattr(handler, "count", 1)
    n = handler.write(data, text, pos)
    return n, handler.format(data)


# --------------------------------------------------------------------------
# proc_dointvec (route_localnet, measured)
# --------------------------------------------------------------------------

DOINTVEC_OK = [
    ("1", 1, "1\n"),
    ("0\n", 2, "0\n"),
    (" 5", 2, "5\n"),
    ("  7\n\n", 5, "7\n"),
    ("\t3\t", 3, "3\n"),
    ("-1", 2, "-1\n"),
    ("0x10", 4, "16\n"),
    ("0X1f", 4, "31\n"),
    ("010", 3, "8\n"),
    ("5 6", 2, "5\n"),  # one int: the rest is left over (short write)
    ("5\n6\n", 2, "5\n"),
    ("2147483647", 10, "2147483647\n"),
    ("-2147483648", 11, "-2147483648\n"),
    ("017777777777", 12, "2147483647\n"),
    ("-0x10", 5, "-16\n"),
    ("-0", 2, "0\n"),
    ("00000000000000000005", 20, "5\n"),  # 20 chars: still fits
    (" -3 ", 4, "-3\n"),
    ("\v9", 2, "9\n"),
    ("\r8", 2, "8\n"),
    ("\x0c6", 2, "6\n"),
    ("\xa05", 2, "5\n"),  # the kernel's isspace() includes Latin-1 NBSP
    ("5 \xa0", 3, "5\n"),
    ("5\n\xa0\xa0", 4, "5\n"),
    ("5\n\x00", 2, "5\n"),  # NUL stops the trailing skip
]


@pytest.mark.parametrize("text,count,readback", DOINTVEC_OK)
def test_dointvec_accepts(text, count, readback):
    assert write_int(IntVec(), text) == (count, readback)


DOINTVEC_EINVAL = [
    "-", "+4", "08", "0x", "5x", " ", "\n", "2147483648", "-2147483649",
    "99999999999999999999999", "000000000000000000005", "1\x00", "1\x002",
    "--1", "- 1", "1.5", "1\r", "1\v", "0xFFFFFFFF", "020000000000",
]


@pytest.mark.parametrize("text", DOINTVEC_EINVAL)
def test_dointvec_refuses(text):
    data = [0]
    assert _errno(IntVec().write, data, text) == errno.EINVAL
    assert data == [0]


def test_dointvec_empty_write_is_zero_bytes_and_no_change():
    assert write_int(IntVec(), "", start=4) == (0, "4\n")


def test_dointvec_write_at_nonzero_position_is_ignored_but_reported_written():
    assert write_int(IntVec(), "9", start=0, pos=3) == (1, "0\n")


def test_dointvec_only_first_page_minus_one_bytes_are_parsed():
    # Measured: "5"+5000 spaces -> 5001; 5000 spaces+"5" -> EINVAL.
    assert write_int(IntVec(), "5" + " " * 5000) == (5001, "5\n")
    assert _errno(IntVec().write, [0], " " * 5000 + "5") == errno.EINVAL


def test_dointvec_window_edge_is_4095_bytes():
    assert write_int(IntVec(), " " * 4094 + "5") == (4095, "5\n")
    assert _errno(IntVec().write, [0], " " * 4095 + "5") == errno.EINVAL


def test_dointvec_leftover_inside_window_shortens_the_write():
    assert write_int(IntVec(), "5" + " " * 4094 + "x") == (4096, "5\n")
    assert write_int(IntVec(), "5" + " " * 4093 + "x") == (4094, "5\n")


def test_dointvec_read_at_nonzero_offset_is_empty():
    h = IntVec()
    assert h.read([12345], 0, 2) == "12"
    assert h.read([12345], 2, 10) == ""
    assert h.read([12345], 0, 1) == "1"


def test_dointvec_read_newline_only_when_room():
    h = IntVec()
    assert h.read([12345], 0, 5) == "12345"
    assert h.read([12345], 0, 6) == "12345\n"


# --------------------------------------------------------------------------
# Vectors (ip_local_port_range / tcp_rmem, measured)
# --------------------------------------------------------------------------

VEC_OK = [
    ("2000 3000", 9, "2000\t3000\n"),
    ("2001\t3001\n", 10, "2001\t3001\n"),
    ("2500", 4, "2500\t60999\n"),  # only the first element changes
    ("2000 3000 4000", 10, "2000\t3000\n"),  # extra value left over
    ("2000 3000 x", 10, "2000\t3000\n"),
    ("2000  \t 3002  \n\n", 16, "2000\t3002\n"),
    ("2000\n3003", 9, "2000\t3003\n"),
    ("2000 ", 5, "2000\t60999\n"),
    (" 2004 3004", 10, "2004\t3004\n"),
]


@pytest.mark.parametrize("text,count,readback", VEC_OK)
def test_intvec_pair(text, count, readback):
    h = IntVec(count=2)
    data = [32768, 60999]
    assert h.write(data, text) == count
    assert h.format(data) == readback


def test_intvec_bad_separator_after_first_value():
    h = IntVec(count=2)
    data = [32768, 60999]
    assert _errno(h.write, data, "2000,3000") == errno.EINVAL
    assert data == [32768, 60999]


def test_intvec_bad_trailer_on_second_value_keeps_first():
    # Plain proc_dointvec stores element by element (tcp_rmem measured);
    # ip_local_port_range hides this behind its own temporary copy.
    h = IntVec(count=2)
    data = [32768, 60999]
    assert _errno(h.write, data, "2000 3000x") == errno.EINVAL
    assert data == [2000, 60999]


def test_intvec_error_after_first_element_keeps_it():
    # tcp_rmem: "5000 x" -> EINVAL but reads back 5000 131072 33554432.
    h = IntVec(count=3, minimum=1)
    data = [4096, 131072, 33554432]
    assert _errno(h.write, data, "5000 x") == errno.EINVAL
    assert data == [5000, 131072, 33554432]


def test_intvec_minmax_error_after_first_element_keeps_it():
    h = IntVec(count=3, minimum=1)
    data = [4096, 131072, 33554432]
    assert _errno(h.write, data, "6000 0 7") == errno.EINVAL
    assert data == [6000, 131072, 33554432]


def test_intvec_extra_values_left_over():
    h = IntVec(count=3, minimum=1)
    data = [4096, 131072, 33554432]
    assert h.write(data, "1 2 3 4") == 6
    assert h.format(data) == "1\t2\t3\n"


def test_intvec_read_truncates_without_newline():
    assert IntVec(count=3).read([8000, 131072, 6291456], 0, 6) == "8000\t1"


def test_intvec_write_at_position_ignored():
    h = IntVec(count=2)
    data = [32768, 60999]
    assert h.write(data, "2000 3000", pos=1) == 9
    assert data == [32768, 60999]


# --------------------------------------------------------------------------
# proc_dointvec_minmax
# --------------------------------------------------------------------------


def test_minmax_bounds_inclusive():
    h = IntVec(minimum=0, maximum=2)
    assert write_int(h, "0") == (1, "0\n")
    assert write_int(h, "2") == (1, "2\n")


@pytest.mark.parametrize("text", ["-1", "3"])
def test_minmax_out_of_range_is_einval(text):
    assert _errno(IntVec(minimum=0, maximum=2).write, [1], text) == errno.EINVAL


# --------------------------------------------------------------------------
# proc_dointvec_jiffies (nf_conntrack timeouts, HZ=250, measured)
# --------------------------------------------------------------------------

JIFFIES_OK = [
    ("432000", 6, "432000\n"),
    ("-1", 2, "-1\n"),
    ("0", 1, "0\n"),
    ("8589934", 7, "8589934\n"),
    ("1 2", 2, "1\n"),
    ("8589934 5", 8, "8589934\n"),
    ("-0", 2, "0\n"),
]


@pytest.mark.parametrize("text,count,readback", JIFFIES_OK)
def test_jiffies_accepts(text, count, readback):
    assert write_int(IntVec(jiffies_hz=250), text) == (count, readback)


@pytest.mark.parametrize("text", ["8589935", "21474836", "-8589935"])
def test_jiffies_over_int_max_over_hz_is_einval(text):
    assert _errno(IntVec(jiffies_hz=250).write, [0], text) == errno.EINVAL


def test_jiffies_stored_in_jiffies():
    data = [0]
    IntVec(jiffies_hz=250).write(data, "30")
    assert data == [7500]


def test_jiffies_write_at_position_ignored():
    h = IntVec(jiffies_hz=250)
    data = [60 * 250]
    assert h.write(data, "77", pos=5) == 2
    assert h.format(data) == "60\n"


# --------------------------------------------------------------------------
# proc_dou8vec_minmax (nf_conntrack_tcp_be_liberal, measured)
# --------------------------------------------------------------------------

U8_OK = [
    ("1", 1, "1\n"),
    (" 1\n", 3, "1\n"),
    ("1 1", 3, "1\n"),  # whole buffer reported, rest never looked at
    ("1 garbage", 9, "1\n"),
    ("0\tx y", 5, "0\n"),
    ("0x1", 3, "1\n"),
    ("1" + " " * 5000, 5001, "1\n"),
]


@pytest.mark.parametrize("text,count,readback", U8_OK)
def test_u8_accepts(text, count, readback):
    assert write_int(UIntMinMax(0, 1), text) == (count, readback)


@pytest.mark.parametrize("text", ["2", "-1", "255", "256", "4294967296", "1x", " ", " " * 5000 + "1", "-0"])
def test_u8_refuses_with_einval(text):
    data = [0]
    assert _errno(UIntMinMax(0, 1).write, data, text) == errno.EINVAL
    assert data == [0]


def test_u8_empty_and_positioned_writes():
    h = UIntMinMax(0, 1)
    data = [0]
    assert h.write(data, "") == 0
    assert h.write(data, "1", pos=5) == 1
    assert data == [0]


# --------------------------------------------------------------------------
# proc_doulongvec_minmax (user/max_inotify_watches in a user ns, measured)
# --------------------------------------------------------------------------

ULONG_OK = [
    ("100", 3, "100\n"),
    ("0", 1, "0\n"),
    ("2147483647", 10, "2147483647\n"),
    (" 7\n", 3, "7\n"),
    ("8 9", 2, "8\n"),
    ("0x20", 4, "32\n"),
]


@pytest.mark.parametrize("text,count,readback", ULONG_OK)
def test_ulong_accepts(text, count, readback):
    assert write_int(ULongVec(minimum=0, maximum=INT_MAX), text) == (count, readback)


@pytest.mark.parametrize(
    "text", ["-1", "-1 5", "-0", "2147483648", "8x", " ", "-", "18446744073709551615", "18446744073709551616"]
)
def test_ulong_refuses_with_einval(text):
    data = [5]
    assert _errno(ULongVec(minimum=0, maximum=INT_MAX).write, data, text) == errno.EINVAL
    assert data == [5]


def test_ulong_empty_write():
    assert write_int(ULongVec(), "", start=3) == (0, "3\n")


# --------------------------------------------------------------------------
# proc_dostring (kernel/hostname in a UTS ns, maxlen 65, measured)
# --------------------------------------------------------------------------


def _string_session():
    h = String(maxlen=65)
    data = ["(none)"]
    results = []
    for text, pos in [("abc", 0), ("def\n", 0), ("xy", 3), ("zz", 10)]:
        results.append((h.write(data, text, pos), data[0]))
    return results


def test_string_write_replaces_from_position_zero():
    assert _string_session()[0] == (3, "abc")
    assert _string_session()[1] == (4, "def")


def test_string_write_at_position_appends():
    assert _string_session()[2] == (2, "defxy")


def test_string_write_past_end_is_ignored_but_reported():
    assert _string_session()[3] == (2, "defxy")


@pytest.mark.parametrize("text,stored", [("q\nr", "q"), ("a\x00b", "a"), ("\n", "")])
def test_string_stops_at_newline_or_nul(text, stored):
    data = ["old"]
    assert String(maxlen=65).write(data, text) == len(text)
    assert data == [stored]


def test_string_truncates_to_maxlen_minus_one():
    data = [""]
    assert String(maxlen=65).write(data, "A" * 70) == 70
    assert data == ["A" * 64]


def test_string_read_honours_offset_and_adds_newline_when_room():
    h = String(maxlen=65)
    data = ["A" * 64]
    assert h.read(data, 0, 2) == "AA"
    assert h.read(data, 2, 100) == "A" * 62 + "\n"
    assert h.read(data, 64, 5) == "\n"
    assert h.read(data, 65, 5) == ""


# --------------------------------------------------------------------------
# The table: modes, handlers, ranges and defaults
# --------------------------------------------------------------------------

ENTRIES = build_entries()

EXPECTED_MODES = {
    "kernel/cap_last_cap": 0o444,
    "kernel/osrelease": 0o444,
    "vm/overcommit_memory": 0o644,
    "vm/panic_on_oom": 0o644,
    "kernel/panic": 0o644,
    "kernel/panic_on_oops": 0o644,
    "kernel/keys/root_maxkeys": 0o644,
    "kernel/keys/root_maxbytes": 0o644,
    "kernel/pid_max": 0o644,
    "net/netfilter/nf_conntrack_max": 0o644,
    "net/netfilter/nf_conntrack_tcp_timeout_established": 0o644,
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait": 0o644,
    "net/netfilter/nf_conntrack_tcp_be_liberal": 0o644,
    "net/netfilter/nf_conntrack_udp_timeout": 0o644,
    "net/netfilter/nf_conntrack_udp_timeout_stream": 0o644,
    "net/ipv4/conf/all/route_localnet": 0o644,
    "net/ipv4/ip_forward": 0o644,
    "net/bridge/bridge-nf-call-iptables": 0o644,
    "net/bridge/bridge-nf-call-ip6tables": 0o644,
    "fs/inotify/max_user_watches": 0o644,
    "fs/inotify/max_user_instances": 0o644,
}


def test_table_has_exactly_the_expected_entries():
    assert set(ENTRIES) == set(EXPECTED_MODES)


@pytest.mark.parametrize("path,mode", sorted(EXPECTED_MODES.items()))
def test_entry_mode(path, mode):
    assert ENTRIES[path].mode == mode
    assert ENTRIES[path].root_may_write == bool(mode & 0o200)


# Defaults: this VM's real files, except kernel/panic which the VM's
# command line sets to 1 (CONFIG_PANIC_TIMEOUT is 0).
EXPECTED_DEFAULTS = {
    "kernel/cap_last_cap": "40\n",
    "kernel/osrelease": "6.18.44-fc-v657\n",
    "vm/overcommit_memory": "0\n",
    "vm/panic_on_oom": "0\n",
    "kernel/panic": "0\n",
    "kernel/panic_on_oops": "0\n",
    "kernel/keys/root_maxkeys": "1000000\n",
    "kernel/keys/root_maxbytes": "25000000\n",
    "kernel/pid_max": "32768\n",
    "net/netfilter/nf_conntrack_max": "262144\n",
    "net/netfilter/nf_conntrack_tcp_timeout_established": "432000\n",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait": "60\n",
    "net/netfilter/nf_conntrack_tcp_be_liberal": "0\n",
    "net/netfilter/nf_conntrack_udp_timeout": "30\n",
    "net/netfilter/nf_conntrack_udp_timeout_stream": "120\n",
    "net/ipv4/conf/all/route_localnet": "0\n",
    "net/ipv4/ip_forward": "0\n",
    "net/bridge/bridge-nf-call-iptables": "1\n",
    "net/bridge/bridge-nf-call-ip6tables": "1\n",
    "fs/inotify/max_user_watches": "192536\n",
    "fs/inotify/max_user_instances": "128\n",
}


@pytest.mark.parametrize("path,text", sorted(EXPECTED_DEFAULTS.items()))
def test_entry_default(path, text):
    assert Sysctl().text(path) == text


# (path, lowest accepted, highest accepted, rejected values)
RANGES = [
    ("kernel/cap_last_cap", "-2147483648", "2147483647", ["2147483648"]),
    ("vm/overcommit_memory", "0", "2", ["-1", "3"]),
    ("vm/panic_on_oom", "0", "2", ["-1", "3"]),
    ("kernel/panic", "-2147483648", "2147483647", ["2147483648", "-2147483649"]),
    ("kernel/panic_on_oops", "-2147483648", "2147483647", ["2147483648"]),
    ("kernel/keys/root_maxkeys", "1", "2147483647", ["0", "-1", "2147483648"]),
    ("kernel/keys/root_maxbytes", "1", "2147483647", ["0", "-1", "2147483648"]),
    ("kernel/pid_max", "301", "4194304", ["300", "4194305"]),
    ("net/netfilter/nf_conntrack_max", "0", "2147483647", ["-1", "2147483648"]),
    ("net/netfilter/nf_conntrack_tcp_timeout_established", "-8589934", "8589934", ["8589935", "-8589935"]),
    ("net/netfilter/nf_conntrack_tcp_timeout_close_wait", "-8589934", "8589934", ["8589935"]),
    ("net/netfilter/nf_conntrack_tcp_be_liberal", "0", "1", ["2", "-1"]),
    ("net/netfilter/nf_conntrack_udp_timeout", "-8589934", "8589934", ["8589935"]),
    ("net/netfilter/nf_conntrack_udp_timeout_stream", "-8589934", "8589934", ["8589935"]),
    ("net/ipv4/conf/all/route_localnet", "-2147483648", "2147483647", ["2147483648"]),
    ("net/ipv4/ip_forward", "-2147483648", "2147483647", ["2147483648"]),
    ("fs/inotify/max_user_watches", "0", "2147483647", ["-1", "2147483648"]),
    ("fs/inotify/max_user_instances", "0", "2147483647", ["-1", "2147483648"]),
]


@pytest.mark.parametrize("path,lo,hi,bad", RANGES)
def test_entry_range(path, lo, hi, bad):
    entry = ENTRIES[path]
    for ok in (lo, hi):
        data = list(entry.default)
        assert entry.handler.write(data, ok) == len(ok)
        assert entry.handler.format(data) == ok + "\n"
    for value in bad:
        data = list(entry.default)
        assert _errno(entry.handler.write, data, value) == errno.EINVAL
        assert data == list(entry.default)


def test_range_table_covers_every_numeric_writable_entry_but_bridge():
    covered = {r[0] for r in RANGES}
    numeric = {p for p, e in ENTRIES.items() if e.handler.numeric}
    assert numeric - covered == {"net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables"}


@pytest.mark.parametrize("path", ["net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables"])
@pytest.mark.parametrize("text,stored", [("0", "0\n"), ("1", "1\n"), ("5", "1\n"), ("-3", "1\n"), ("0x10", "1\n")])
def test_bridge_nf_call_nonzero_becomes_one(path, text, stored):
    m = Sysctl()
    assert m.write(path, text) == len(text)
    assert m.text(path) == stored


@pytest.mark.parametrize("path", ["net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables"])
def test_bridge_nf_call_refuses_int_overflow(path):
    assert _errno(Sysctl().write, path, "2147483648") == errno.EINVAL


def test_pid_max_limit_comes_from_host():
    m = Sysctl(pid_max_limit=32768)
    assert _errno(m.write, "kernel/pid_max", "32769") == errno.EINVAL
    assert m.write("kernel/pid_max", "32768") == 5


def test_jiffies_bound_follows_hz():
    m = Sysctl(hz=1000)
    assert _errno(m.write, "net/netfilter/nf_conntrack_udp_timeout", "2147484") == errno.EINVAL
    assert m.write("net/netfilter/nf_conntrack_udp_timeout", "2147483") == 7


# --------------------------------------------------------------------------
# Host values seed the synthetic defaults
# --------------------------------------------------------------------------


def test_host_values_seed_entries():
    m = Sysctl(host={
        "kernel/cap_last_cap": "41\n",
        "kernel/osrelease": "6.1.0-test\n",
        "net/netfilter/nf_conntrack_udp_timeout": "45\n",
        "kernel/panic": "1\n",
    })
    assert m.text("kernel/cap_last_cap") == "41\n"
    assert m.text("kernel/osrelease") == "6.1.0-test\n"
    assert m.text("net/netfilter/nf_conntrack_udp_timeout") == "45\n"
    assert m.values["net/netfilter/nf_conntrack_udp_timeout"] == [45 * 250]
    assert m.text("kernel/panic") == "1\n"


# --------------------------------------------------------------------------
# Permissions (proc_sys_permission(): mode bits, root included)
# --------------------------------------------------------------------------


def test_cap_last_cap_open_for_write_refused_for_root():
    assert ENTRIES["kernel/cap_last_cap"].root_may_write is False
    assert not perm_allows(ENTRIES["kernel/cap_last_cap"].mode, True, euid=0)


def test_osrelease_open_for_write_refused_for_root():
    assert not perm_allows(ENTRIES["kernel/osrelease"].mode, True, euid=0)


def test_non_root_cannot_open_0644_for_write_but_can_read():
    mode = ENTRIES["vm/overcommit_memory"].mode
    assert not perm_allows(mode, True, euid=1000)
    assert perm_allows(mode, False, euid=1000)


def test_perm_uses_group_bits_for_root_group():
    assert perm_allows(0o464, True, euid=1000, in_root_group=True)
    assert not perm_allows(0o444, True, euid=1000, in_root_group=True)
    assert not perm_allows(0o640, False, euid=1000, in_root_group=False)


def test_root_may_write_0644():
    assert perm_allows(ENTRIES["kernel/panic"].mode, True, euid=0)


# --------------------------------------------------------------------------
# Writes and reads of the entries' values
# --------------------------------------------------------------------------


def test_synthetic_write_is_stored():
    m = Sysctl()
    assert m.write("vm/overcommit_memory", "1\n") == 2
    assert m.text("vm/overcommit_memory") == "1\n"


def test_synthetic_refused_write_keeps_value():
    m = Sysctl()
    assert _errno(m.write, "vm/overcommit_memory", "3") == errno.EINVAL
    assert m.text("vm/overcommit_memory") == "0\n"


def test_write_at_offset_ignored():
    m = Sysctl()
    assert m.write("kernel/panic", "10", offset=2) == 2
    assert m.text("kernel/panic") == "0\n"


def test_read_at_offset():
    m = Sysctl()
    assert m.read("kernel/pid_max", 0, 3) == "327"
    assert m.read("kernel/pid_max", 3, 10) == ""
    assert m.read("kernel/osrelease", 2, 100) == "18.44-fc-v657\n"


def test_kubelet_settings_round_trip():
    m = Sysctl()
    wanted = {
        "vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
        "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
        "kernel/keys/root_maxbytes": "25000000",
    }
    for path, value in wanted.items():
        assert m.write(path, value + "\n") == len(value) + 1
    assert {p: m.text(p) for p in wanted} == {p: v + "\n" for p, v in wanted.items()}


def test_kube_proxy_settings_round_trip():
    m = Sysctl()
    wanted = {
        "net/netfilter/nf_conntrack_max": "131072",
        "net/netfilter/nf_conntrack_tcp_timeout_established": "86400",
        "net/netfilter/nf_conntrack_tcp_timeout_close_wait": "3600",
        "net/netfilter/nf_conntrack_tcp_be_liberal": "1",
        "net/netfilter/nf_conntrack_udp_timeout": "60",
        "net/netfilter/nf_conntrack_udp_timeout_stream": "180",
        "net/ipv4/conf/all/route_localnet": "1",
    }
    for path, value in wanted.items():
        m.write(path, value)
    assert {p: m.text(p) for p in wanted} == {p: v + "\n" for p, v in wanted.items()}
