"""blkio controller, v1 files (block/blk-cgroup.c ``blkcg_legacy_files``,
block/blk-throttle.c ``throtl_legacy_files``, block/bfq-cgroup.c
``bfq_blkcg_legacy_files``), as listed by Linux 6.18 on the development VM.

Block devices. The kernel resolves ``MAJ:MIN`` to a whole disk
(blkg_conf_open_bdev: unknown device or a partition is ENODEV). The model has
no disks of its own, so it takes them from ``HostFacts.block_devices`` when it
is set, else from the module-level
``BLOCK_DEVICES`` (a tuple of ``(major, minor)`` whole disks, empty by
default; tests and the daemon may set it). Devices are assumed not to use the
bfq I/O scheduler (this VM's vda runs mq-deadline), so per-device bfq weights
are EOPNOTSUPP and bfq statistics stay "Total 0".

Measured rules:
- throttle.* files exist everywhere, bfq.weight/bfq.weight_device only off the
  root, reset_stats is 0200 write_u64 (any u64 accepted, read EINVAL).
- Throttle writes: ``MAJ:MIN VALUE``; the numbers go through the kernel's
  sscanf (%u / %llu: leading blanks skipped, base 10, overflow wraps, trailing
  junk ignored); 0 removes the limit; "max" is EINVAL in v1; iops limits are
  stored as unsigned int (truncated; UINT_MAX hides the line).
- The first throttle write naming a disk activates throttling on it; from then
  on every cgroup with a blkg on that disk shows per-device stat lines (all
  zero here: the model does no I/O). A write that reaches the value parser
  creates blkgs for the cgroup and all its ancestors, even if the value is
  then EINVAL.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from fakefs.model.cftype import ControlFile, Controller, Placement, WriteContext
from fakefs.model.errors import KernelError, einval
from fakefs.model.kparse import (KSPACE, U32_MAX, U64_MAX, kernel_strstrip, kstrtoull, scan_unsigned, simple_strtoull,
                                 skip_spaces)

BFQ_MIN_WEIGHT, BFQ_MAX_WEIGHT, BFQ_DEFAULT_WEIGHT = 1, 1000, 100

# Whole disks the model pretends to have (see the module docstring).
BLOCK_DEVICES: tuple[tuple[int, int], ...] = ()

Device = tuple[int, int]


def block_devices(cg) -> tuple[Device, ...]:
    host_devices = cg.hierarchy.model.host.block_devices
    return tuple(host_devices if host_devices is not None else BLOCK_DEVICES)


def conf_open(cg, text: str) -> tuple[Device, str]:
    """blkg_conf_open_bdev(): ``sscanf("%u:%u%n")``, one whitespace, skip
    blanks, look the disk up. Returns the device and the rest ("body")."""
    first = scan_unsigned(text, 0, 32)
    if first is None:
        raise einval("no major")
    major, i = first
    if i >= len(text) or text[i] != ":":
        raise einval("no ':'")
    second = scan_unsigned(text, i + 1, 32)
    if second is None:
        raise einval("no minor")
    minor, i = second
    if i >= len(text) or text[i] not in KSPACE:
        raise einval("nothing after MAJ:MIN")
    i = skip_spaces(text, i)
    dev = (major, minor)
    if dev not in block_devices(cg):
        raise KernelError(errno.ENODEV, f"no disk {major}:{minor}")
    return dev, text[i:]


# -- state ----------------------------------------------------------------------
THROTTLE_FIELDS = {  # name -> is_u64 (bps are u64, iops unsigned int)
    "read_bps": True, "write_bps": True, "read_iops": False, "write_iops": False,
}


@dataclass
class BlkioState:
    # Disks this cgroup has a blkg on, newest first (blkg_create adds at the
    # head of blkcg->blkg_list). The root implicitly has one per disk.
    blkgs: list[Device] = field(default_factory=list)
    # (device, field) -> raw stored value; absent = no limit.
    limits: dict[tuple[Device, str], int] = field(default_factory=dict)
    bfq_weight: int = BFQ_DEFAULT_WEIGHT
    # Only meaningful on the root: disks with throttling activated
    # (blk_throtl_init is done lazily by the first throttle config write).
    throttle_active: set[Device] = field(default_factory=set)


class Blkio(Controller):
    name = "blkio"

    def new_state(self, cgroup):
        # Limits and weights are per-cgroup, never inherited (measured: a new
        # child shows no throttle lines and bfq.weight 100).
        return BlkioState()


BLKIO = CONTROLLER = Blkio()


def _st(cg) -> BlkioState:
    return BLKIO.state(cg)


def _blkgs(cg) -> list[Device]:
    devices = block_devices(cg)
    if cg.is_root:
        return list(reversed(devices))
    return [d for d in _st(cg).blkgs if d in devices]


def _blkg_lookup_create(cg, dev: Device) -> None:
    """blkg_conf_prep(): creates the blkg of ``cg`` and of every ancestor."""
    node = cg
    while node is not None and not node.is_root:
        st = _st(node)
        if dev not in st.blkgs:
            st.blkgs.insert(0, dev)
        node = node.parent


def _throttle_active(cg) -> set[Device]:
    return _st(cg.hierarchy.root).throttle_active


def _fmt_dev(dev: Device) -> str:
    return f"{dev[0]}:{dev[1]}"


# -- throttle config files ------------------------------------------------------
def _throttle_writer(fieldname: str):
    is_u64 = THROTTLE_FIELDS[fieldname]

    def write(cg, text: str, ctx: WriteContext) -> None:
        """tg_set_conf(): open the disk, activate throttling, create blkgs,
        then parse the value with sscanf("%llu"); 0 means no limit."""
        dev, body = conf_open(cg, text)
        _throttle_active(cg).add(dev)
        _blkg_lookup_create(cg, dev)
        scanned = scan_unsigned(body, 0, 64)
        if scanned is None:
            raise einval("no value")
        v = scanned[0] or U64_MAX
        if not is_u64:
            v &= U32_MAX  # stored in an unsigned int
        limit_none = U64_MAX if is_u64 else U32_MAX
        key = (dev, fieldname)
        if v == limit_none:
            _st(cg).limits.pop(key, None)
        else:
            _st(cg).limits[key] = v

    return write


def _throttle_reader(fieldname: str):
    def read(cg) -> str:
        """tg_prfill_conf_u64/uint: one line per blkg with a limit set."""
        st = _st(cg)
        active = _throttle_active(cg)
        out = []
        for dev in _blkgs(cg):
            v = st.limits.get((dev, fieldname))
            if dev in active and v is not None:
                out.append(f"{_fmt_dev(dev)} {v}\n")
        return "".join(out)

    return read


# -- statistics -------------------------------------------------------------------
RWSTAT_NAMES = ("Read", "Write", "Sync", "Async", "Discard")


def _read_throttle_rwstat(cg) -> str:
    """blkg_prfill_rwstat over the blkgs that have throttle data, then the
    grand total. The model does no I/O, so every counter is 0."""
    active = _throttle_active(cg)
    out = []
    for dev in _blkgs(cg):
        if dev not in active:
            continue
        name = _fmt_dev(dev)
        out.extend(f"{name} {label} 0\n" for label in RWSTAT_NAMES)
        out.append(f"{name} Total 0\n")
    out.append("Total 0\n")
    return "".join(out)


def _read_bfq_rwstat(cg) -> str:
    # bfq is not the scheduler of any model disk: no bfq policy data.
    return "Total 0\n"


def _write_reset_stats(cg, text: str, ctx: WriteContext) -> None:
    # blkcg_reset_stats is a write_u64 handler: the value is parsed, ignored.
    kstrtoull(text)


# -- bfq weights ------------------------------------------------------------------
def _set_weight_legacy(cg, value: int) -> None:
    """bfq_io_set_weight_legacy(): 1..1000, else ERANGE."""
    if not BFQ_MIN_WEIGHT <= value <= BFQ_MAX_WEIGHT:
        raise KernelError(errno.ERANGE, "bfq weight out of range")
    _st(cg).bfq_weight = value


def _write_bfq_weight(cg, text: str, ctx: WriteContext) -> None:
    _set_weight_legacy(cg, kstrtoull(text))


def _scan_default(s: str) -> int | None:
    """sscanf(buf, "default %llu")."""
    if not s.startswith("default"):
        return None
    scanned = scan_unsigned(s, skip_spaces(s, len("default")), 64)
    return None if scanned is None else scanned[0]


def _write_bfq_weight_device(cg, text: str, ctx: WriteContext) -> None:
    """bfq_io_set_weight(): strim, then "WEIGHT" or "default WEIGHT" sets the
    cgroup weight; anything else is a per-device rule."""
    buf = kernel_strstrip(text)
    value, end = simple_strtoull(buf, 0, 0)
    if end == len(buf):
        _set_weight_legacy(cg, value)
        return
    default = _scan_default(buf)
    if default is not None:
        _set_weight_legacy(cg, default)
        return
    # bfq_io_set_device_weight -> blkg_conf_prep: the disk must exist, then
    # the bfq policy must be enabled on its queue, which it never is here.
    conf_open(cg, buf)
    raise KernelError(errno.EOPNOTSUPP, "bfq is not the scheduler of this disk")


def _read_bfq_weight_device(cg) -> str:
    # No per-device weight can be set (EOPNOTSUPP), so only the default line.
    return f"default {_st(cg).bfq_weight}\n"


_STAT_FILES = (
    "io_service_bytes", "io_service_bytes_recursive", "io_serviced", "io_serviced_recursive",
)

BLKIO.files = (
    *(ControlFile(f"blkio.bfq.{n}", 0o444, _read_bfq_rwstat, live=True) for n in _STAT_FILES),
    ControlFile("blkio.bfq.weight", 0o644, lambda cg: f"{_st(cg).bfq_weight}\n", _write_bfq_weight,
                Placement.NOT_ON_ROOT),
    ControlFile("blkio.bfq.weight_device", 0o644, _read_bfq_weight_device, _write_bfq_weight_device,
                Placement.NOT_ON_ROOT),
    ControlFile("blkio.reset_stats", 0o200, None, _write_reset_stats),
    *(ControlFile(f"blkio.throttle.{n}", 0o444, _read_throttle_rwstat, live=True) for n in _STAT_FILES),
    *(ControlFile(f"blkio.throttle.{f}_device", 0o644, _throttle_reader(f), _throttle_writer(f))
      for f in ("read_bps", "read_iops", "write_bps", "write_iops")),
)
