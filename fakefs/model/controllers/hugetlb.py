"""hugetlb controller, v1 files (mm/hugetlb_cgroup.c ``__hugetlb_cgroup_file_legacy_init``).

For every huge page size the host has (named by mem_fmt(): "2MB", "1GB",
"64KB"): limit_in_bytes, rsvd.limit_in_bytes, usage_in_bytes,
rsvd.usage_in_bytes, max_usage_in_bytes, rsvd.max_usage_in_bytes, failcnt,
rsvd.failcnt and numa_stat. ``events`` / ``events.local`` are cgroup v2 only.

Measured on Linux 6.18 by mounting the hierarchy in a private mount
namespace (child created, dumped, removed): limits parse like memory's
(strstrip, page_counter_memparse with "-1", memparse suffixes, EINVAL on
leftovers) and are then rounded down to whole huge pages: on 2MB "3m"->2MB,
"1"->0, "-1"->9223372036852678656 (PAGE_COUNTER_MAX rounded down to 512
pages), while an untouched limit reads the unrounded 9223372036854771712.
Any limit write on the root is EINVAL, even "-1". A child's limit may exceed
its parent's. max_usage/failcnt take any non-empty write, root included
(hugetlb_cgroup_reset ignores the buffer). usage and numa_stat are read-only.

From the source: a limit below the current usage is EBUSY
(page_counter_set_max; hugetlb does not reclaim).

Usage model: each cgroup holds the bytes of huge pages charged directly to
it (fault and reservation counters separately, zero when created); a
counter's usage is the subtree sum, like the kernel's hierarchical
page_counter. numa_stat puts every page on the lowest memory node.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from fakefs.model.cftype import ControlFile, Controller, WriteContext
from fakefs.model.errors import KernelError, einval
from fakefs.model.host import HostFacts
from fakefs.model.kparse import kernel_strstrip
from fakefs.model.controllers.memory import page_counter_max, page_counter_memparse

SZ_1K, SZ_1M, SZ_1G = 1 << 10, 1 << 20, 1 << 30


def size_name(hsize: int) -> str:
    """mem_fmt(): the size as it appears in file names."""
    if hsize >= SZ_1G:
        return f"{hsize // SZ_1G}GB"
    if hsize >= SZ_1M:
        return f"{hsize // SZ_1M}MB"
    return f"{hsize // SZ_1K}KB"


@dataclass
class HugeCounter:
    max: int  # base pages, as struct page_counter keeps them
    watermark: int = 0  # base pages
    failcnt: int = 0
    charged: int = 0  # base pages charged directly to this cgroup


@dataclass
class HugetlbState:
    # (hsize, rsvd) -> counter
    counters: dict[tuple[int, bool], HugeCounter] = field(default_factory=dict)


class Hugetlb(Controller):
    name = "hugetlb"

    def files_for(self, host):
        """One set of files per huge page size of the host."""
        return files_for_sizes(host.hugepage_sizes)

    def new_state(self, cgroup):
        host = cgroup.hierarchy.model.host
        unlimited = page_counter_max(host.page_size)
        return HugetlbState({(h, rsvd): HugeCounter(unlimited)
                             for h in host.hugepage_sizes for rsvd in (False, True)})


HUGETLB = CONTROLLER = Hugetlb()


def _st(cg) -> HugetlbState:
    return HUGETLB.state(cg)


def _page_size(cg) -> int:
    return cg.hierarchy.model.host.page_size


def _counter(cg, hsize: int, rsvd: bool) -> HugeCounter:
    return _st(cg).counters[(hsize, rsvd)]


def _subtree(cg):
    yield cg
    yield from cg.descendants()


# -- figures (plug-in points for live statistics) --------------------------------
def charged_pages(cg, hsize: int, rsvd: bool = False) -> int:
    """page_counter_read(): base pages charged in the subtree."""
    return sum(_counter(node, hsize, rsvd).charged for node in _subtree(cg))


def usage_bytes(cg, hsize: int, rsvd: bool = False) -> int:
    return charged_pages(cg, hsize, rsvd) * _page_size(cg)


def max_usage_bytes(cg, hsize: int, rsvd: bool = False) -> int:
    wm = max(_counter(cg, hsize, rsvd).watermark, charged_pages(cg, hsize, rsvd))
    return wm * _page_size(cg)


def charge(cg, hsize: int, nr_huge: int, rsvd: bool = False) -> None:
    """Charge (negative: uncharge) ``nr_huge`` huge pages to ``cg`` as
    hugetlb_cgroup_charge_cgroup(): ENOMEM and failcnt on the first counter up
    the tree that would pass its limit; watermarks follow on success. For
    tests and a live-statistics source; no file write calls it."""
    nr_pages = nr_huge * (hsize // _page_size(cg))
    chain = [cg, *cg.ancestors()]
    if nr_pages > 0:
        for node in chain:
            c = _counter(node, hsize, rsvd)
            if charged_pages(node, hsize, rsvd) + nr_pages > c.max:
                c.failcnt += 1
                raise KernelError(errno.ENOMEM, f"hugetlb limit of {node.path}")
    own = _counter(cg, hsize, rsvd)
    own.charged = max(0, own.charged + nr_pages)
    for node in chain:
        c = _counter(node, hsize, rsvd)
        c.watermark = max(c.watermark, charged_pages(node, hsize, rsvd))


# -- handlers ---------------------------------------------------------------------
def _limit_writer(hsize: int, rsvd: bool):
    def write(cg, text: str, ctx: WriteContext) -> None:
        # hugetlb_cgroup_write: "Can't set limit on root" comes first.
        if cg.is_root:
            raise einval("hugetlb limit on the root")
        page = _page_size(cg)
        nr_pages = page_counter_memparse(kernel_strstrip(text), page)
        per_huge = hsize // page
        nr_pages -= nr_pages % per_huge  # round_down to pages_per_huge_page
        if charged_pages(cg, hsize, rsvd) > nr_pages:
            raise KernelError(errno.EBUSY, "hugetlb usage above the new limit")
        _counter(cg, hsize, rsvd).max = nr_pages

    return write


def _reset_watermark(hsize: int, rsvd: bool):
    def write(cg, text: str, ctx: WriteContext) -> None:
        _counter(cg, hsize, rsvd).watermark = charged_pages(cg, hsize, rsvd)

    return write


def _reset_failcnt(hsize: int, rsvd: bool):
    def write(cg, text: str, ctx: WriteContext) -> None:
        _counter(cg, hsize, rsvd).failcnt = 0

    return write


def _read_numa_stat(hsize: int):
    def read(cg) -> str:
        """hugetlb_cgroup_read_numa_stat, legacy: local total and per node,
        then the hierarchical total and per node, in bytes."""
        nodes = sorted(cg.hierarchy.model.host.online_mems)
        page = _page_size(cg)
        local = _counter(cg, hsize, False).charged * page
        hier = charged_pages(cg, hsize, False) * page

        def per_node(total: int) -> str:
            return "".join(f" N{n}={total if i == 0 else 0}" for i, n in enumerate(nodes))

        return f"total={local}{per_node(local)}\nhierarchical_total={hier}{per_node(hier)}\n"

    return read


def files_for_sizes(sizes) -> tuple[ControlFile, ...]:
    """The legacy file table for a set of huge page sizes (bytes)."""
    out: list[ControlFile] = []
    for hsize in sorted(set(sizes)):
        name = size_name(hsize)
        for rsvd in (False, True):
            pre = f"hugetlb.{name}.{'rsvd.' if rsvd else ''}"
            out += [
                ControlFile(f"{pre}limit_in_bytes", 0o644,
                            lambda cg, h=hsize, r=rsvd: f"{_counter(cg, h, r).max * _page_size(cg)}\n",
                            _limit_writer(hsize, rsvd)),
                ControlFile(f"{pre}usage_in_bytes", 0o444,
                            lambda cg, h=hsize, r=rsvd: f"{usage_bytes(cg, h, r)}\n", live=True),
                ControlFile(f"{pre}max_usage_in_bytes", 0o644,
                            lambda cg, h=hsize, r=rsvd: f"{max_usage_bytes(cg, h, r)}\n",
                            _reset_watermark(hsize, rsvd), live=True),
                ControlFile(f"{pre}failcnt", 0o644,
                            lambda cg, h=hsize, r=rsvd: f"{_counter(cg, h, r).failcnt}\n",
                            _reset_failcnt(hsize, rsvd), live=True),
            ]
        out.append(ControlFile(f"hugetlb.{name}.numa_stat", 0o444, _read_numa_stat(hsize), live=True))
    return tuple(out)


# The default table, for the default HostFacts (what a model without a host
# gets; each hierarchy replaces it with its host's sizes).
HUGETLB.files = files_for_sizes(HostFacts().hugepage_sizes)
