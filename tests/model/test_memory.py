"""memory controller model. Rules marked "measured" were measured on this
VM's Linux 6.18 in a throwaway child (fakefs-h-mem1); "source" ones come from
mm/memcontrol-v1.c because measuring them would mean writing the real root or
charging memory to a throwaway cgroup."""

import errno
import json
from pathlib import Path

import pytest

from fakefs.model.controllers import memory
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts
from fakefs.model.tree import CgroupModel
from tests.kernelio import read_errno, write, write_errno as errno_of

UNLIMITED = 9223372036854771712  # PAGE_COUNTER_MAX * 4096, measured
INVENTORY = json.loads((Path(__file__).parent / "real_inventory.json").read_text())


@pytest.fixture
def model():
    return CgroupModel(HostFacts(online_mems=frozenset({0})))


@pytest.fixture
def h(model):
    return model.hierarchy("memory")


@pytest.fixture
def cg(h):
    return h.mkdir(h.root, "c")








# -- inventory --------------------------------------------------------------------
@pytest.mark.parametrize("where", ["root", "child"])
def test_file_names_and_modes_match_the_real_kernel(h, cg, where):
    """Measured: the inventory dump; memory.shown_ram_in_bytes is a vendor
    file, not upstream, and is deliberately absent."""
    real = INVENTORY["memory"][where]
    node = h.root if where == "root" else cg
    mine = h.files(node)
    expected = set(real) - {"memory.shown_ram_in_bytes"}
    assert set(mine) == expected
    for name in expected:
        assert mine[name].mode == int(real[name][0], 8), name


def test_fresh_child_contents_match_the_real_kernel(h, cg):
    """Measured: every readable file of a fresh child, byte for byte (the
    inventory truncates long files; those are compared up to the cut)."""
    real = INVENTORY["memory"]["child"]
    for name in h.files(cg):
        content = real[name][1]
        if content.startswith("ERR "):
            assert read_errno(h, cg, name) == int(content[4:])
        elif content.endswith("..."):
            assert h.read_file(cg, name).startswith(content[:-3])
        else:
            assert h.read_file(cg, name) == content, name


def test_memory_stat_key_order(h, cg):
    """Measured: the exact key list of memory.stat on this kernel."""
    keys = [line.split()[0] for line in h.read_file(cg, "memory.stat").splitlines()]
    base = ["cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
            "workingset_refault_anon", "workingset_refault_file", "swap", "swapcached",
            "pgpgin", "pgpgout", "pgfault", "pgmajfault", "inactive_anon", "active_anon",
            "inactive_file", "active_file", "unevictable"]
    assert keys == base + ["hierarchical_memory_limit", "hierarchical_memsw_limit"] + [f"total_{k}" for k in base]


def test_no_memsw_files_without_swap_accounting():
    """Source: memsw_files are only registered when swap is accounted."""
    m = CgroupModel(HostFacts(swap_accounting=False))
    h = m.hierarchy("memory")
    assert not [n for n in h.files(h.root) if "memsw" in n]
    assert "memory.limit_in_bytes" in h.files(h.root)


# -- limit parsing ------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [
    ("1", 0), ("4097", 4096), ("1k", 0), ("2m", 2 << 20), ("1g", 1 << 30), ("-1", UNLIMITED),
    ("1k\n", 0), (" 1k", 0), ("0x1000", 4096), ("0X2000", 8192), ("\n", 0), ("  ", 0),
    ("010", 0), ("1e", 1 << 60), ("16e", 0), ("99999999999999999999", 7766279631452237824),
    (" -1 ", UNLIMITED), ("4096\n\n", 4096), ("\t8192\t", 8192), ("1p", 1 << 50), ("1t", 1 << 40),
])
def test_limit_values(h, cg, text, value):
    """Measured on memory.limit_in_bytes (strstrip + page_counter_memparse,
    rounded down to the page, wrap-around at 64 bits)."""
    write(h, cg, "memory.limit_in_bytes", text)
    assert h.read_file(cg, "memory.limit_in_bytes") == f"{value}\n"


