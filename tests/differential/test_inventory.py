"""Inventory: the same files, with the same modes and the same contents,
in a fresh child and grandchild cgroup, kernel vs candidate."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from .surfaces import CONTROLLERS, hier_dir

pytestmark = pytest.mark.kernel

INVENTORY = json.loads((Path(__file__).parent.parent / "model" / "real_inventory.json").read_text())

# Files this VM's kernel (6.18.44-fc, a vendor build) has and mainline does
# not: they are not part of the contract fakefs reproduces.
VENDOR_EXTRAS: dict[str, set[str]] = {
    # Not in mainline mm/memcontrol-v1.c (mem_cgroup_legacy_files).
    "memory": {"memory.shown_ram_in_bytes"},
}

# Live or statistical files: their numbers depend on what ran, even in a
# fresh cgroup on a busy machine, so only their format (the keys and the
# line structure, numbers replaced by N) must match.
LIVE_FORMAT_ONLY: set[str] = {
    # cpu: CFS throttling counters (cpu_cfs_stat_show, cpu_cfs_local_stat_show)
    "cpu.stat", "cpu.stat.local",
    # cpuacct: accumulated cpu time (cpuacct_stats_show, cpuusage_read...)
    "cpuacct.stat", "cpuacct.usage", "cpuacct.usage_all", "cpuacct.usage_percpu",
    "cpuacct.usage_percpu_sys", "cpuacct.usage_percpu_user", "cpuacct.usage_sys", "cpuacct.usage_user",
    # cpuset: decaying page-reclaim rate (fmeter_getrate)
    "cpuset.memory_pressure",
    # memory: page counters and event counts (mem_cgroup_read_u64, memcg1_stat_format)
    "memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.failcnt",
    "memory.memsw.usage_in_bytes", "memory.memsw.max_usage_in_bytes", "memory.memsw.failcnt",
    "memory.kmem.usage_in_bytes", "memory.kmem.max_usage_in_bytes", "memory.kmem.failcnt",
    "memory.kmem.tcp.usage_in_bytes", "memory.kmem.tcp.max_usage_in_bytes", "memory.kmem.tcp.failcnt",
    "memory.stat", "memory.numa_stat", "memory.kmem.slabinfo", "memory.oom_control",
    # blkio: I/O accounting (blkg_print_stat_*)
    "blkio.bfq.io_service_bytes", "blkio.bfq.io_service_bytes_recursive", "blkio.bfq.io_serviced",
    "blkio.bfq.io_serviced_recursive", "blkio.throttle.io_service_bytes",
    "blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced",
    "blkio.throttle.io_serviced_recursive",
    # pids: charged tasks and fork failures (pids_current_read, pids_events_show)
    "pids.current", "pids.peak", "pids.events",
}


def shape(text: str) -> str:
    """The format of a statistical file: every number becomes N."""
    return re.sub(r"-?\d+", "N", text)


def without_extras(controller: str, entries: dict[str, int]) -> dict[str, int]:
    extras = VENDOR_EXTRAS.get(hier_dir(controller), set())
    return {n: m for n, m in entries.items() if n not in extras}


def mode_diff(kernel: dict[str, int], other: dict[str, int], who: str) -> list[str]:
    lines = []
    for name in sorted(set(kernel) | set(other)):
        k, o = kernel.get(name), other.get(name)
        if k != o:
            show = lambda m: "absent" if m is None else stat.filemode(m)
            lines.append(f"{name}: kernel {show(k)} | {who} {show(o)}")
    return lines


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_child_files_and_modes(controller, pair):
    kernel, cand = pair
    diff = mode_diff(without_extras(controller, kernel.listdir("")), cand.listdir(""), cand.label)
    assert not diff, f"[{controller}] fresh child:\n" + "\n".join(diff)


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_grandchild_files_and_modes(controller, pair):
    kernel, cand = pair
    for s in pair:
        assert s.mkdir("g") == ("ok", None), f"{s.label}: mkdir g"
    diff = mode_diff(without_extras(controller, kernel.listdir("g")), cand.listdir("g"), cand.label)
    assert not diff, f"[{controller}] fresh grandchild:\n" + "\n".join(diff)


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_root_files_and_modes(controller, pair):
    """Read-only look at the real root: root-only files (CFTYPE_ONLY_ON_ROOT)
    and the absence of not-on-root ones."""
    kernel, cand = pair
    diff = mode_diff(kernel.list_root(), cand.list_root(), cand.label)
    assert not diff, f"[{controller}] root:\n" + "\n".join(diff)


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_listing_order(controller, pair):
    """readdir gives kernfs's order (by name hash), files and child cgroups
    mixed; libcgroup's cgget -g depends on it (fakefs/model/kernfs.py)."""
    kernel, cand = pair
    for s in pair:
        for name in ("a", "tasks2", "x1", "zz", "cgroup.x"):
            assert s.mkdir(name) == ("ok", None), f"{s.label}: mkdir {name}"
    extras = VENDOR_EXTRAS.get(hier_dir(controller), set())
    k = [n for n in kernel.listdir("") if n not in extras]
    c = list(cand.listdir(""))
    assert c == k, f"[{controller}] order: kernel {k} | {cand.label} {c}"


def _child_files() -> list[tuple[str, str]]:
    out = []
    for controller in CONTROLLERS:
        extras = VENDOR_EXTRAS.get(hier_dir(controller), set())
        for name in sorted(INVENTORY[hier_dir(controller)]["child"]):
            if name not in extras:
                out.append(pytest.param(controller, name, id=f"{hier_dir(controller)}:{name}"))
    return out


@pytest.mark.parametrize("controller,filename", _child_files())
def test_fresh_read(controller, filename, pair):
    """Reading a file of a fresh child and of a fresh grandchild gives the
    same text (or the same errno, e.g. EINVAL for write-only files)."""
    kernel, cand = pair
    for s in pair:
        assert s.mkdir("g") == ("ok", None), f"{s.label}: mkdir g"
    problems = []
    for rel in (filename, f"g/{filename}"):
        k, c = kernel.read(rel), cand.read(rel)
        if filename in LIVE_FORMAT_ONLY and k[0] == c[0] == "ok":
            k, c = ("ok", shape(k[1])), ("ok", shape(c[1]))
            what = "format of"
        else:
            what = "read"
        if k != c:
            problems.append(f"[{controller}] {what} {rel}: kernel {k[0]} {k[1]!r} | {cand.label} {c[0]} {c[1]!r}")
    assert not problems, "\n".join(problems)
