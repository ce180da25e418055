"""A fake subtree's top (top_is_root=False) stands for a real child cgroup:
non-root files and rules, membership only by attach or fork, and settings
seeded from the real cgroup's files; fork/exit events keep membership as the
kernel's cgroup_post_fork does."""

import errno

import pytest

from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.subtree import seed_names, seed_top
from fakefs.model.tree import CgroupModel

HOST = HostFacts(online_cpus=frozenset({0, 1}), nr_cpu_ids=2)
SPECS = ["cpu", "cpuset", "memory", "pids", "devices", "freezer", "name=systemd"]


def model(top_is_root: bool):
    procs = StaticProcessTable()
    procs.spawn(100)
    procs.spawn(200, threads=2)
    return CgroupModel(host=HOST, processes=procs, hierarchies=SPECS, top_is_root=top_is_root), procs


def test_top_follows_non_root_rules():
    m, _ = model(top_is_root=False)
    pids, mem, cpu = m.hierarchy("pids"), m.hierarchy("memory"), m.hierarchy("cpu")
    top = pids.root
    assert not top.is_root and top.is_top
    # Files a child has and the root lacks (and the reverse).
    assert "pids.max" in pids.files(top) and "release_agent" not in pids.files(top)
    assert "cgroup.sane_behavior" not in pids.files(top)
    pids.write_file(top, "pids.max", b"64\n")
    assert pids.read_file(top, "pids.max") == "64\n"
    # Limits the kernel refuses on the root are accepted on a child.
    mem.write_file(mem.root, "memory.limit_in_bytes", b"1048576\n")
    assert mem.read_file(mem.root, "memory.limit_in_bytes") == "1048576\n"
    cpu.write_file(cpu.root, "cpu.shares", b"512\n")
    cpu.write_file(cpu.root, "cpu.cfs_quota_us", b"50000\n")
    assert cpu.read_file(cpu.root, "cpu.cfs_quota_us") == "50000\n"
    # The mount point itself still cannot go away.
    with pytest.raises(KernelError) as exc:
        pids.rmdir(top)
    assert exc.value.errno == errno.EBUSY
    with pytest.raises(KernelError) as exc:
        pids.rename(top, top, "x")
    assert exc.value.errno == errno.EBUSY


def test_root_top_keeps_root_rules():
    m, _ = model(top_is_root=True)
    pids, mem = m.hierarchy("pids"), m.hierarchy("memory")
    assert pids.root.is_root and "pids.max" not in pids.files(pids.root)
    with pytest.raises(KernelError) as exc:
        mem.write_file(mem.root, "memory.limit_in_bytes", b"1048576\n")
    assert exc.value.errno == errno.EINVAL
    # The root lists every process; a subtree's top lists only its members.
    assert pids.read_file(pids.root, "cgroup.procs") == "100\n200\n"


def test_top_membership_is_only_what_was_attached():
    m, _ = model(top_is_root=False)
    pids = m.hierarchy("pids")
    assert pids.read_file(pids.root, "cgroup.procs") == ""
    pids.write_file(pids.root, "cgroup.procs", b"200")
    assert pids.read_file(pids.root, "cgroup.procs") == "200\n"
    assert pids.read_file(pids.root, "tasks") == "200\n200001\n"
    child = pids.mkdir(pids.root, "ctr")
    pids.write_file(child, "cgroup.procs", b"200")
    assert pids.read_file(pids.root, "cgroup.procs") == ""
    assert pids.read_file(child, "cgroup.procs") == "200\n"


def test_fork_inherits_and_exit_forgets():
    m, procs = model(top_is_root=False)
    pids, cpu = m.hierarchy("pids"), m.hierarchy("cpu")
    ctr = pids.mkdir(pids.root, "ctr")
    cpu_ctr = cpu.mkdir(cpu.root, "ctr")
    pids.write_file(ctr, "cgroup.procs", b"100")
    cpu.write_file(cpu_ctr, "cgroup.procs", b"100")
    procs.spawn(300)
    m.forked(100, 300)
    assert pids.read_file(ctr, "cgroup.procs") == "100\n300\n"
    assert cpu.read_file(cpu_ctr, "cgroup.procs") == "100\n300\n"
    # A fork by an unplaced task leaves the child outside (and drops a
    # stale entry of a reused tid).
    procs.spawn(400)
    m.forked(200, 400)
    assert "400" not in pids.read_file(ctr, "cgroup.procs")
    m.forked(200, 300)
    assert pids.read_file(ctr, "cgroup.procs") == "100\n"
    m.exited(100)
    assert 100 not in pids.placed and 100 not in cpu.placed