@pytest.mark.parametrize("text", ["-2", "1x", "1 k", "1kb", "+4096", "08"])
def test_limit_rejects(h, cg, text):
    """Measured: EINVAL, value unchanged."""
    write(h, cg, "memory.limit_in_bytes", "8m")
    assert errno_of(h, cg, "memory.limit_in_bytes", text) == errno.EINVAL
    assert h.read_file(cg, "memory.limit_in_bytes") == f"{8 << 20}\n"


def test_limit_uses_host_page_size():
    """Source: PAGE_COUNTER_MAX and rounding are in pages of the host."""
    m = CgroupModel(HostFacts(page_size=65536))
    h = m.hierarchy("memory")
    c = h.mkdir(h.root, "c")
    assert h.read_file(c, "memory.limit_in_bytes") == f"{((1 << 63) - 1) // 65536 * 65536}\n"
    write(h, c, "memory.limit_in_bytes", "100000")
    assert h.read_file(c, "memory.limit_in_bytes") == "65536\n"


@pytest.mark.parametrize("name", ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                                  "memory.kmem.limit_in_bytes", "memory.kmem.tcp.limit_in_bytes"])
def test_limits_on_root_are_einval(h, name):
    """Source (mem_cgroup_write RES_LIMIT root check); not measured: the real
    root is off limits."""
    assert errno_of(h, h.root, name, "-1") == errno.EINVAL
    assert h.read_file(h.root, name) == f"{UNLIMITED}\n"


def test_soft_limit_parses_like_limits(h, cg):
    """Measured: '1'->0, ' 2m\\n'->2M, '-1' unlimited, '-2'/'1x' EINVAL."""
    write(h, cg, "memory.soft_limit_in_bytes", " 2m\n")
    assert h.read_file(cg, "memory.soft_limit_in_bytes") == f"{2 << 20}\n"
    write(h, cg, "memory.soft_limit_in_bytes", "1")
    assert h.read_file(cg, "memory.soft_limit_in_bytes") == "0\n"
    assert errno_of(h, cg, "memory.soft_limit_in_bytes", "-2") == errno.EINVAL
    write(h, cg, "memory.soft_limit_in_bytes", "-1")
    assert h.read_file(cg, "memory.soft_limit_in_bytes") == f"{UNLIMITED}\n"


def test_soft_limit_writable_on_root(h):
    """Source: RES_SOFT_LIMIT has no root check (not measured)."""
    write(h, h.root, "memory.soft_limit_in_bytes", "1g")
    assert h.read_file(h.root, "memory.soft_limit_in_bytes") == f"{1 << 30}\n"


def test_kmem_limit_parses_but_never_changes(h, cg):
    """Measured: '1m' accepted yet reads unlimited; '-2' and '1x' EINVAL."""
    write(h, cg, "memory.kmem.limit_in_bytes", "1m")
    assert h.read_file(cg, "memory.kmem.limit_in_bytes") == f"{UNLIMITED}\n"
    assert errno_of(h, cg, "memory.kmem.limit_in_bytes", "1x") == errno.EINVAL


def test_tcp_limit(h, cg):
    """Measured: '4097'->4096, '1m', '-1', '-2' EINVAL."""
    write(h, cg, "memory.kmem.tcp.limit_in_bytes", "4097")
    assert h.read_file(cg, "memory.kmem.tcp.limit_in_bytes") == "4096\n"
    assert errno_of(h, cg, "memory.kmem.tcp.limit_in_bytes", "-2") == errno.EINVAL


# -- limit rules ---------------------------------------------------------------------
def test_memsw_below_limit_is_einval(h, cg):
    """Measured: limit 10m, memsw 5m -> EINVAL, memsw unchanged."""
    write(h, cg, "memory.limit_in_bytes", "10m")
    assert errno_of(h, cg, "memory.memsw.limit_in_bytes", "5m") == errno.EINVAL
    assert h.read_file(cg, "memory.memsw.limit_in_bytes") == f"{UNLIMITED}\n"


