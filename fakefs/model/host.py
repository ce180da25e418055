"""What the model needs to know about the machine, passed in rather than read.

``HostFacts`` are the constants a real kernel derives from its hardware;
``ProcessTable`` answers questions about live processes. The daemon fills
them from the real machine (``fakefs.host.facts``); tests pass fixed ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

from fakefs.model.kparse import PAGE_SIZE


@dataclass(frozen=True)
class HostFacts:
    online_cpus: frozenset[int] = frozenset({0})
    nr_cpu_ids: int = 1  # cpus "possible": bits beyond are ERANGE
    online_mems: frozenset[int] = frozenset({0})
    nr_node_ids: int = 1
    memory_total: int = 1 << 30
    page_size: int = PAGE_SIZE
    # Huge page sizes in bytes, as /sys/kernel/mm/hugepages lists them.
    hugepage_sizes: tuple[int, ...] = (2 << 20,)
    pid_max_limit: int = 4194304  # PID_MAX_LIMIT on 64-bit
    user_hz: int = 100
    swap_accounting: bool = True
    # Whole disks (major, minor): blkio per-device files accept only these.
    # None: the controller module's default (none), which tests may set.
    block_devices: tuple[tuple[int, int], ...] | None = None
    # Network interfaces net_prio.ifpriomap lists (None: just "lo").
    net_interfaces: tuple[str, ...] | None = None
    rdma_devices: tuple[str, ...] | None = None


class ProcessTable(Protocol):
    """Live processes, identified as the kernel does: tids, grouped by tgid."""

    def exists(self, tid: int) -> bool: ...

    def tgid_of(self, tid: int) -> int | None: ...

    def threads_of(self, tgid: int) -> list[int]: ...

    def all_tids(self) -> Iterable[int]: ...

    def owner_uids(self, tid: int) -> tuple[int, int] | None:
        """(real, saved) uid of the task: who may move it (a cgroup1 procs
        write by a user other than root); None when it is gone."""
        ...

    def start_time_of(self, tid: int) -> int | None:
        """Clock ticks after boot when the task started, None when unknown:
        with the tid it tells one task from a later one that reused the
        number (saved state)."""
        ...


@dataclass
class StaticProcessTable:
    """An in-memory process table for tests: ``{tgid: [tids]}``."""

    processes: dict[int, list[int]] = field(default_factory=dict)
    # tgid -> (real uid, saved uid); processes not listed belong to root.
    owners: dict[int, tuple[int, int]] = field(default_factory=dict)
    # tgid -> start time; processes not listed have none known.
    start_times: dict[int, int] = field(default_factory=dict)

    def owner_uids(self, tid: int) -> tuple[int, int] | None:
        tgid = self.tgid_of(tid)
        return None if tgid is None else self.owners.get(tgid, (0, 0))

    def start_time_of(self, tid: int) -> int | None:
        tgid = self.tgid_of(tid)
        return None if tgid is None else self.start_times.get(tgid)

    def exists(self, tid: int) -> bool:
        return self.tgid_of(tid) is not None

    def tgid_of(self, tid: int) -> int | None:
        for tgid, tids in self.processes.items():
            if tid in tids:
                return tgid
        return None

    def threads_of(self, tgid: int) -> list[int]:
        return list(self.processes.get(tgid, []))

    def all_tids(self) -> Iterable[int]:
        return [t for tids in self.processes.values() for t in tids]

    def spawn(self, tgid: int, threads: int = 1) -> int:
        self.processes[tgid] = [tgid] + [tgid * 1000 + i for i in range(1, threads)]
        return tgid

    def exit(self, tgid: int) -> None:
        self.processes.pop(tgid, None)
