"""cpuacct controller model.

Measured on Linux 6.18 in a throwaway child of /sys/fs/cgroup/cpuacct:
the child file set, modes and zero contents (real_inventory.json), the
cpuacct.usage write grammar ("0", "0\\n", "00", "0x0", "+0" and "0\\0x"
reset; "1", "-0", " 0", "0 ", "0\\n\\n", "0x" EINVAL; 2**64 ERANGE), and
EINVAL for writes to the read-only files. The root's reset being a no-op
and usage vs user/sys coming from different counters are from
kernel/sched/cpuacct.c (the real root shows usage != user + sys).
"""

import errno

import pytest

from fakefs.model.controllers.cpuacct import CPUACCT, nsec_to_clock_t
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from tests.kernelio import write as w

HOST = HostFacts(online_cpus=frozenset({0, 1}), nr_cpu_ids=2)


def setup(host=HOST):
    model = CgroupModel(host=host, processes=StaticProcessTable(), hierarchies=["cpuacct"])
    return model.hierarchy("cpuacct")




def r(h, cg, name):
    return h.read_file(cg, name)


def test_new_child_reads_zero():
    h = setup()
    c = h.mkdir(h.root, "c")
    assert r(h, c, "cpuacct.usage") == "0\n"
    assert r(h, c, "cpuacct.usage_percpu") == "0 0 \n"
    assert r(h, c, "cpuacct.usage_all") == "cpu user system\n0 0 0\n1 0 0\n"
    assert r(h, c, "cpuacct.stat") == "user 0\nsystem 0\n"


def test_one_column_per_possible_cpu():
    h = setup(HostFacts(online_cpus=frozenset({0}), nr_cpu_ids=4))
    assert r(h, h.root, "cpuacct.usage_percpu_user") == "0 0 0 0 \n"
    assert r(h, h.root, "cpuacct.usage_all").count("\n") == 5


def test_modes():
    h = setup()
    files = h.files(h.root)
    assert files["cpuacct.usage"].mode == 0o644
    assert all(f.mode == 0o444 for n, f in files.items() if n.startswith("cpuacct.") and n != "cpuacct.usage")


def test_charge_goes_to_all_ancestors():
    h = setup()
    p = h.mkdir(h.root, "p")
    c = h.mkdir(p, "c")
    CPUACCT.charge(c, 1, user_ns=300, system_ns=200)
    for cg in (c, p, h.root):
        assert r(h, cg, "cpuacct.usage_percpu") == "0 500 \n"
        assert r(h, cg, "cpuacct.usage_user") == "300\n"
        assert r(h, cg, "cpuacct.usage_sys") == "200\n"


def test_sibling_not_charged():
    h = setup()
    a, b = h.mkdir(h.root, "a"), h.mkdir(h.root, "b")
    CPUACCT.charge(a, 0, user_ns=10)
    assert r(h, b, "cpuacct.usage") == "0\n"


def test_parent_keeps_time_of_removed_child():
    h = setup()
    p = h.mkdir(h.root, "p")
    c = h.mkdir(p, "c")
    CPUACCT.charge(c, 0, system_ns=7)
    h.rmdir(c)
    assert r(h, p, "cpuacct.usage_sys") == "7\n"


def test_usage_is_runtime_not_user_plus_sys():
    h = setup()
    c = h.mkdir(h.root, "c")
    CPUACCT.charge(c, 0, user_ns=10, system_ns=20, runtime_ns=45)
    assert r(h, c, "cpuacct.usage") == "45\n"
    assert r(h, c, "cpuacct.usage_all") == "cpu user system\n0 10 20\n1 0 0\n"
    assert r(h, c, "cpuacct.usage_percpu_sys") == "20 0 \n"


def test_stat_in_user_hz():
    h = setup()
    c = h.mkdir(h.root, "c")
    CPUACCT.charge(c, 0, user_ns=1_234_567_890)
    CPUACCT.charge(c, 1, system_ns=20_000_000 - 1)
    assert r(h, c, "cpuacct.stat") == "user 123\nsystem 1\n"


def test_nsec_to_clock_t_other_hz():
    assert nsec_to_clock_t(1_000_000_000, 100) == 100
    assert nsec_to_clock_t(1_000_000_000, 1024) == 1024
    assert nsec_to_clock_t(3_000_000_000, 300) == 900


@pytest.mark.parametrize("text", ["0", "0\n", "00", "0x0", "+0", "0\0x"])
def test_reset_spellings(text):
    h = setup()
    c = h.mkdir(h.root, "c")
    CPUACCT.charge(c, 0, user_ns=50_000_000, system_ns=5)
    w(h, c, "cpuacct.usage", text)
    assert r(h, c, "cpuacct.usage") == "0\n"
    assert r(h, c, "cpuacct.stat") == "user 0\nsystem 0\n"


@pytest.mark.parametrize("text, code", [("1", errno.EINVAL), ("-0", errno.EINVAL), (" 0", errno.EINVAL),
                                        ("0 ", errno.EINVAL), ("0\n\n", errno.EINVAL), ("0x", errno.EINVAL),
                                        ("18446744073709551616", errno.ERANGE)])
def test_reset_rejects(text, code):
    h = setup()
    c = h.mkdir(h.root, "c")
    CPUACCT.charge(c, 0, user_ns=5)
    with pytest.raises(KernelError) as exc:
        w(h, c, "cpuacct.usage", text)
    assert exc.value.errno == code
    assert r(h, c, "cpuacct.usage") == "5\n"


def test_reset_leaves_parent_alone():
    h = setup()
    c = h.mkdir(h.root, "c")
    CPUACCT.charge(c, 0, user_ns=5)
    w(h, c, "cpuacct.usage", "0")
    assert r(h, h.root, "cpuacct.usage") == "5\n"


def test_root_reset_accepted_but_ignored():
    h = setup()
    CPUACCT.charge(h.root, 1, user_ns=9)
    assert w(h, h.root, "cpuacct.usage", "0") == 1
    assert r(h, h.root, "cpuacct.usage") == "9\n"


@pytest.mark.parametrize("name", ["cpuacct.usage_percpu", "cpuacct.usage_sys", "cpuacct.stat"])
def test_read_only_files_refuse_writes(name):
    h = setup()
    c = h.mkdir(h.root, "c")
    with pytest.raises(KernelError) as exc:
        w(h, c, name, "0")
    assert exc.value.errno == errno.EINVAL
