"""Seeding the top of a fake subtree from the real cgroup it stands for.

A fake subtree is mounted on a real child cgroup directory (say
``/sys/fs/cgroup/memory/P``); its top must then read like P: the same
cpuset, limits and flags. The daemon reads P's settings files (I/O happens
there) and hands their contents to :func:`seed_top`, which replays them
through the model's own write handlers, so every value passes the kernel's
parsers and cross-file rules exactly as a write by an administrator would.

Only settings are seeded: statistics and membership are the fake's own.
"""

from __future__ import annotations

from fakefs.model.cgroup import Hierarchy
from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError, einval

# Settings files in an order the kernel accepts them in: cpuset cpus/mems
# before the flags that need them, cpu.shares before cpu.idle (an idle group
# refuses shares), the CFS period before the quota, the memory limit before
# memsw (memsw may not be below it).
SEED_ORDER: tuple[str, ...] = (
    "cgroup.clone_children", "notify_on_release",
    "cpuset.cpus", "cpuset.mems", "cpuset.cpu_exclusive", "cpuset.mem_exclusive", "cpuset.mem_hardwall",
    "cpuset.sched_load_balance", "cpuset.sched_relax_domain_level", "cpuset.memory_migrate",
    "cpuset.memory_spread_page", "cpuset.memory_spread_slab",
    "cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.cfs_burst_us", "cpu.rt_period_us",
    "cpu.rt_runtime_us", "cpu.idle",
    "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
    "memory.swappiness", "memory.move_charge_at_immigrate",
    "pids.max",
    "blkio.bfq.weight", "blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
    "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device",
    "net_cls.classid", "net_prio.ifpriomap",
    "devices.list",
)
# Files whose content is one command per line (a write takes one line).
_PER_LINE = {"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
             "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device", "net_prio.ifpriomap"}
_HUGETLB_LIMIT = ("hugetlb.", ".limit_in_bytes")


def seed_names(hierarchy: Hierarchy) -> list[str]:
    """The settings files of the top that can be seeded, in seeding order."""
    files = hierarchy.files(hierarchy.root)
    names = [n for n in SEED_ORDER if n in files]
    names += sorted(n for n in files if n.startswith(_HUGETLB_LIMIT[0]) and n.endswith(_HUGETLB_LIMIT[1])
                    and not n.startswith("hugetlb.rsvd"))
    return names


def seed_top(hierarchy: Hierarchy, values: dict[str, str]) -> None:
    """Make the top read like the real cgroup whose files gave ``values``
    (name -> content as read). Names not seedable here are ignored; a value
    the model refuses raises KernelError naming the file."""
    top = hierarchy.root
    ctx = WriteContext(uid=0, gid=0)
    for name in seed_names(hierarchy):
        if name not in values:
            continue
        want = values[name]
        if hierarchy.read_file(top, name).strip() == want.strip():
            continue
        try:
            if name == "devices.list":
                _seed_devices(hierarchy, want, ctx)
            elif name in _PER_LINE:
                for line in want.splitlines():
                    if line.strip():
                        hierarchy.write_file(top, name, line.encode("latin-1"), ctx)
            else:
                # As read, newline included: "\n" alone is how an empty
                # cpuset.cpus is written (an empty write is no command).
                hierarchy.write_file(top, name, (want.strip() + "\n").encode("latin-1"), ctx)
        except KernelError as exc:
            raise KernelError(exc.errno, f"{name} = {want.strip()!r}: {exc.detail}") from None
        if hierarchy.read_file(top, name).strip() != want.strip() and name not in _PER_LINE:
            raise einval(f"{name}: wrote {want.strip()!r}, reads {hierarchy.read_file(top, name).strip()!r}")


def _seed_devices(hierarchy: Hierarchy, listing: str, ctx: WriteContext) -> None:
    """devices.list is read-only: rebuild it as the kernel allows, by denying
    everything and allowing each listed exception ("a" alone allows all)."""
    top = hierarchy.root
    lines = [ln.strip() for ln in listing.splitlines() if ln.strip()]
    if lines == ["a *:* rwm"]:
        hierarchy.write_file(top, "devices.allow", b"a", ctx)
        return
    hierarchy.write_file(top, "devices.deny", b"a", ctx)
    for line in lines:
        hierarchy.write_file(top, "devices.allow", line.encode("latin-1"), ctx)
