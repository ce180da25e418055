"""memory controller, v1 files (mm/memcontrol-v1.c ``mem_cgroup_legacy_files``
and ``memsw_files``).

Measured on Linux 6.18 (this VM) with a throwaway child cgroup:

* limits (``limit_in_bytes``, ``memsw.limit_in_bytes``, ``soft_limit_in_bytes``,
  ``kmem.tcp.limit_in_bytes``) go through ``mem_cgroup_write``: the buffer is
  strstrip'ed, then ``page_counter_memparse(buf, "-1")``: "-1" is
  PAGE_COUNTER_MAX, anything else is memparse() (base 0, K/M/G/T/P/E suffix,
  64-bit wrap-around) with nothing left over, rounded down to whole pages.
  "1"->0, "4097"->4096, "0x1000"->4096, "010"->0 (octal 8), " 1k"/"\\n"
  accepted, "-2", "+4096", "1x", "1kb", "1 k", "08" are EINVAL.
* memory.limit <= memsw.limit both ways, else EINVAL (mem_cgroup_resize_max).
* ``kmem.limit_in_bytes`` parses like the others but the value never changes
  (deprecated: "Writing any value to this file has no effect").
* max_usage/failcnt files take any non-empty write (mem_cgroup_reset ignores
  the buffer): max_usage becomes the current usage, failcnt 0.
* swappiness accepts 0..200 (MAX_SWAPPINESS is 200), ``use_hierarchy`` only 1,
  ``move_charge_at_immigrate`` only 0 (charge moving was removed),
  ``oom_control`` 0 or 1; all four are write_u64 (kstrtoull, no strstrip).
* a child copies its parent's swappiness and oom_kill_disable at creation
  (mem_cgroup_css_alloc); soft limit and limits start unlimited.

From the kernel source (not measurable without writing the real root or
charging memory to a throwaway cgroup, both off limits on the shared VM):
writes of limits on the root are EINVAL but its soft limit is writable; the
root's swappiness is the global vm_swappiness; a limit below the current usage
is EBUSY once reclaim gives up (page_counter_set_max).

Usage model: every cgroup holds the pages charged *directly* to it (zero for a
new cgroup); a counter's usage is that figure summed over the subtree, as the
kernel's hierarchical page_counter is. Nothing in the model is reclaimable, so
lowering a limit below the usage is always EBUSY and force_empty frees nothing.
Live figures (``fakefs.model.usage``) add, per cgroup, what its real
member processes hold (``live_pages``/``live_stats``, replaced at every
sync) to the stored charges; on the root they are the machine's.

``memory.shown_ram_in_bytes`` exists on this VM's children but is not an
upstream file (a vendor patch), so the model leaves it out.
"""

from __future__ import annotations

import errno
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fakefs.model.cftype import ControlFile, Controller, WriteContext
from fakefs.model.errors import KernelError, einval
from fakefs.model.kparse import S64_MAX, U32_MAX, kernel_strstrip, kstrtoull, memparse, simple_strtoull
from fakefs.model.usage import ProcessMemory, StatsSource, synced, usage_of

MAX_SWAPPINESS = 200  # include/linux/swap.h, measured: 200 ok, 201 EINVAL
DEFAULT_VM_SWAPPINESS = 60  # mm/vmscan.c vm_swappiness

# Counters, as MEMFILE_TYPE: _MEM, _MEMSWAP, _KMEM, _TCP.
MEM, MEMSW, KMEM, TCP = "memory", "memsw", "kmem", "tcp"
COUNTERS = (MEM, MEMSW, KMEM, TCP)

# memory.stat, in this kernel's order (memcg1_stat_names, memcg1_events,
# lru_list_name), measured from a fresh child.
STAT_KEYS = (
    "cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
    "workingset_refault_anon", "workingset_refault_file", "swap", "swapcached",
)
EVENT_KEYS = ("pgpgin", "pgpgout", "pgfault", "pgmajfault")
LRU_KEYS = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
ALL_STAT_KEYS = STAT_KEYS + EVENT_KEYS + LRU_KEYS

# memcg_numa_stat_show: name -> LRU lists it adds up (in pages).
NUMA_STATS = (
    ("total", LRU_KEYS),
    ("file", ("inactive_file", "active_file")),
    ("anon", ("inactive_anon", "active_anon")),
    ("unevictable", ("unevictable",)),
)


