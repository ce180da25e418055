"""Hierarchy rules: scripted sequences of operations (mkdir, rmdir, rename,
writes that depend on a parent or a child, attaching a sleeper process),
played on the kernel and on the candidate; every step must give the same
outcome. A failure lists each differing step with both outcomes.

Paths are relative to the base cgroup ("" is the base, a throwaway child
of the real root). Sleepers are named S1...; ``{S1}`` in a write is its pid
and reads show it as ``<S1>``.
"""

from __future__ import annotations

import os

import pytest

from fakefs.model.kparse import format_cpulist

from .surfaces import CONTROLLERS, compare, machine_host_facts

pytestmark = pytest.mark.kernel

HOST = machine_host_facts()
ALL_CPUS = format_cpulist(HOST.online_cpus)
ALL_MEMS = format_cpulist(HOST.online_mems)
FIRST_CPU = str(min(HOST.online_cpus))
LAST_CPU = str(max(HOST.online_cpus))
NON_MEMORY = [c for c in CONTROLLERS if c != "memory"]  # never attach on the real memory hierarchy


def play(pair, label: str, steps: list[tuple]) -> None:
    kernel, cand = pair
    diff = compare(label, kernel.run(steps), cand.run(steps), kernel.label, cand.label)
    assert not diff, f"{len(diff)} of {len(steps)} steps differ:\n" + "\n".join(diff)


def read_all(*rels: str) -> list[tuple]:
    return [("read", r) for r in rels]


# -- names, directories, files (any hierarchy: cgroup_mkdir, kernfs, VFS) ----

@pytest.mark.parametrize("controller", ["name=systemd", "cpu"])
def test_mkdir_names(controller, pair):
    play(pair, f"{controller} mkdir", [
        ("mkdir", "a\nb"),           # cgroup_mkdir: a newline would corrupt /proc/PID/cgroup
        ("mkdir", "a"),
        ("mkdir", "a"),              # EEXIST
        ("mkdir", "cgroup.procs"),   # the name of a control file: EEXIST
        ("mkdir", " space "),
        ("mkdir", "missing/x"),      # ENOENT
        ("mkdir", "cgroup.procs/x"), # ENOTDIR
        ("list", ""),
        ("rmdir", " space "), ("rmdir", "a"),
        ("mkdir", "n" * 255),
        ("mkdir", "m" * 256),        # kernfs has no NAME_MAX check: only PATH_MAX limits
        ("mkdir", "l" * 1000),
        ("rmdir", "n" * 255), ("rmdir", "m" * 256), ("rmdir", "l" * 1000),
        ("list", ""),
        # Names are bytes: not UTF-8 is fine, a newline is not.
        *[("mkdir", os.fsdecode(n)) for n in (b"\xff", b"a\xc3", b"\xed\xa0\x80", b"\x01", b"x\n\xff")],
        ("list", ""),
        ("rename", os.fsdecode(b"\xff"), os.fsdecode(b"\xfe")),
        ("read", os.fsdecode(b"\xfe") + "/notify_on_release"),
        *[("rmdir", os.fsdecode(n)) for n in (b"\xfe", b"a\xc3", b"\xed\xa0\x80", b"\x01")],
        ("list", ""),
    ])


@pytest.mark.parametrize("controller", ["name=systemd", "cpu"])
def test_rmdir_rules(controller, pair):
    play(pair, f"{controller} rmdir", [
        ("mkdir", "a"), ("mkdir", "a/b"),
        ("rmdir", "a"),               # cgroup_destroy_locked: has children, EBUSY
        ("rmdir", "a/cgroup.procs"),  # not a directory
        ("rmdir", "nothere"),
        ("rmdir", "a/b"),
        ("rmdir", "a"),
        ("list", ""),
    ])


@pytest.mark.parametrize("controller", ["name=systemd", "memory"])
def test_no_file_creation_or_removal(controller, pair):
    play(pair, f"{controller} create/unlink", [
        ("create", "newfile"),        # kernfs has no ->create: EACCES
        ("create", "cgroup.procs"),   # O_CREAT on an existing file opens it
        ("mkdir", "g"),
        ("create", "g"),              # a directory: EISDIR
        ("unlink", "cgroup.procs"),   # kernfs has no ->unlink: EPERM
        ("unlink", "nothere"),
        ("unlink", "g"),              # EISDIR
        *read_all("newfile", "cgroup.procs"),
        ("list", ""),
    ])


