"""cpuset controller model.

Measured on Linux 6.18 (this VM: CPUs 0-1 possible and online, node 0,
NR_CPUS=256, NODES_SHIFT=10) in throwaway children of /sys/fs/cgroup/cpuset:
list syntax (67 strings compared byte for byte with the model parser),
ERANGE/EOVERFLOW/EINVAL, E2BIG past 1636 (cpus) and 6244 (mems) bytes,
EACCES for a child not inside its parent, EBUSY when shrinking under a
child or clearing an exclusive flag a child holds, EINVAL when overlapping
an exclusive sibling, ENOSPC for attaching to an empty cpuset and for
emptying a populated one, clone_children copying (and an exclusive sibling
vetoing the copy), spread flags inherited, relax domain level -1..2.
Root cpus/mems (EACCES) come from update_cpumask()/update_nodemask(): the
real root is never written.
"""

import errno

import pytest

from fakefs.model.controllers.cpuset import bitmap_parselist
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from tests.kernelio import write as w, write_errno as err

HOST = HostFacts(online_cpus=frozenset({0, 1}), nr_cpu_ids=2, online_mems=frozenset({0}), nr_node_ids=1)


def setup(host=HOST):
    procs = StaticProcessTable()
    model = CgroupModel(host=host, processes=procs, hierarchies=["cpuset"])
    return model.hierarchy("cpuset"), procs






def r(h, cg, name):
    return h.read_file(cg, name)


def parent_with(h, cpus="0-1", mems="0"):
    p = h.mkdir(h.root, "p")
    w(h, p, "cpuset.cpus", cpus)
    w(h, p, "cpuset.mems", mems)
    return p


# -- layout and defaults ------------------------------------------------------

def test_root_has_host_sets_and_exclusive_flags():
    h, _ = setup()
    assert r(h, h.root, "cpuset.cpus") == "0-1\n"
    assert r(h, h.root, "cpuset.mems") == "0\n"
    assert r(h, h.root, "cpuset.cpu_exclusive") == "1\n"
    assert r(h, h.root, "cpuset.mem_exclusive") == "1\n"
    assert r(h, h.root, "cpuset.sched_relax_domain_level") == "-1\n"


def test_root_sets_follow_a_larger_host():
    h, _ = setup(HostFacts(online_cpus=frozenset({0, 1, 2, 3, 6}), nr_cpu_ids=8))
    assert r(h, h.root, "cpuset.effective_cpus") == "0-3,6\n"


def test_memory_pressure_enabled_only_on_root():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    assert "cpuset.memory_pressure_enabled" in h.files(h.root)
    assert "cpuset.memory_pressure_enabled" not in h.files(c)


def test_pressure_enabled_write_is_boolean():
    h, _ = setup()
    w(h, h.root, "cpuset.memory_pressure_enabled", "7")
    assert r(h, h.root, "cpuset.memory_pressure_enabled") == "1\n"


def test_file_modes():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    files = h.files(c)
    assert files["cpuset.effective_cpus"].mode == 0o444
    assert files["cpuset.memory_pressure"].mode == 0o444
    assert files["cpuset.cpus"].mode == 0o644
    assert files["cpuset.sched_relax_domain_level"].mode == 0o644


def test_new_child_is_empty():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    assert r(h, c, "cpuset.cpus") == "\n"
    assert r(h, c, "cpuset.mems") == "\n"
    assert r(h, c, "cpuset.cpu_exclusive") == "0\n"
    assert r(h, c, "cpuset.sched_load_balance") == "1\n"


def test_clone_children_copies_parent_masks():
    h, _ = setup()
    p = parent_with(h, "1")
    w(h, p, "cgroup.clone_children", "1")
    c = h.mkdir(p, "c")
    assert r(h, c, "cpuset.cpus") == "1\n"
    assert r(h, c, "cpuset.effective_mems") == "0\n"


def test_clone_children_vetoed_by_exclusive_sibling():
    h, _ = setup()
    p = parent_with(h)
    w(h, p, "cpuset.cpu_exclusive", "1")
    a = h.mkdir(p, "a")
    w(h, a, "cpuset.cpus", "0")
    w(h, a, "cpuset.cpu_exclusive", "1")
    w(h, p, "cgroup.clone_children", "1")
    d = h.mkdir(p, "d")
    assert r(h, d, "cpuset.cpus") == "\n"


def test_clone_children_is_the_new_cgroups_flag():
    """Measured: the grandchild of p (clone 1) under a (clone 0) starts empty."""
    h, _ = setup()
    p = parent_with(h)
    w(h, p, "cgroup.clone_children", "1")
    a = h.mkdir(p, "a")
    w(h, a, "cgroup.clone_children", "0")
    g = h.mkdir(a, "g")
    assert r(h, g, "cpuset.cpus") == "\n"


