"""hugetlb controller model. "Measured" rules were measured on this VM's
Linux 6.18 by mounting the (otherwise unmounted) hugetlb hierarchy in a
private mount namespace, with a throwaway child fakefs-h-hug1 (2MB and 1GB
huge pages); "source" rules come from mm/hugetlb_cgroup.c."""

import errno

import pytest

from fakefs.model.controllers import hugetlb
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts
from fakefs.model.tree import CgroupModel
from tests.kernelio import write, write_errno as errno_of

UNLIMITED = 9223372036854771712
MB2, GB1 = 2 << 20, 1 << 30

# Measured: a fresh child (identical on the root apart from the core files).
REAL_FRESH = {
    f"hugetlb.{n}.{f}": (mode, content)
    for n in ("2MB", "1GB")
    for f, mode, content in [
        ("failcnt", 0o644, "0\n"), ("limit_in_bytes", 0o644, f"{UNLIMITED}\n"),
        ("max_usage_in_bytes", 0o644, "0\n"), ("numa_stat", 0o444, "total=0 N0=0\nhierarchical_total=0 N0=0\n"),
        ("rsvd.failcnt", 0o644, "0\n"), ("rsvd.limit_in_bytes", 0o644, f"{UNLIMITED}\n"),
        ("rsvd.max_usage_in_bytes", 0o644, "0\n"), ("rsvd.usage_in_bytes", 0o444, "0\n"),
        ("usage_in_bytes", 0o444, "0\n"),
    ]
}


@pytest.fixture
def h():
    return CgroupModel(HostFacts(hugepage_sizes=(MB2, GB1))).hierarchy("hugetlb")


@pytest.fixture
def cg(h):
    return h.mkdir(h.root, "c")






@pytest.mark.parametrize("where", ["root", "child"])
def test_files_modes_and_contents_match_the_real_kernel(h, cg, where):
    """Measured: no events / events.local files in v1 (ENOENT on the real
    kernel); everything else as dumped."""
    node = h.root if where == "root" else cg
    files = {n: f for n, f in h.files(node).items() if n.startswith("hugetlb.")}
    assert set(files) == set(REAL_FRESH)
    for name, (mode, content) in REAL_FRESH.items():
        assert files[name].mode == mode, name
        assert h.read_file(node, name) == content, name


@pytest.mark.parametrize("size,name", [(MB2, "2MB"), (GB1, "1GB"), (64 << 10, "64KB"), (32 << 20, "32MB"),
                                       (16 << 30, "16GB")])
def test_size_names_follow_mem_fmt(size, name):
    """Source: mem_fmt()."""
    assert hugetlb.size_name(size) == name


def test_files_follow_host_sizes():
    h = CgroupModel(HostFacts(hugepage_sizes=(64 << 10,), page_size=4096)).hierarchy("hugetlb")
    names = {n for n in h.files(h.root) if n.startswith("hugetlb.")}
    assert "hugetlb.64KB.limit_in_bytes" in names and not any("2MB" in n for n in names)
    assert len(names) == 9


def test_no_huge_pages_no_files():
    h = CgroupModel(HostFacts(hugepage_sizes=())).hierarchy("hugetlb")
    assert not [n for n in h.files(h.root) if n.startswith("hugetlb.")]


@pytest.mark.parametrize("text,value", [
    ("1", 0), ("2m", MB2), ("2097153", MB2), ("4m", 4 << 20), ("3m", MB2),
    ("-1", 9223372036852678656), ("1k\n", 0), (" 4m", 4 << 20), ("0x400000", 4 << 20), ("\n", 0),
    ("4M", 4 << 20), ("1g", GB1), ("99999999999999999999", 7766279631451193344), ("16e", 0),
])
def test_2mb_limit_values(h, cg, text, value):
    """Measured: memparse then round down to whole 2MB pages; '-1' is
    PAGE_COUNTER_MAX rounded down too."""
    write(h, cg, "hugetlb.2MB.limit_in_bytes", text)
    assert h.read_file(cg, "hugetlb.2MB.limit_in_bytes") == f"{value}\n"


@pytest.mark.parametrize("text,value", [("1", 0), ("1g", GB1), ("3g", 3 * GB1), ("1073741825", GB1),
                                        ("2047m", GB1), ("-1", 9223372035781033984)])
def test_1gb_limit_values(h, cg, text, value):
    """Measured."""
    write(h, cg, "hugetlb.1GB.limit_in_bytes", text)
    assert h.read_file(cg, "hugetlb.1GB.limit_in_bytes") == f"{value}\n"


@pytest.mark.parametrize("text", ["-2", "1x", "+2m", "abc"])
def test_limit_rejects(h, cg, text):
    """Measured: EINVAL, value unchanged."""
    write(h, cg, "hugetlb.2MB.limit_in_bytes", "4m")
    assert errno_of(h, cg, "hugetlb.2MB.limit_in_bytes", text) == errno.EINVAL
    assert h.read_file(cg, "hugetlb.2MB.limit_in_bytes") == f"{4 << 20}\n"


