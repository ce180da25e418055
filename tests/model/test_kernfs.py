"""kernfs's readdir order, as measured on this machine's cgroupfs (Linux
6.18, x86_64): the root of the cpuacct hierarchy listed with os.listdir."""

from fakefs.model.kernfs import kernfs_name_hash, kernfs_order

MEASURED_CPUACCT_ROOT = [
    "cgroup.procs", "cgroup.sane_behavior", "cpuacct.usage_percpu_sys", "cpuacct.usage_percpu", "cpuacct.stat",
    "cpuacct.usage", "tasks", "cpuacct.usage_sys", "cpuacct.usage_all", "cpuacct.usage_percpu_user",
    "notify_on_release", "release_agent", "cgroup.clone_children", "cpuacct.usage_user",
]


def test_order_is_the_kernels():
    assert kernfs_order(sorted(MEASURED_CPUACCT_ROOT)) == MEASURED_CPUACCT_ROOT


def test_hash_range():
    # 0, 1 and INT_MAX are kept for the magic entries ("." and "..", the end).
    for name in ["", "a", "tasks", "x" * 300, "\udcff"]:
        assert 2 <= kernfs_name_hash(name) < 0x7FFFFFFF