def test_limit_above_memsw_is_einval(h, cg):
    """Measured: memsw 20m, limit 30m and limit -1 -> EINVAL; 20m ok."""
    write(h, cg, "memory.limit_in_bytes", "10m")
    write(h, cg, "memory.memsw.limit_in_bytes", "20m")
    assert errno_of(h, cg, "memory.limit_in_bytes", "30m") == errno.EINVAL
    assert errno_of(h, cg, "memory.limit_in_bytes", "-1") == errno.EINVAL
    write(h, cg, "memory.limit_in_bytes", "20m")
    assert h.read_file(cg, "memory.limit_in_bytes") == f"{20 << 20}\n"


def test_limit_below_usage_is_ebusy(h, cg):
    """Source: mem_cgroup_resize_max -> page_counter_set_max; nothing is
    reclaimable in the model."""
    memory.charge(cg, "memory", 256)  # 1 MiB
    assert errno_of(h, cg, "memory.limit_in_bytes", "512k") == errno.EBUSY
    write(h, cg, "memory.limit_in_bytes", "1m")
    assert h.read_file(cg, "memory.limit_in_bytes") == f"{1 << 20}\n"


def test_parent_limit_counts_child_usage(h, cg):
    """Source: v1 page counters are hierarchical."""
    child = h.mkdir(cg, "g")
    memory.charge(child, "memory", 256)
    assert h.read_file(cg, "memory.usage_in_bytes") == f"{1 << 20}\n"
    assert errno_of(h, cg, "memory.limit_in_bytes", "4k") == errno.EBUSY


def test_memsw_limit_below_memsw_usage_is_ebusy(h, cg):
    """Source: memsw counts memory plus swap."""
    memory.charge(cg, "memory", 1)
    memory.charge(cg, "swap", 1)
    assert h.read_file(cg, "memory.memsw.usage_in_bytes") == "8192\n"
    write(h, cg, "memory.limit_in_bytes", "4k")
    assert errno_of(h, cg, "memory.memsw.limit_in_bytes", "4k") == errno.EBUSY


def test_tcp_limit_below_usage_is_ebusy(h, cg):
    memory.charge(cg, "tcp", 2)
    assert errno_of(h, cg, "memory.kmem.tcp.limit_in_bytes", "4k") == errno.EBUSY


def test_child_limit_may_exceed_parent_and_hierarchical_limit_is_min(h, cg):
    """Measured: parent 20m, child 40m accepted; child's stat shows 20m."""
    write(h, cg, "memory.limit_in_bytes", "20m")
    write(h, cg, "memory.memsw.limit_in_bytes", "20975616")
    child = h.mkdir(cg, "g")
    assert h.read_file(child, "memory.limit_in_bytes") == f"{UNLIMITED}\n"
    write(h, child, "memory.limit_in_bytes", "40m")
    stat = h.read_file(child, "memory.stat")
    assert "hierarchical_memory_limit 20971520\n" in stat
    assert "hierarchical_memsw_limit 20975616\n" in stat


def test_charge_over_limit_counts_failcnt(h, cg):
    write(h, cg, "memory.limit_in_bytes", "8k")
    with pytest.raises(KernelError):
        memory.charge(cg, "memory", 3)
    assert h.read_file(cg, "memory.failcnt") == "1\n"


# -- usage / reset files -------------------------------------------------------------
@pytest.mark.parametrize("name", ["memory.failcnt", "memory.memsw.failcnt", "memory.kmem.failcnt",
                                  "memory.kmem.tcp.failcnt"])
