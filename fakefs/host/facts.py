"""Facts about the real machine, read once, for the model's defaults; and the
live process table the model asks about membership (PIDs as the kernel
sees them in our PID namespace)."""

from __future__ import annotations

import os
import re
from typing import Iterable

from fakefs.host.gvisor import GVISOR_PROC_VERSION
from fakefs.host.hostfiles import read_real
from fakefs.host.procfs import STAT_STARTTIME, byte_values, read_text, stat_fields, status_value
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
    text = read_real(path)
    return text.strip() if text is not None else default


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


def fuse_ignores_lseek() -> bool:
    """Whether this kernel's FUSE client ignores lseek: gVisor's does
    (release-20221219, measured: after lseek(fd, 0, SEEK_SET) a read goes on
    where the last one ended; its FUSE file Seek is a stub). Programs that
    keep a /proc file open and re-read it (procps's free, top) then read
    nothing from a FUSE file."""
    return GVISOR_PROC_VERSION in _read("/proc/version")


def _memory_total() -> int:
    """MemTotal in bytes, from the real /proc/meminfo (a view may be bound
    over the path); the pages the kernel reports where it cannot be read
    (psutil is not imported on a mount's path: start-up time)."""
    total = byte_values(_read("/proc/meminfo"), ("MemTotal",)).get("MemTotal")
    return total if total is not None else os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


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
        tgid = status_value(read_text(f"/proc/{tid}/status") or "", "Tgid")
        try:
            return int(tgid) if tgid else None
        except ValueError:
            return None

    def start_time_of(self, tid: int) -> int | None:
        try:
            return int(stat_fields(read_text(f"/proc/{tid}/stat") or "")[STAT_STARTTIME])
        except (ValueError, IndexError):
            return None

    def owner_uids(self, tid: int) -> tuple[int, int] | None:
        uids = (status_value(read_text(f"/proc/{tid}/status") or "", "Uid") or "").split()
        try:
            return int(uids[0]), int(uids[2])  # real, (effective,) saved
        except (ValueError, IndexError):
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