def test_attach_hook_sees_the_attached_tids():
    m, _ = model(top_is_root=False)
    seen = []
    m.on_attach = seen.append
    pids = m.hierarchy("pids")
    pids.write_file(pids.mkdir(pids.root, "a"), "cgroup.procs", b"200")
    assert seen == [[200, 200001]]


def test_seed_replays_a_fresh_real_child():
    """What a fresh child of this machine's roots reads (measured: empty
    cpuset, rt_runtime 0, unlimited memory, max pids, allow-all devices)."""
    m, _ = model(top_is_root=False)
    real = {
        "cpuset": {"cpuset.cpus": "\n", "cpuset.mems": "\n", "cpuset.cpu_exclusive": "0\n",
                   "cpuset.mem_exclusive": "0\n", "cpuset.sched_load_balance": "1\n"},
        "cpu": {"cpu.shares": "1024\n", "cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "-1\n",
                "cpu.rt_runtime_us": "0\n"},
        "memory": {"memory.limit_in_bytes": "9223372036854771712\n", "memory.swappiness": "60\n"},
        "pids": {"pids.max": "max\n"},
        "devices": {"devices.list": "a *:* rwm\n"},
    }
    for key, values in real.items():
        h = m.hierarchy(key)
        seed_top(h, values)
        for name, content in values.items():
            assert h.read_file(h.root, name) == content, name


def test_seed_a_configured_parent():
    m, _ = model(top_is_root=False)
    cpuset, mem, dev, cpu = (m.hierarchy(k) for k in ("cpuset", "memory", "devices", "cpu"))
    seed_top(cpuset, {"cpuset.cpus": "1\n", "cpuset.mems": "0\n"})
    assert cpuset.read_file(cpuset.root, "cpuset.cpus") == "1\n"
    # A child may not exceed the seeded parent, as below a real one.
    child = cpuset.mkdir(cpuset.root, "c")
    with pytest.raises(KernelError) as exc:
        cpuset.write_file(child, "cpuset.cpus", b"0-1")
    assert exc.value.errno == errno.EACCES
    seed_top(mem, {"memory.limit_in_bytes": "1073741824\n", "memory.soft_limit_in_bytes": "536870912\n"})
    assert mem.read_file(mem.root, "memory.limit_in_bytes") == "1073741824\n"
    seed_top(dev, {"devices.list": "c 1:3 rwm\nc 136:* rw\n"})
    assert dev.read_file(dev.root, "devices.list") == "c 1:3 rwm\nc 136:* rw\n"
    seed_top(cpu, {"cpu.cfs_quota_us": "150000\n"})
    cc = cpu.mkdir(cpu.root, "c")
    with pytest.raises(KernelError):  # above the seeded parent's bandwidth
        cpu.write_file(cc, "cpu.cfs_quota_us", b"200000")
    # Files the model refuses are named in the error.
    with pytest.raises(KernelError, match="pids.max"):
        seed_top(m.hierarchy("pids"), {"pids.max": "lots\n"})


def test_seed_names_are_settings_in_order():
    m, _ = model(top_is_root=False)
    names = seed_names(m.hierarchy("memory"))
    assert names.index("memory.limit_in_bytes") < names.index("memory.soft_limit_in_bytes")
    assert "memory.usage_in_bytes" not in names and "cgroup.procs" not in names
    cpu = seed_names(m.hierarchy("cpu"))
    assert cpu.index("cpu.cfs_period_us") < cpu.index("cpu.cfs_quota_us") < cpu.index("cpu.idle")