@pytest.mark.parametrize("text", ["0", "1", "abc", "\n", "-1"])
def test_failcnt_write_resets_whatever_is_written(h, cg, name, text):
    """Measured: any non-empty write is accepted (mem_cgroup_reset ignores
    the buffer)."""
    memory.MEMORY.state(cg).counters[{"memory.failcnt": "memory", "memory.memsw.failcnt": "memsw",
                                      "memory.kmem.failcnt": "kmem", "memory.kmem.tcp.failcnt": "tcp"}[name]].failcnt = 5
    assert h.read_file(cg, name) == "5\n"
    write(h, cg, name, text)
    assert h.read_file(cg, name) == "0\n"


def test_max_usage_reset_goes_to_current_usage(h, cg):
    """Source: page_counter_reset_watermark sets watermark = usage.
    Measured: 'abc' and '\\n' accepted."""
    memory.charge(cg, "memory", 10)
    memory.charge(cg, "memory", -6)
    assert h.read_file(cg, "memory.max_usage_in_bytes") == f"{10 * 4096}\n"
    write(h, cg, "memory.max_usage_in_bytes", "abc")
    assert h.read_file(cg, "memory.max_usage_in_bytes") == f"{4 * 4096}\n"


def test_reset_files_refuse_writes_over_a_page(h, cg):
    """Measured: 5000 bytes -> E2BIG."""
    assert errno_of(h, cg, "memory.max_usage_in_bytes", "x" * 5000) == errno.E2BIG


@pytest.mark.parametrize("name", ["memory.usage_in_bytes", "memory.stat", "memory.kmem.slabinfo",
                                  "memory.pressure_level"])
def test_read_only_files_refuse_writes(h, cg, name):
    """Measured: EINVAL."""
    assert errno_of(h, cg, name, "1") == errno.EINVAL


def test_numa_stat_counts_lru_pages(h, cg):
    """Source: memcg_numa_stat_show prints pages; hierarchical_* adds the subtree."""
    memory.record_stats(cg, active_anon=8192, inactive_file=4096)
    child = h.mkdir(cg, "g")
    memory.record_stats(child, unevictable=4096)
    text = h.read_file(cg, "memory.numa_stat")
    assert text.splitlines() == [
        "total=3 N0=3", "file=1 N0=1", "anon=2 N0=2", "unevictable=0 N0=0",
        "hierarchical_total=4 N0=4", "hierarchical_file=1 N0=1",
        "hierarchical_anon=2 N0=2", "hierarchical_unevictable=1 N0=1"]


def test_numa_stat_lists_every_memory_node():
    m = CgroupModel(HostFacts(online_mems=frozenset({0, 2})))
    h = m.hierarchy("memory")
    assert h.read_file(h.root, "memory.numa_stat").splitlines()[0] == "total=0 N0=0 N2=0"


def test_stat_total_adds_descendants(h, cg):
    child = h.mkdir(cg, "g")
    memory.record_stats(child, cache=8192)
    stat = h.read_file(cg, "memory.stat")
    assert "\ncache 0\n" in "\n" + stat and "total_cache 8192\n" in stat


# -- knobs -------------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [("0", 0), ("100", 100), ("101", 101), ("200", 200),
                                        ("60\n", 60), ("0x10", 16)])
def test_swappiness_accepts(h, cg, text, value):
    """Measured: 0..200 (MAX_SWAPPINESS is 200 on 6.18), kstrtoull base 0."""
    write(h, cg, "memory.swappiness", text)
    assert h.read_file(cg, "memory.swappiness") == f"{value}\n"


@pytest.mark.parametrize("text,err", [("201", errno.EINVAL), ("-1", errno.EINVAL), (" 60", errno.EINVAL),
                                      ("abc", errno.EINVAL), ("1\n\n", errno.EINVAL),
                                      ("18446744073709551615", errno.EINVAL),
                                      ("18446744073709551616", errno.ERANGE)])
def test_swappiness_rejects(h, cg, text, err):
    """Measured."""
    assert errno_of(h, cg, "memory.swappiness", text) == err
    assert h.read_file(cg, "memory.swappiness") == "60\n"