@pytest.mark.parametrize("controller", ["name=systemd", "pids"])
def test_rename(controller, pair):
    play(pair, f"{controller} rename", [
        ("mkdir", "a"), ("mkdir", "b"),
        ("rename", "a", "a2"),               # cgroup1_rename: same parent only
        ("list", ""),
        ("rename", "a2", "b"),               # onto an existing cgroup: EEXIST
        ("rename", "a2", "b/a2"),            # across parents: EIO
        ("rename", "cgroup.procs", "procs"), # not a directory: ENOTDIR
        ("rename", "a2", "tasks"),           # a directory over a file: ENOTDIR (VFS)
        ("rename", "nothere", "x"),
        ("rename", "a2", "x\ny"),
        ("rename", "a2", "a2"),
        ("list", ""),
    ])


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_core_flags_inherited(controller, pair):
    """cgroup1 copies notify_on_release and clone_children to a new child
    (cgroup_create); cpuset's clone_children also copies cpus and mems."""
    play(pair, f"{controller} inherit", [
        ("write", "notify_on_release", "1"), ("write", "cgroup.clone_children", "1"),
        ("mkdir", "c"),
        *read_all("c/notify_on_release", "c/cgroup.clone_children"),
        ("write", "c/notify_on_release", "0"), ("mkdir", "c/d"),
        *read_all("c/d/notify_on_release", "c/d/cgroup.clone_children"),
    ])


# -- cpu -------------------------------------------------------------------

@pytest.mark.parametrize("controller", ["cpu"])
def test_cpu_quota_parent_child(controller, pair):
    """tg_cfs_schedulable_down: in v1 a child's quota/period ratio may not
    exceed its nearest limited ancestor's, checked on every write."""
    play(pair, "cpu quota", [
        ("write", "cpu.cfs_quota_us", "50000"),
        ("mkdir", "c"),
        ("write", "c/cpu.cfs_quota_us", "60000"),   # 0.6 > 0.5: EINVAL
        ("write", "c/cpu.cfs_quota_us", "40000"),
        ("write", "cpu.cfs_quota_us", "30000"),     # below the child's: EINVAL
        ("write", "c/cpu.cfs_period_us", "50000"),  # 0.8 > 0.5: EINVAL
        ("write", "c/cpu.cfs_period_us", "200000"),
        ("write", "cpu.cfs_quota_us", "-1"),
        ("write", "c/cpu.cfs_quota_us", "300000"),
        ("write", "cpu.cfs_quota_us", "100000"),    # child at 1.5: EINVAL
        ("write", "c/cpu.cfs_burst_us", "300000"),
        ("write", "c/cpu.cfs_burst_us", "300001"),  # above quota: EINVAL
        *read_all("cpu.cfs_quota_us", "c/cpu.cfs_quota_us", "c/cpu.cfs_period_us", "c/cpu.cfs_burst_us"),
        ("write", "c/cpu.rt_runtime_us", "1000"),   # parent has no rt bandwidth: EINVAL
        ("write", "c/cpu.idle", "1"),
        ("write", "c/cpu.shares", "100"),           # idle group: EINVAL
        *read_all("c/cpu.shares", "c/cpu.idle"),
    ])


# -- cpuset ------------------------------------------------------------------

@pytest.mark.parametrize("controller", ["cpuset"])
def test_cpuset_subset_rules(controller, pair):
    """validate_change (v1): a cpuset's cpus/mems stay within its parent's
    and a parent cannot shrink below a child; exclusive needs an exclusive
    parent."""
    play(pair, "cpuset subset", [
        ("mkdir", "c"),
        ("write", "c/cpuset.cpus", FIRST_CPU),     # parent (base) has none yet: EINVAL
        ("write", "cpuset.cpus", ALL_CPUS), ("write", "cpuset.mems", ALL_MEMS),
        ("write", "c/cpuset.cpus", ALL_CPUS),
        ("write", "cpuset.cpus", FIRST_CPU),       # child still has more: EBUSY
        ("write", "c/cpuset.cpus", LAST_CPU),
        ("write", "cpuset.cpus", FIRST_CPU),
        ("write", "c/cpuset.cpus", ""),
        ("write", "cpuset.cpus", FIRST_CPU),
        ("write", "c/cpuset.mems", ALL_MEMS),
        ("write", "c/cpuset.mems", "1"),
        ("write", "c/cpuset.cpu_exclusive", "1"),  # parent not exclusive: EACCES
        ("write", "c/cpuset.mem_exclusive", "1"),
        *read_all("cpuset.cpus", "cpuset.effective_cpus", "c/cpuset.cpus", "c/cpuset.effective_cpus",
                  "c/cpuset.mems", "c/cpuset.effective_mems", "c/cpuset.cpu_exclusive"),
    ])