def test_spread_flags_inherited_others_not():
    h, _ = setup()
    p = parent_with(h)
    w(h, p, "cpuset.memory_spread_page", "1")
    w(h, p, "cpuset.mem_hardwall", "1")
    w(h, p, "cpuset.sched_load_balance", "0")
    c = h.mkdir(p, "c")
    assert r(h, c, "cpuset.memory_spread_page") == "1\n"
    assert r(h, c, "cpuset.memory_spread_slab") == "0\n"
    assert r(h, c, "cpuset.mem_hardwall") == "0\n"
    assert r(h, c, "cpuset.sched_load_balance") == "1\n"


# -- list syntax ----------------------------------------------------------------

@pytest.mark.parametrize("text, bits", [
    ("0-1", {0, 1}), ("0,,1", {0, 1}), (",0", {0}), ("0 1", {0, 1}), ("0\t,1", {0, 1}),
    ("all", {0, 1}), ("ALL", {0, 1}), ("all:1/2", {0}), ("N", {1}), ("0-N", {0, 1}),
    ("0-1:1/2", {0}), ("1-N:1/2", {1}), ("0-1:0/1", set()), ("01", {1}), ("1\v0", {0, 1}),
    ("0\n1", {0}), ("0-1:1/2\n1", {0, 1}), ("0\0junk", {0}),
])
def test_parselist_accepts(text, bits):
    assert bitmap_parselist(text, 2) == bits


@pytest.mark.parametrize("text, code", [
    ("2", errno.ERANGE), ("0-2", errno.ERANGE), ("2-3", errno.ERANGE),
    ("1-0", errno.EINVAL), ("3-2", errno.EINVAL), ("0-1:2/1", errno.EINVAL), ("0-1:1/0", errno.EINVAL),
    ("a", errno.EINVAL), ("0x1", errno.EINVAL), ("+1", errno.EINVAL), ("-1", errno.EINVAL),
    ("N-0", errno.EINVAL), ("0:1/1", errno.EINVAL), ("0-", errno.EINVAL), ("0-1:1", errno.EINVAL),
    ("0-1:1/2x", errno.EINVAL), ("N1", errno.EINVAL),
    ("4294967296", errno.EOVERFLOW), ("0-1:1/4294967296", errno.EOVERFLOW),
    ("4294967295", errno.EINVAL),  # end + 1 wraps the u32 group length to 0
])
def test_parselist_rejects(text, code):
    with pytest.raises(KernelError) as exc:
        bitmap_parselist(text, 2)
    assert exc.value.errno == code


def test_cpus_write_is_strstripped():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    w(h, c, "cpuset.cpus", " 1 \n")
    assert r(h, c, "cpuset.cpus") == "1\n"
    w(h, c, "cpuset.cpus", "0\xa0")
    assert r(h, c, "cpuset.cpus") == "0\n"


def test_blank_write_empties_cpus():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    w(h, c, "cpuset.cpus", "0-1")
    w(h, c, "cpuset.cpus", "\n")
    assert r(h, c, "cpuset.cpus") == "\n"


def test_cpus_out_of_range_is_erange():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    assert err(h, c, "cpuset.cpus", "2") == errno.ERANGE


def test_offline_cpu_is_einval():
    # update_cpumask: not a subset of top_cpuset's active CPUs.
    h, _ = setup(HostFacts(online_cpus=frozenset({0}), nr_cpu_ids=2))
    c = h.mkdir(h.root, "c")
    assert err(h, c, "cpuset.cpus", "1") == errno.EINVAL


def test_mems_parse_to_max_numnodes():
    """Measured: mems 1..1023 EINVAL (no such node), 1024 ERANGE."""
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    assert err(h, c, "cpuset.mems", "1023") == errno.EINVAL
    assert err(h, c, "cpuset.mems", "1024") == errno.ERANGE
    assert err(h, c, "cpuset.mems", "all") == errno.EINVAL


def test_write_size_limits():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    assert w(h, c, "cpuset.cpus", "0" + " " * 1635) == 1636
    assert err(h, c, "cpuset.cpus", "0" + " " * 1636) == errno.E2BIG
    assert w(h, c, "cpuset.mems", "0" + " " * 6243) == 6244
    assert err(h, c, "cpuset.mems", "0" + " " * 6244) == errno.E2BIG


# -- hierarchy rules ------------------------------------------------------------

def test_root_cpus_read_only():
    h, _ = setup()
    assert err(h, h.root, "cpuset.cpus", "0") == errno.EACCES
    assert err(h, h.root, "cpuset.mems", "0") == errno.EACCES


def test_child_must_be_inside_parent():
    h, _ = setup()
    p = h.mkdir(h.root, "p")
    a = h.mkdir(p, "a")
    assert err(h, a, "cpuset.cpus", "0") == errno.EACCES
    assert err(h, a, "cpuset.mems", "0") == errno.EACCES


