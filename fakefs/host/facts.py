"""Facts about the real machine, read once, for the model's defaults; and the
live process table the model asks about membership (PIDs as the kernel
sees them in our PID namespace)."""

from __future__ import annotations

import os
import re
from typing import Iterable

from fakefs.host.hostfiles import real_path
from fakefs.host.sysmount import libc
from fakefs.model.host import HostFacts
from fakefs.model.kparse import parse_cpulist


def cap_last_cap() -> int:
    """The highest capability this kernel knows: the last one PR_CAPBSET_READ accepts."""
    cap = 0
    while cap < 64 and libc.prctl(23, cap + 1, 0, 0, 0) >= 0:  # PR_CAPBSET_READ
        cap += 1
    return cap


def _read(path: str, default: str = "") -> str:
    try:
        with open(real_path(path)) as f:
            return f.read().strip()
    except OSError:
        return default


def _cpus(path: str, default: str) -> frozenset[int]:
    return frozenset(parse_cpulist(_read(path, default) or default, 1 << 16))


def read_host_facts() -> HostFacts:
    online = _cpus("/sys/devices/system/cpu/online", f"0-{(os.cpu_count() or 1) - 1}")
    possible = _cpus("/sys/devices/system/cpu/possible", "") or online
    mems = _cpus("/sys/devices/system/node/online", "0")
    mems_possible = _cpus("/sys/devices/system/node/possible", "") or mems
    sizes = []
    try:
        for name in os.listdir("/sys/kernel/mm/hugepages"):
            m = re.fullmatch(r"hugepages-(\d+)kB", name)
            if m:
                sizes.append(int(m.group(1)) * 1024)
    except OSError:
        pass
    return HostFacts(
        block_devices=_whole_disks(),
        net_interfaces=tuple(sorted(_listdir("/sys/class/net"))) or ("lo",),
        swap_accounting=os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
        or not os.path.exists("/sys/fs/cgroup/memory"),
        online_cpus=online,
        nr_cpu_ids=max(possible) + 1,
        online_mems=mems,
        nr_node_ids=max(mems_possible) + 1,
        memory_total=_memory_total(),
        page_size=os.sysconf("SC_PAGE_SIZE"),
        hugepage_sizes=tuple(sorted(sizes)),
        user_hz=os.sysconf("SC_CLK_TCK"),
    )


# gVisor's fixed /proc/version: Linux 4.4.0, built on this date.
GVISOR_VERSION = "4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016"


def fuse_ignores_lseek() -> bool:
    """Whether this kernel's FUSE client ignores lseek: gVisor's does
    (release-20221219, measured: after lseek(fd, 0, SEEK_SET) a read goes on
    where the last one ended; its FUSE file Seek is a stub). Programs that
    keep a /proc file open and re-read it (procps's free, top) then read
    nothing from a FUSE file."""
    return GVISOR_VERSION in _read("/proc/version")


def _memory_total() -> int:
    """MemTotal in bytes, from the real /proc/meminfo (a view may be bound
    over the path); the pages the kernel reports where it cannot be read."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _whole_disks() -> tuple[tuple[int, int], ...]:
    """Disks as blkio knows them: /sys/block entries (not partitions)."""
    out = []
    for name in sorted(_listdir("/sys/block")):
        dev = _read(f"/sys/block/{name}/dev")
        if ":" in dev:
            major, minor = dev.split(":")
            out.append((int(major), int(minor)))
    return tuple(out)


class LiveProcessTable:
    """Processes and threads from /proc."""

    def exists(self, tid: int) -> bool:
        # Any task, thread or leader: /proc lists only leaders, while
        # /proc/TID/task/TID is there for both.
        return tid > 0 and os.path.exists(f"/proc/{tid}/task/{tid}")

    def tgid_of(self, tid: int) -> int | None:
        try:
            with open(f"/proc/{tid}/status") as f:
                for line in f:
                    if line.startswith("Tgid:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None

    def start_time_of(self, tid: int) -> int | None:
        """Clock ticks after boot when the task started: with the tid, it
        tells one task from a later one that reused the number (saved state)."""
        try:
            with open(f"/proc/{tid}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            return None

    def owner_uids(self, tid: int) -> tuple[int, int] | None:
        """(real, saved) uid: who may move the task (cgroup1 procs write)."""
        try:
            with open(f"/proc/{tid}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        real, _eff, saved = line.split()[1:4]
                        return int(real), int(saved)
        except (OSError, ValueError):
            return None
        return None

    def threads_of(self, tgid: int) -> list[int]:
        try:
            return sorted(int(t) for t in os.listdir(f"/proc/{tgid}/task"))
        except OSError:
            return []

    def all_tids(self) -> Iterable[int]:
        out: list[int] = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                out.extend(self.threads_of(int(name)))
        return out