def page_counter_max(page_size: int) -> int:
    """PAGE_COUNTER_MAX: LONG_MAX / PAGE_SIZE pages on 64-bit."""
    return S64_MAX // page_size


def page_counter_memparse(text: str, page_size: int) -> int:
    """mm/page_counter.c page_counter_memparse(buf, "-1"): pages, clamped to
    PAGE_COUNTER_MAX. The caller has already strstrip'ed ``text``."""
    limit = page_counter_max(page_size)
    if text == "-1":
        return limit
    value, rest = memparse(text)
    if rest:
        raise einval("trailing characters after size")
    return min(value // page_size, limit)


@dataclass
class PageCounter:
    """The parts of struct page_counter a v1 file shows; usage is computed."""

    max: int  # pages
    watermark: int = 0  # pages
    failcnt: int = 0


@dataclass
class MemoryState:
    counters: dict[str, PageCounter]
    soft_limit: int  # pages
    swappiness: int  # on the root this is vm_swappiness
    oom_kill_disable: bool = False
    under_oom: bool = False
    oom_kill: int = 0
    # Pages charged directly to this cgroup (not its descendants), per kind:
    # "memory", "swap" (memsw = memory + swap), "kmem", "tcp".
    charged: dict[str, int] = field(default_factory=lambda: {"memory": 0, "swap": 0, "kmem": 0, "tcp": 0})
    # Local memory.stat figures, already in the unit the file prints.
    stats: dict[str, int] = field(default_factory=dict)
    # What the real member processes hold now (model/usage.py): pages per
    # kind ("memory", "swap") and memory.stat gauges in bytes.
    live_pages: dict[str, int] = field(default_factory=dict)
    live_stats: dict[str, int] = field(default_factory=dict)
    # cgroup.event_control registrations accepted: (efd, cfd, args).
    event_registrations: list[tuple[int, int, str]] = field(default_factory=list)


class Memory(Controller):
    name = "memory"

    def files_for(self, host):
        """Without swap accounting the kernel never registers ``memsw_files``
        (mem_cgroup_swap_init)."""
        if host.swap_accounting:
            return self.files
        return tuple(f for f in self.files if not f.name.startswith("memory.memsw."))

    def account_live(self, hierarchy, source, members) -> None:
        _account_live(hierarchy, source, members)

    def new_state(self, cgroup):
        host = cgroup.hierarchy.model.host
        unlimited = page_counter_max(host.page_size)
        counters = {c: PageCounter(unlimited) for c in COUNTERS}
        parent = cgroup.parent
        if parent is None:
            return MemoryState(counters, unlimited, DEFAULT_VM_SWAPPINESS)
        p = self.state(parent)
        # mem_cgroup_css_alloc: swappiness = mem_cgroup_swappiness(parent),
        # oom_kill_disable copied from the parent (both measured).
        st = MemoryState(counters, unlimited, p.swappiness, oom_kill_disable=p.oom_kill_disable)
        return st


MEMORY = CONTROLLER = Memory()


def _st(cg) -> MemoryState:
    return MEMORY.state(cg)


def _page_size(cg) -> int:
    return cg.hierarchy.model.host.page_size


# -- hierarchical sums ----------------------------------------------------------
# The kernel's page counters and memcg statistics are hierarchical: a charge
# goes to every ancestor. Here each cgroup holds its own figures (charged
# pages, stored statistics, its members' live figures), and the sums over a
# subtree are added up from the few cgroups that hold any ("holders"), up
# their ancestors, once per change of the model or of any figure: so a read
# costs the same in a tree of ten cgroups as in one of ten thousand.
KINDS = ("memory", "swap", "kmem", "tcp")
COUNTER_KINDS = {MEM: ("memory",), MEMSW: ("memory", "swap"), KMEM: ("kmem",), TCP: ("tcp",)}


@dataclass
class _Figures:
    holders: dict[int, Any] = field(default_factory=dict)  # serial -> cgroup
    scanned: bool = False
    version: int = 0  # one more at every change of a cgroup's own figures
    sums_at: tuple | None = None
    pages: dict[int, dict[str, int]] = field(default_factory=dict)  # serial -> kind -> pages in its subtree
    totals: dict[int, dict[str, int]] = field(default_factory=dict)  # serial -> memory.stat key -> subtree sum
    nodes: dict[int, Any] = field(default_factory=dict)  # serial -> cgroup, for every serial in pages


_FIGURES: "weakref.WeakKeyDictionary[Any, _Figures]" = weakref.WeakKeyDictionary()


def _figures(h) -> _Figures:
    f = _FIGURES.get(h)
    if f is None:
        f = _FIGURES[h] = _Figures()
    if not f.scanned:
        # Once: what a restored state (or a test) put there.
        f.scanned = True
        for cg in [h.root, *h.root.descendants()]:
            if _holds_figures(_st(cg)):
                f.holders[cg.serial] = cg
    return f


def _holds_figures(st: MemoryState) -> bool:
    return any(st.charged.values()) or any(st.stats.values()) or any(st.live_pages.values()) \
        or any(st.live_stats.values())


def _own_figures_changed(cg) -> None:
    """Call after changing ``cg``'s own charged pages, stats or live figures."""
    f = _figures(cg.hierarchy)
    f.holders[cg.serial] = cg
    f.version += 1


def _sums(h) -> _Figures:
    f = _figures(h)
    at = (h.model.generation, f.version)
    if f.sums_at == at:
        return f
    pages: dict[int, dict[str, int]] = {}
    totals: dict[int, dict[str, int]] = {}
    nodes: dict[int, Any] = {}
    for serial, cg in list(f.holders.items()):
        st = _st(cg)
        if cg.removed or not _holds_figures(st):
            del f.holders[serial]  # a removed cgroup leaves its parent's sums (v1 moves no charge)
            continue
        own_pages = {k: st.charged[k] + st.live_pages.get(k, 0) for k in KINDS}
        own_stats = dict(st.stats)
        for k, v in st.live_stats.items():
            own_stats[k] = own_stats.get(k, 0) + v
        node = cg
        while node is not None:
            nodes[node.serial] = node
            acc = pages.setdefault(node.serial, dict.fromkeys(KINDS, 0))
            for k, v in own_pages.items():
                acc[k] += v
            tacc = totals.setdefault(node.serial, {})
            for k, v in own_stats.items():
                tacc[k] = tacc.get(k, 0) + v
            node = node.parent
    f.pages, f.totals, f.nodes, f.sums_at = pages, totals, nodes, at
    return f


# -- figures (the plug-in points for live statistics) -------------------------
def charged_pages(cg, counter: str) -> int:
    """page_counter_read(): pages charged to ``cg`` and its descendants.
    memsw counts memory plus swap (v1 charges both together)."""
    pages = _sums(cg.hierarchy).pages.get(cg.serial)
    return sum(pages[k] for k in COUNTER_KINDS[counter]) if pages else 0


def usage_bytes(cg, counter: str) -> int:
    return charged_pages(cg, counter) * _page_size(cg)


def max_usage_bytes(cg, counter: str) -> int:
    """The watermark; never below the current usage (page_counter_charge
    raises it as usage grows)."""
    wm = max(_st(cg).counters[counter].watermark, charged_pages(cg, counter))
    return wm * _page_size(cg)


def failcnt(cg, counter: str) -> int:
    return _st(cg).counters[counter].failcnt


def stat_local(cg, key: str) -> int:
    """memcg_page_state_local_output / memcg_events_local."""
    st = _st(cg)
    return st.stats.get(key, 0) + st.live_stats.get(key, 0)


def stat_total(cg, key: str) -> int:
    """The hierarchical (total_*) figure: the subtree's local figures."""
    return _sums(cg.hierarchy).totals.get(cg.serial, {}).get(key, 0)


def record_stats(cg, **values: int) -> None:
    """Set local memory.stat figures of ``cg`` (in the unit the file
    prints), for tests and for a statistics source."""
    _st(cg).stats.update(values)
    _own_figures_changed(cg)


def charge(cg, kind: str, nr_pages: int) -> None:
    """Charge (or, negative, uncharge) pages directly to ``cg`` as
    page_counter_try_charge() does: refused with ENOMEM, and failcnt counted
    on the first counter up the tree whose limit it would pass; on success
    every ancestor's watermark follows its new usage. For tests and for a
    live-statistics source; no file write calls it."""
    affected = {"memory": (MEM, MEMSW), "swap": (MEMSW,), "kmem": (KMEM,), "tcp": (TCP,)}[kind]
    if nr_pages > 0:
        for node in _subtree_up(cg):
            for counter in affected:
                c = _st(node).counters[counter]
                if charged_pages(node, counter) + nr_pages > c.max:
                    c.failcnt += 1
                    raise KernelError(errno.ENOMEM, f"{counter} limit of {node.path}")
    st = _st(cg)
    st.charged[kind] = max(0, st.charged[kind] + nr_pages)
    _own_figures_changed(cg)
    for node in _subtree_up(cg):
        for counter in affected:
            c = _st(node).counters[counter]
            c.watermark = max(c.watermark, charged_pages(node, counter))


def _subtree_up(cg):
    yield cg
    yield from cg.ancestors()


def set_live(cg, stats: dict[str, int], page_size: int, usage_bytes: int | None = None) -> None:
    """Replace what ``cg``'s real members hold (model/usage.py): memory.stat
    gauges in bytes; the memory counter is rss + cache unless given."""
    st = _st(cg)
    st.live_stats = dict(stats)
    used = stats.get("rss", 0) + stats.get("cache", 0) if usage_bytes is None else usage_bytes
    st.live_pages = {"memory": used // page_size, "swap": stats.get("swap", 0) // page_size}
    _own_figures_changed(cg)


def raise_watermarks(h) -> None:
    """After a sync: every watermark follows its counter's new usage, as
    page_counter_charge() raises it while charging (only cgroups with a
    holder below have any usage)."""
    f = _sums(h)
    for serial, node in f.nodes.items():
        pages = f.pages[serial]
        for counter in (MEM, MEMSW):
            c = _st(node).counters[counter]
            c.watermark = max(c.watermark, sum(pages[k] for k in COUNTER_KINDS[counter]))


# -- limits -------------------------------------------------------------------
def _parse_limit(cg, text: str) -> int:
    # mem_cgroup_write: strstrip, then page_counter_memparse(buf, "-1").
    return page_counter_memparse(kernel_strstrip(text), _page_size(cg))


def _set_max(cg, counter: str, nr_pages: int) -> None:
    """page_counter_set_max(): refuses (EBUSY) a max below the usage. The
    kernel first reclaims (mem_cgroup_resize_max); nothing is reclaimable in
    the model, so the usage stands."""
    if charged_pages(cg, counter) > nr_pages:
        raise KernelError(errno.EBUSY, f"{counter} usage above the new limit")
    _st(cg).counters[counter].max = nr_pages


def _resize_max(cg, nr_pages: int, memsw: bool) -> None:
    """mem_cgroup_resize_max(): keep memory.max <= memsw.max."""
    counters = _st(cg).counters
    ok = nr_pages >= counters[MEM].max if memsw else nr_pages <= counters[MEMSW].max
    if not ok:
        raise einval("memory limit would exceed memsw limit")
    _set_max(cg, MEMSW if memsw else MEM, nr_pages)


def _limit_writer(counter: str):
    def write(cg, text: str, ctx: WriteContext) -> None:
        nr_pages = _parse_limit(cg, text)
        if cg.is_root:  # "Can't set limit on root"
            raise einval("limit on the root")
        if counter == MEM:
            _resize_max(cg, nr_pages, memsw=False)
        elif counter == MEMSW:
            _resize_max(cg, nr_pages, memsw=True)
        elif counter == KMEM:
            pass  # deprecated: parsed, then ignored (measured: value unchanged)
        else:
            _set_max(cg, TCP, nr_pages)  # memcg_update_tcp_max

    return write


def _limit_reader(counter: str):
    return lambda cg: f"{_st(cg).counters[counter].max * _page_size(cg)}\n"


def _write_soft_limit(cg, text: str, ctx: WriteContext) -> None:
    # RES_SOFT_LIMIT has no root check in mem_cgroup_write.
    _st(cg).soft_limit = _parse_limit(cg, text)


def _reset_watermark(counter: str):
    def write(cg, text: str, ctx: WriteContext) -> None:
        # mem_cgroup_reset ignores the buffer: page_counter_reset_watermark.
        _st(cg).counters[counter].watermark = charged_pages(cg, counter)

    return write


def _reset_failcnt(counter: str):
    def write(cg, text: str, ctx: WriteContext) -> None:
        _st(cg).counters[counter].failcnt = 0

    return write


def _counter_files(prefix: str, counter: str) -> tuple[ControlFile, ...]:
    return (
        ControlFile(f"{prefix}usage_in_bytes", 0o444, synced(lambda cg: f"{usage_bytes(cg, counter)}\n"),
                    live=True),
        ControlFile(f"{prefix}max_usage_in_bytes", 0o644, synced(lambda cg: f"{max_usage_bytes(cg, counter)}\n"),
                    _reset_watermark(counter), live=True),
        ControlFile(f"{prefix}limit_in_bytes", 0o644, _limit_reader(counter), _limit_writer(counter)),
        ControlFile(f"{prefix}failcnt", 0o644, lambda cg: f"{failcnt(cg, counter)}\n", _reset_failcnt(counter),
                    live=True),
    )


# -- stat files -----------------------------------------------------------------
def hierarchical_limit_bytes(cg, counter: str) -> int:
    """memcg1_stat_format: the smallest max from cg up to the root."""
    return min(_st(node).counters[counter].max for node in _subtree_up(cg)) * _page_size(cg)


def _read_stat(cg) -> str:
    lines = [f"{k} {stat_local(cg, k)}" for k in ALL_STAT_KEYS]
    lines.append(f"hierarchical_memory_limit {hierarchical_limit_bytes(cg, MEM)}")
    lines.append(f"hierarchical_memsw_limit {hierarchical_limit_bytes(cg, MEMSW)}")
    lines.extend(f"total_{k} {stat_total(cg, k)}" for k in ALL_STAT_KEYS)
    return "".join(line + "\n" for line in lines)


def _read_numa_stat(cg) -> str:
    """memcg_numa_stat_show: LRU sizes in pages, then per N_MEMORY node. The
    model does not know the node split, so it puts every page on the lowest
    memory node."""
    host = cg.hierarchy.model.host
    nodes = sorted(host.online_mems)
    page = host.page_size
    out = []
    for prefix, figure in (("", stat_local), ("hierarchical_", stat_total)):
        for name, lrus in NUMA_STATS:
            pages = sum(figure(cg, k) for k in lrus) // page
            per_node = "".join(f" N{n}={pages if i == 0 else 0}" for i, n in enumerate(nodes))
            out.append(f"{prefix}{name}={pages}{per_node}\n")
    return "".join(out)


# -- flags and knobs ----------------------------------------------------------------
def _write_swappiness(cg, text: str, ctx: WriteContext) -> None:
    value = kstrtoull(text)
    if value > MAX_SWAPPINESS:
        raise einval("swappiness above MAX_SWAPPINESS")
    # On the root, mem_cgroup_swappiness_write sets the global vm_swappiness;
    # the model keeps it in the root's state (not tied to /proc/sys here).
    _st(cg).swappiness = value


def _write_use_hierarchy(cg, text: str, ctx: WriteContext) -> None:
    # mem_cgroup_hierarchy_write: non-hierarchical mode is gone; only 1 is ok.
    if kstrtoull(text) != 1:
        raise einval("use_hierarchy can only be 1")


def _write_move_charge(cg, text: str, ctx: WriteContext) -> None:
    # Charge moving was removed; measured: 0 accepted, 1..3 EINVAL.
    if kstrtoull(text) != 0:
        raise einval("move_charge_at_immigrate can only be 0")


def _read_oom_control(cg) -> str:
    st = _st(cg)
    return f"oom_kill_disable {int(st.oom_kill_disable)}\nunder_oom {int(st.under_oom)}\noom_kill {st.oom_kill}\n"


def _write_oom_control(cg, text: str, ctx: WriteContext) -> None:
    value = kstrtoull(text)
    # mem_cgroup_oom_control_write: "cannot set to root cgroup and only 0
    # and 1 are allowed".
    if cg.is_root or value not in (0, 1):
        raise einval("oom_control: root, or not 0/1")
    _st(cg).oom_kill_disable = bool(value)


def _write_force_empty(cg, text: str, ctx: WriteContext) -> None:
    # mem_cgroup_force_empty_write ignores the buffer. It reclaims what it
    # can and succeeds; the model's charges are unreclaimable, so they stay.
    if cg.is_root:
        raise einval("force_empty on the root")


def _read_pressure_level(cg) -> str:
    # mem_cgroup_dummy_seq_show: only there to make the file readable (for
    # event_control's permission check); reading it fails.
    raise einval("pressure_level is for event_control only")


# -- cgroup.event_control ---------------------------------------------------------
# The largest fd table the kernel can have (sysctl_nr_open_max on 64-bit):
# an fd at or beyond it can never be open, so fdget() fails with EBADF.
NR_OPEN_MAX = 2147483584


def parse_event_control(text: str) -> tuple[int, int, str]:
    """memcg_write_event_control's parsing of "<event_fd> <control_fd> <args>".

    Returns (efd, cfd, args); raises EINVAL on syntax the kernel rejects
    before looking at any fd. The fds are unsigned int in the kernel, so
    they are truncated to 32 bits as it does."""
    buf = kernel_strstrip(text)
    efd, end = simple_strtoull(buf, 0, 10)  # simple_strtoul(buf, &endp, 10)
    if buf[end:end + 1] != " ":
        raise einval("event_control: event fd not followed by a space")
    cfd, end = simple_strtoull(buf, end + 1, 10)
    if buf[end:end + 1] not in ("", " "):
        raise einval("event_control: control fd not followed by a space")
    return efd & U32_MAX, cfd & U32_MAX, buf[end + 1:]


# fds 0..2 are the writer's stdin/stdout/stderr in every realistic caller:
# never an eventfd (eventfd_ctx_fileget: EINVAL) nor a memory control file
# (EINVAL). The model assumes so, since it cannot look them up.
STDIO_FDS = 3


def _write_event_control(cg, text: str, ctx: WriteContext) -> None:
    """Register a v1 memcg event, as far as a model without the writer's fd
    table can check it.

    Accepted: "<efd> <cfd>[ <args>]" (after strstrip) with two distinct fds
    from 3 up, any args. Rejected like the kernel: bad syntax (EINVAL); an fd
    past the largest possible fd table (EBADF); the same fd as eventfd and
    control file (EINVAL: an eventfd is not a cgroup file); an fd below 3
    (EINVAL, assumed stdio: see STDIO_FDS; this covers an empty control-fd
    field, which the kernel reads as fd 0).
    Not checkable here, so accepted: whether the fds are open (EBADF), whether
    efd is an eventfd and cfd one of memory.usage_in_bytes, memsw.usage_in_bytes,
    oom_control or pressure_level of *this* cgroup (EINVAL), and the args each
    of those parses (a threshold via page_counter_memparse, a pressure level).
    No event is ever signalled, not even on rmdir."""
    efd, cfd, args = parse_event_control(text)
    if efd >= NR_OPEN_MAX or cfd >= NR_OPEN_MAX:
        raise KernelError(errno.EBADF, "event_control: fd out of any fd table")
    if efd < STDIO_FDS or cfd < STDIO_FDS:
        raise einval("event_control: stdio fd is not an eventfd / control file")
    if efd == cfd:
        raise einval("event_control: one fd cannot be both eventfd and control file")
    _st(cg).event_registrations.append((efd, cfd, args))


MEMORY.files = (
    *_counter_files("memory.", MEM),
    ControlFile("memory.soft_limit_in_bytes", 0o644,
                lambda cg: f"{_st(cg).soft_limit * _page_size(cg)}\n", _write_soft_limit),
    ControlFile("memory.stat", 0o444, synced(_read_stat), live=True),
    ControlFile("memory.force_empty", 0o200, None, _write_force_empty),
    ControlFile("memory.use_hierarchy", 0o644, lambda cg: "1\n", _write_use_hierarchy),
    # CFTYPE_WORLD_WRITABLE in older kernels; this one shows 0200.
    ControlFile("cgroup.event_control", 0o200, None, _write_event_control),
    ControlFile("memory.swappiness", 0o644, lambda cg: f"{_st(cg).swappiness}\n", _write_swappiness),
    ControlFile("memory.move_charge_at_immigrate", 0o644, lambda cg: "0\n", _write_move_charge),
    ControlFile("memory.oom_control", 0o644, _read_oom_control, _write_oom_control, live=True),
    ControlFile("memory.pressure_level", 0o444, _read_pressure_level, None),
    ControlFile("memory.numa_stat", 0o444, synced(_read_numa_stat), live=True),
    *_counter_files("memory.kmem.", KMEM),
    # mem_cgroup_slab_show prints nothing (deprecated).
    ControlFile("memory.kmem.slabinfo", 0o444, lambda cg: "", None),
    *_counter_files("memory.kmem.tcp.", TCP),
    *_counter_files("memory.memsw.", MEMSW),
)


# -- live figures (model/usage.py) ---------------------------------------------------
# memory.stat keys a process's figures feed (bytes). Per process the kernel's
# split between active and inactive lists is unknown: all pages are put on
# the active lists; shmem is swap-backed, so it sits on the anon lists.
def process_stat(p: ProcessMemory) -> dict[str, int]:
    return {
        "cache": p.file + p.shmem,
        "rss": p.anon,
        "shmem": p.shmem,
        "mapped_file": p.file + p.shmem,
        "swap": p.swap,
        "active_anon": p.anon + p.shmem,
        "active_file": p.file,
    }


LIVE_GAUGE_KEYS = ("cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback", "swap", "swapcached",
              "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
LIVE_EVENT_KEYS = ("pgfault", "pgmajfault")


def _account_live(h, source: StatsSource, members: dict) -> None:
    """Bring the live figures (model/usage.py) up to the source's: what the
    member processes hold now, per cgroup; the root's from the machine."""
    u = usage_of(h)
    page = h.model.host.page_size
    # The leader's cgroup holds the process (mm->owner is the leader); the
    # thread figures say which members are leaders.
    threads = source.threads(members) if members else {}
    leaders = {t: members[t] for t, f in threads.items() if f.tgid == t}
    figures = source.processes(leaders) if leaders else {}
    local: dict[int, dict[str, int]] = {}
    faults: dict[int, tuple[int, int]] = {}
    for tgid, p in figures.items():
        cg = leaders[tgid]
        acc = local.setdefault(cg.serial, {})
        for k, v in process_stat(p).items():
            acc[k] = acc.get(k, 0) + v
        prev = u.faults.get(tgid)
        if prev is not None:
            events = MEMORY.state(cg).stats
            events["pgfault"] = events.get("pgfault", 0) + max(0, p.minflt + p.majflt - prev[0] - prev[1])
            events["pgmajfault"] = events.get("pgmajfault", 0) + max(0, p.majflt - prev[1])
            _own_figures_changed(cg)
        faults[tgid] = (p.minflt, p.majflt)
    u.faults = faults
    # Cgroups that held live figures, or hold them now (the others hold none).
    f = _figures(h)
    holding = {cg.serial: cg for cg in leaders.values()}
    for serial, cg in [*f.holders.items(), *holding.items()]:
        if not cg.removed and not cg.is_top:
            set_live(cg, local.get(serial, {}), page)
    if h.root.is_root:
        machine = source.machine_memory()
        if machine is not None:
            _root_from_machine(h, machine, page)
    elif h.root.serial in holding:
        set_live(h.root, local.get(h.root.serial, {}), page)
    raise_watermarks(h)


def _root_from_machine(h, machine: Mapping[str, int], page: int) -> None:
    """The root's local figures: the machine's minus its descendants', so
    that its hierarchical (total_*, usage) figures are the machine's."""
    below: dict[str, int] = {}
    below_pages = 0
    below_events: dict[str, int] = {}
    for cg in list(_figures(h).holders.values()):
        if cg.is_top or cg.removed:
            continue
        st = MEMORY.state(cg)
        for k, v in st.live_stats.items():
            below[k] = below.get(k, 0) + v
        below_pages += st.charged["memory"] + st.live_pages.get("memory", 0)
        for k in LIVE_EVENT_KEYS:
            below_events[k] = below_events.get(k, 0) + stat_local(cg, k)
    stats = {k: max(0, machine.get(k, 0) - below.get(k, 0)) for k in LIVE_GAUGE_KEYS}
    usage = max(0, machine.get("usage", 0) - below_pages * page)
    set_live(h.root, stats, page, usage_bytes=usage)
    # Root events: the machine's counters less the descendants' (never
    # lower than shown before: a removed child takes its events with it).
    events = MEMORY.state(h.root).stats
    for k in LIVE_EVENT_KEYS:
        if k in machine:
            events[k] = max(events.get(k, 0), machine[k] - below_events.get(k, 0))