def test_parent_cannot_shrink_below_child():
    h, _ = setup()
    p = parent_with(h)
    a = h.mkdir(p, "a")
    w(h, a, "cpuset.cpus", "0")
    assert err(h, p, "cpuset.cpus", "1") == errno.EBUSY
    assert r(h, p, "cpuset.cpus") == "0-1\n"


def test_exclusive_needs_exclusive_parent():
    h, _ = setup()
    p = parent_with(h)
    a = h.mkdir(p, "a")
    assert err(h, a, "cpuset.cpu_exclusive", "1") == errno.EACCES
    assert err(h, a, "cpuset.mem_exclusive", "1") == errno.EACCES


def test_exclusive_siblings_may_not_overlap():
    h, _ = setup()
    p = parent_with(h)
    w(h, p, "cpuset.cpu_exclusive", "1")
    a, b = h.mkdir(p, "a"), h.mkdir(p, "b")
    w(h, a, "cpuset.cpus", "0")
    w(h, b, "cpuset.cpus", "0-1")
    assert err(h, a, "cpuset.cpu_exclusive", "1") == errno.EINVAL
    w(h, b, "cpuset.cpus", "1")
    w(h, a, "cpuset.cpu_exclusive", "1")
    assert err(h, b, "cpuset.cpus", "0-1") == errno.EINVAL
    assert err(h, a, "cpuset.cpus", "0-1") == errno.EINVAL


def test_mem_exclusive_siblings_may_not_overlap():
    h, _ = setup()
    p = parent_with(h)
    w(h, p, "cpuset.mem_exclusive", "1")
    a, b = h.mkdir(p, "a"), h.mkdir(p, "b")
    w(h, a, "cpuset.mems", "0")
    w(h, b, "cpuset.mems", "0")
    assert err(h, a, "cpuset.mem_exclusive", "1") == errno.EINVAL
    w(h, b, "cpuset.mems", "\n")
    w(h, a, "cpuset.mem_exclusive", "1")
    assert r(h, a, "cpuset.mem_exclusive") == "1\n"


def test_parent_keeps_exclusive_while_child_has_it():
    h, _ = setup()
    p = parent_with(h)
    w(h, p, "cpuset.cpu_exclusive", "1")
    a = h.mkdir(p, "a")
    w(h, a, "cpuset.cpus", "0")
    w(h, a, "cpuset.cpu_exclusive", "1")
    assert err(h, p, "cpuset.cpu_exclusive", "0") == errno.EBUSY


def test_flag_write_is_kstrtoull_unstripped():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    w(h, c, "cpuset.memory_migrate", "5")
    assert r(h, c, "cpuset.memory_migrate") == "1\n"
    assert err(h, c, "cpuset.memory_migrate", " 1") == errno.EINVAL
    assert err(h, c, "cpuset.memory_migrate", "-1") == errno.EINVAL


@pytest.mark.parametrize("value, ok", [("-2", False), ("-1", True), ("0", True), ("2", True),
                                       ("3", False), ("5", False), ("0x2", True), (" 1", False)])
def test_relax_domain_level_range(value, ok):
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    if ok:
        w(h, c, "cpuset.sched_relax_domain_level", value)
        assert r(h, c, "cpuset.sched_relax_domain_level") == f"{int(value, 0)}\n"
    else:
        assert err(h, c, "cpuset.sched_relax_domain_level", value) == errno.EINVAL


def test_memory_pressure_is_read_only():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    assert r(h, c, "cpuset.memory_pressure") == "0\n"
    assert err(h, c, "cpuset.memory_pressure", "0") == errno.EINVAL


# -- tasks ----------------------------------------------------------------------

def test_attach_to_empty_cpuset_is_enospc():
    h, procs = setup()
    procs.spawn(100)
    c = h.mkdir(h.root, "c")
    assert err(h, c, "cgroup.procs", "100") == errno.ENOSPC
    w(h, c, "cpuset.cpus", "1")
    assert err(h, c, "cgroup.procs", "100") == errno.ENOSPC  # mems still empty
    w(h, c, "cpuset.mems", "0")
    w(h, c, "cgroup.procs", "100")
    assert r(h, c, "cgroup.procs") == "100\n"


def test_populated_cpuset_cannot_be_emptied():
    h, procs = setup()
    procs.spawn(100)
    c = parent_with(h, "1")
    w(h, c, "cgroup.procs", "100")
    assert err(h, c, "cpuset.cpus", "\n") == errno.ENOSPC
    assert err(h, c, "cpuset.mems", "\n") == errno.ENOSPC
    w(h, c, "cpuset.cpus", "0")  # changing to another non-empty set is fine
    assert r(h, c, "cpuset.effective_cpus") == "0\n"


def test_emptied_after_tasks_leave():
    h, procs = setup()
    procs.spawn(100)
    c = parent_with(h, "1")
    w(h, c, "cgroup.procs", "100")
    w(h, h.root, "cgroup.procs", "100")
    w(h, c, "cpuset.cpus", "\n")
    assert r(h, c, "cpuset.cpus") == "\n"