@pytest.mark.parametrize("controller", ["cpuset"])
def test_cpuset_clone_children(controller, pair):
    """cpuset_css_online: with clone_children set, a new child copies its
    parent's cpus and mems (v1 only)."""
    play(pair, "cpuset clone_children", [
        ("write", "cpuset.cpus", ALL_CPUS), ("write", "cpuset.mems", ALL_MEMS),
        ("mkdir", "plain"),
        ("write", "cgroup.clone_children", "1"),
        ("mkdir", "cloned"),
        *read_all("plain/cpuset.cpus", "plain/cpuset.mems", "cloned/cpuset.cpus", "cloned/cpuset.mems",
                  "cloned/cpuset.effective_cpus", "cloned/cgroup.clone_children"),
    ])


@pytest.mark.parametrize("controller", ["cpuset"])
def test_cpuset_attach_needs_cpus_and_mems(controller, pair):
    """cpuset_can_attach: an empty cpuset takes no tasks (ENOSPC); a
    populated one cannot be emptied (validate_change, ENOSPC)."""
    play(pair, "cpuset attach", [
        ("write", "cpuset.cpus", ALL_CPUS), ("write", "cpuset.mems", ALL_MEMS),
        ("mkdir", "c"),
        ("write", "c/cgroup.procs", "{S1}"),       # no cpus, no mems
        ("write", "c/cpuset.cpus", ALL_CPUS),
        ("write", "c/cgroup.procs", "{S1}"),       # still no mems
        ("write", "c/cpuset.mems", ALL_MEMS),
        ("write", "c/cgroup.procs", "{S1}"),
        *read_all("c/cgroup.procs", "c/tasks"),
        ("write", "c/cpuset.cpus", ""),            # populated: ENOSPC
        ("write", "c/cpuset.mems", ""),
        ("rmdir", "c"),                            # populated: EBUSY
        ("kill", "S1"),
        *read_all("c/cgroup.procs"),
        ("rmdir", "c"),
    ])


# -- memory (no attaching on the real memory hierarchy) ---------------------