def test_rsvd_limit_is_separate(h, cg):
    """Measured: rsvd '3m' -> 2MB; the fault limit is untouched."""
    write(h, cg, "hugetlb.2MB.rsvd.limit_in_bytes", "3m")
    assert h.read_file(cg, "hugetlb.2MB.rsvd.limit_in_bytes") == f"{MB2}\n"
    assert h.read_file(cg, "hugetlb.2MB.limit_in_bytes") == f"{UNLIMITED}\n"


@pytest.mark.parametrize("name", ["hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.rsvd.limit_in_bytes"])
@pytest.mark.parametrize("text", ["4m", "-1"])
def test_root_limits_are_einval(h, name, text):
    """Measured (private mount): even '-1' is refused on the root."""
    assert errno_of(h, h.root, name, text) == errno.EINVAL
    assert h.read_file(h.root, name) == f"{UNLIMITED}\n"


@pytest.mark.parametrize("name", ["hugetlb.2MB.max_usage_in_bytes", "hugetlb.2MB.failcnt",
                                  "hugetlb.2MB.rsvd.failcnt", "hugetlb.2MB.rsvd.max_usage_in_bytes"])
@pytest.mark.parametrize("text", ["0", "abc", "\n"])
def test_reset_files_take_anything(h, cg, name, text):
    """Measured on the child and (with '0') on the root."""
    write(h, cg, name, text)
    write(h, h.root, name, text)
    assert h.read_file(cg, name) == "0\n"


@pytest.mark.parametrize("name", ["hugetlb.2MB.usage_in_bytes", "hugetlb.2MB.rsvd.usage_in_bytes",
                                  "hugetlb.2MB.numa_stat"])
def test_read_only_files_refuse_writes(h, cg, name):
    """Measured: EINVAL."""
    assert errno_of(h, cg, name, "0") == errno.EINVAL


def test_child_limit_not_bounded_by_parent_nor_inherited(h, cg):
    """Measured: parent 4m; a new child reads unlimited and takes 8m."""
    write(h, cg, "hugetlb.2MB.limit_in_bytes", "4m")
    g = h.mkdir(cg, "g")
    assert h.read_file(g, "hugetlb.2MB.limit_in_bytes") == f"{UNLIMITED}\n"
    write(h, g, "hugetlb.2MB.limit_in_bytes", "8m")
    assert h.read_file(g, "hugetlb.2MB.limit_in_bytes") == f"{8 << 20}\n"


def test_limit_below_usage_is_ebusy(h, cg):
    """Source: page_counter_set_max refuses a max below usage; a child's
    charge counts in its parent's usage."""
    g = h.mkdir(cg, "g")
    hugetlb.charge(g, MB2, 2)
    assert h.read_file(cg, "hugetlb.2MB.usage_in_bytes") == f"{4 << 20}\n"
    assert errno_of(h, cg, "hugetlb.2MB.limit_in_bytes", "2m") == errno.EBUSY
    write(h, cg, "hugetlb.2MB.limit_in_bytes", "4m")


def test_charge_over_limit_counts_failcnt_and_watermark_resets(h, cg):
    write(h, cg, "hugetlb.2MB.limit_in_bytes", "4m")
    hugetlb.charge(cg, MB2, 2)
    with pytest.raises(KernelError):
        hugetlb.charge(cg, MB2, 1)
    assert h.read_file(cg, "hugetlb.2MB.failcnt") == "1\n"
    hugetlb.charge(cg, MB2, -1)
    assert h.read_file(cg, "hugetlb.2MB.max_usage_in_bytes") == f"{4 << 20}\n"
    write(h, cg, "hugetlb.2MB.max_usage_in_bytes", "0")
    assert h.read_file(cg, "hugetlb.2MB.max_usage_in_bytes") == f"{MB2}\n"
    write(h, cg, "hugetlb.2MB.failcnt", "x")
    assert h.read_file(cg, "hugetlb.2MB.failcnt") == "0\n"


def test_numa_stat_local_and_hierarchical(h, cg):
    """Source: hugetlb_cgroup_read_numa_stat, legacy format, bytes."""
    hugetlb.charge(cg, MB2, 1)
    hugetlb.charge(h.mkdir(cg, "g"), MB2, 2)
    assert h.read_file(cg, "hugetlb.2MB.numa_stat") == (
        f"total={MB2} N0={MB2}\nhierarchical_total={3 * MB2} N0={3 * MB2}\n")


def test_limit_write_stops_at_the_first_nul(h, cg):
    """Kernel buffers are C strings: '4m\\0junk' is '4m'."""
    write(h, cg, "hugetlb.2MB.limit_in_bytes", "4m\0junk")
    assert h.read_file(cg, "hugetlb.2MB.limit_in_bytes") == f"{4 << 20}\n"