def test_root_swappiness_is_vm_swappiness_and_seeds_children(h):
    """Source: on the root the write goes to vm_swappiness (root not written
    on the real VM); measured: a child copies its parent's value (17)."""
    assert h.read_file(h.root, "memory.swappiness") == "60\n"
    write(h, h.root, "memory.swappiness", "30")
    a = h.mkdir(h.root, "a")
    assert h.read_file(a, "memory.swappiness") == "30\n"
    write(h, a, "memory.swappiness", "17")
    assert h.read_file(h.mkdir(a, "b"), "memory.swappiness") == "17\n"


@pytest.mark.parametrize("text,err", [("1", None), ("1\n", None), ("01", None), ("0x1", None),
                                      ("0", errno.EINVAL), ("2", errno.EINVAL), (" 1", errno.EINVAL), ("-1", errno.EINVAL),
                                      ("1\n\n", errno.EINVAL), ("18446744073709551616", errno.ERANGE)])
def test_use_hierarchy(h, cg, text, err):
    """Measured: only the value 1 is accepted; '0' is EINVAL."""
    if err is None:
        write(h, cg, "memory.use_hierarchy", text)
    else:
        assert errno_of(h, cg, "memory.use_hierarchy", text) == err
    assert h.read_file(cg, "memory.use_hierarchy") == "1\n"


@pytest.mark.parametrize("text,err", [("0", None), ("0\n", None), ("0x0", None), ("1", errno.EINVAL),
                                      ("3", errno.EINVAL), ("4", errno.EINVAL), (" 0", errno.EINVAL),
                                      ("18446744073709551616", errno.ERANGE)])
def test_move_charge_only_zero(h, cg, text, err):
    """Measured: charge moving is gone on 6.18; only 0 is accepted."""
    if err is None:
        write(h, cg, "memory.move_charge_at_immigrate", text)
    else:
        assert errno_of(h, cg, "memory.move_charge_at_immigrate", text) == err
    assert h.read_file(cg, "memory.move_charge_at_immigrate") == "0\n"


def test_oom_control_write_and_read(h, cg):
    """Measured: 0/1 ok, 2, -1, ' 1', 4294967297 EINVAL, 2**64 ERANGE."""
    write(h, cg, "memory.oom_control", "1\n")
    assert h.read_file(cg, "memory.oom_control") == "oom_kill_disable 1\nunder_oom 0\noom_kill 0\n"
    for bad in ("2", "-1", " 1", "4294967297"):
        assert errno_of(h, cg, "memory.oom_control", bad) == errno.EINVAL
    assert errno_of(h, cg, "memory.oom_control", "18446744073709551616") == errno.ERANGE
    write(h, cg, "memory.oom_control", "0")
    assert h.read_file(cg, "memory.oom_control").startswith("oom_kill_disable 0\n")


def test_oom_control_on_root_is_einval(h):
    """Source: mem_cgroup_oom_control_write refuses the root."""
    assert errno_of(h, h.root, "memory.oom_control", "0") == errno.EINVAL


def test_oom_kill_disable_is_inherited(h, cg):
    """Measured: a child made under oom_kill_disable 1 starts with 1."""
    write(h, cg, "memory.oom_control", "1")
    assert h.read_file(h.mkdir(cg, "g"), "memory.oom_control").startswith("oom_kill_disable 1\n")


def test_limits_and_soft_limit_are_not_inherited(h, cg):
    """Measured: soft limit 8m, tcp 8m on the parent; child reads unlimited."""
    write(h, cg, "memory.soft_limit_in_bytes", "8m")
    write(h, cg, "memory.kmem.tcp.limit_in_bytes", "8m")
    g = h.mkdir(cg, "g")
    assert h.read_file(g, "memory.soft_limit_in_bytes") == f"{UNLIMITED}\n"
    assert h.read_file(g, "memory.kmem.tcp.limit_in_bytes") == f"{UNLIMITED}\n"