@pytest.mark.parametrize("controller", ["memory"])
def test_memory_limit_vs_memsw(controller, pair):
    """mem_cgroup_resize_max: memsw.limit must stay >= limit (EINVAL)."""
    play(pair, "memory memsw", [
        ("write", "memory.limit_in_bytes", "64M"),
        ("write", "memory.memsw.limit_in_bytes", "32M"),   # below limit: EINVAL
        ("write", "memory.memsw.limit_in_bytes", "128M"),
        ("write", "memory.limit_in_bytes", "256M"),        # above memsw: EINVAL
        ("write", "memory.limit_in_bytes", "128M"),
        ("write", "memory.limit_in_bytes", "100001"),      # page rounding
        ("write", "memory.memsw.limit_in_bytes", "-1"),
        ("write", "memory.limit_in_bytes", "-1"),
        *read_all("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
        ("mkdir", "c"),
        ("write", "memory.limit_in_bytes", "64M"),
        ("write", "c/memory.limit_in_bytes", "1G"),        # v1: a child may exceed its parent
        ("write", "c/memory.use_hierarchy", "0"),          # deprecated, only 1 is accepted now
        ("write", "memory.use_hierarchy", "0"),            # has children
        *read_all("c/memory.limit_in_bytes", "c/memory.use_hierarchy", "memory.use_hierarchy"),
    ])


# -- devices -----------------------------------------------------------------

@pytest.mark.parametrize("controller", ["devices"])
def test_devices_parent_child(controller, pair):
    """devcgroup_update_access: a child may only allow what its parent
    allows (EPERM); a new child copies its parent's list; a parent's deny
    propagates down (propagate_exception)."""
    play(pair, "devices", [
        ("mkdir", "early"),
        ("write", "devices.deny", "a"),
        ("mkdir", "late"),
        *read_all("devices.list", "early/devices.list", "late/devices.list"),
        ("write", "late/devices.allow", "c 1:3 rwm"),   # parent denies: EPERM
        ("write", "devices.allow", "c 1:3 rwm"),
        ("write", "devices.allow", "b 8:* r"),
        ("write", "late/devices.allow", "c 1:3 rw"),
        ("write", "late/devices.allow", "b 8:0 r"),
        ("write", "late/devices.allow", "b 8:0 w"),     # not in parent: EPERM
        *read_all("devices.list", "late/devices.list"),
        ("write", "devices.deny", "c 1:3 w"),
        *read_all("devices.list", "late/devices.list", "early/devices.list"),
        ("write", "late/devices.allow", "a"),           # EPERM
        ("write", "early/devices.allow", "a"),
        *read_all("early/devices.list"),
    ])


# -- freezer (no tasks: an empty group freezes at once) ---------------------

@pytest.mark.parametrize("controller", ["freezer"])
def test_freezer_parent_child(controller, pair):
    play(pair, "freezer", [
        ("mkdir", "c"),
        ("write", "freezer.state", "FROZEN"),
        ("mkdir", "d"),   # freezer_css_online: a child of a frozen parent starts frozen
        *read_all("freezer.state", "freezer.self_freezing", "c/freezer.state", "c/freezer.parent_freezing",
                  "c/freezer.self_freezing", "d/freezer.state"),
        ("write", "c/freezer.state", "THAWED"),   # still frozen through the parent
        *read_all("c/freezer.state"),
        ("write", "freezer.state", "THAWED"),
        *read_all("freezer.state", "c/freezer.state", "c/freezer.parent_freezing", "d/freezer.state"),
    ])


# -- pids ----------------------------------------------------------------------

@pytest.mark.parametrize("controller", ["pids"])
def test_pids_max_and_attach(controller, pair):
    """pids_max_write: "max" or 0..PID_MAX_LIMIT; attaching charges without
    checking the limit (pids_can_attach), forking does not happen here."""
    play(pair, "pids", [
        ("write", "pids.max", "5"),
        ("mkdir", "c"),
        ("write", "c/pids.max", "10"),
        ("write", "c/pids.max", "-1"),
        ("write", "c/pids.max", "0"),
        ("write", "c/cgroup.procs", "{S1}"),
        *read_all("c/pids.max", "c/pids.current", "pids.current", "c/pids.events", "c/cgroup.procs"),
        ("rmdir", "c"),
        ("kill", "S1"),
        *read_all("c/pids.current", "pids.current"),
        ("write", "c/pids.max", "max"),
        *read_all("c/pids.max"),
        ("rmdir", "c"),
    ])


# -- attaching, any hierarchy but memory ---------------------------------------

@pytest.mark.parametrize("controller", NON_MEMORY)
def test_attach_and_move(controller, pair):
    """A sleeper moves into a child, then into a grandchild by tid; a
    populated cgroup cannot be removed."""
    setup = []
    if controller == "cpuset":
        setup = [("write", f"{d}cpuset.{k}", v) for d in ("", "c/", "c/d/")
                 for k, v in (("cpus", ALL_CPUS), ("mems", ALL_MEMS))]
    steps = [("mkdir", "c"), ("mkdir", "c/d")] + setup + [
        ("write", "c/cgroup.procs", "{S1}"),
        *read_all("c/cgroup.procs", "c/tasks", "c/d/cgroup.procs"),
        ("rmdir", "c/d"), ("mkdir", "c/d"),
        ("write", "c/d/tasks", "{S1}"),
        *read_all("c/cgroup.procs", "c/d/tasks"),
        ("rmdir", "c/d"),
        ("kill", "S1"),
        *read_all("c/d/cgroup.procs"),
        ("rmdir", "c/d"), ("rmdir", "c"),
    ]
    play(pair, f"{controller} attach", steps)