def test_force_empty(h, cg):
    """Measured: child accepts anything ('0', 'abc', '\\n'); reads EINVAL.
    Source: root EINVAL."""
    for text in ("0", "abc", "\n"):
        write(h, cg, "memory.force_empty", text)
    assert read_errno(h, cg, "memory.force_empty") == errno.EINVAL
    assert errno_of(h, h.root, "memory.force_empty", "0") == errno.EINVAL


def test_pressure_level_read_is_einval(h, cg):
    """Measured: reading and writing both EINVAL, yet mode 0444."""
    assert read_errno(h, cg, "memory.pressure_level") == errno.EINVAL
    assert h.files(cg)["memory.pressure_level"].mode == 0o444


# -- cgroup.event_control -------------------------------------------------------------
@pytest.mark.parametrize("text", ["3 4", "3 4 ", "3 4 1m", "3 4 -1", "3 5 junk", "3 6 low,hierarchy",
                                  " 3 4 1m\n"])
def test_event_control_accepts_well_formed(h, cg, text):
    """Measured: each of these was accepted with real fds (3 an eventfd,
    4/5/6 usage_in_bytes/oom_control/pressure_level of the same cgroup)."""
    write(h, cg, "cgroup.event_control", text)
    efd, cfd, _ = memory.MEMORY.state(cg).event_registrations[-1]
    assert efd == 3 and cfd == int(text.split()[1])


@pytest.mark.parametrize("text,err", [
    ("\n", errno.EINVAL), ("abc", errno.EINVAL), ("3", errno.EINVAL), ("3 ", errno.EINVAL),
    ("3  4 1m", errno.EINVAL), ("+3 4 1m", errno.EINVAL), ("3,4 1m", errno.EINVAL),
    ("3\t4 1m", errno.EINVAL), ("0x3 4 1m", errno.EINVAL), ("3 4x 1m", errno.EINVAL),
    ("4 4 1m", errno.EINVAL),
])
def test_event_control_rejects(h, cg, text, err):
    """Measured: same errno on the real kernel for each input."""
    assert errno_of(h, cg, "cgroup.event_control", text) == err
    assert memory.MEMORY.state(cg).event_registrations == []


def test_event_control_fd_beyond_any_fd_table_is_ebadf(h, cg):
    """Source: fdget() of an fd past sysctl_nr_open_max fails (EBADF); the
    model cannot see the writer's fd table, so smaller unopened fds pass."""
    assert errno_of(h, cg, "cgroup.event_control", "4294967295 4 1m") == errno.EBADF
    assert errno_of(h, cg, "cgroup.event_control", "3 2147483584") == errno.EBADF
    write(h, cg, "cgroup.event_control", "999 4 1m")  # real kernel: EBADF if 999 is not open


def test_event_control_is_write_only(h, cg):
    """Measured: mode 0200, read EINVAL."""
    assert h.files(cg)["cgroup.event_control"].mode == 0o200
    assert read_errno(h, cg, "cgroup.event_control") == errno.EINVAL


def test_parse_event_control_returns_args():
    assert memory.parse_event_control("7 9 low,local\n") == (7, 9, "low,local")


@pytest.mark.parametrize("text", ["1 2", "1 2 3", "0 4 1m", "3 2 1m"])
def test_event_control_stdio_fds_are_einval(h, cg, text):
    """Measured: '1 2' and '1 2 3' are EINVAL from a shell (stdout is not an
    eventfd). The model assumes fds 0..2 are stdio for every writer."""
    assert errno_of(h, cg, "cgroup.event_control", text) == errno.EINVAL


@pytest.mark.parametrize("name,text,expected", [
    ("memory.limit_in_bytes", "\0", "0\n"),
    ("memory.limit_in_bytes", "1\0", "0\n"),
    ("memory.limit_in_bytes", "8k\0junk", "8192\n"),
    ("memory.swappiness", "1\0", "1\n"),
])
def test_writes_stop_at_the_first_nul(h, cg, name, text, expected):
    """Measured (differential table): the kernel's parsers see a C string."""
    write(h, cg, name, text)
    assert h.read_file(cg, name) == expected
