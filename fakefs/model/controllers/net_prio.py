"""net_prio controller (net/core/netprio_cgroup.c ``ss_files``).

Network interfaces. The kernel lists and resolves interfaces of init_net.
The model takes them from ``HostFacts.net_interfaces`` when it is set,
else from the module-level ``NET_INTERFACES``
(names in ifindex order, default ``("lo",)``).

Measured on Linux 6.18 (in a private mount namespace):
- ``net_prio.prioidx`` (0444) is the cgroup's css id: 1 for the root, then
  the lowest free id from 2 (ids of removed cgroups are reused; css ids come
  from idr_alloc, not a cyclic allocator). cgrp_css_online refuses ids above
  NETPRIO_ID_MAX (USHRT_MAX) with ENOSPC.
- ``net_prio.ifpriomap`` (0644) reads ``"<ifname> <prio>\\n"`` for every
  interface, 0 when unset. Writes are ``sscanf("%16s %u")``: leading blanks
  skipped, name up to IFNAMSIZ (16) chars, prio in decimal (wraps, truncated
  to u32, trailing junk ignored); a failed scan is EINVAL, an unknown name
  (exact, case-sensitive) ENODEV. A write changes only this cgroup.
- A child copies its parent's prio of every interface when created.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from fakefs.model.cftype import ControlFile, Controller, WriteContext
from fakefs.model.errors import KernelError, einval
from fakefs.model.kparse import KSPACE, scan_unsigned, skip_spaces

IFNAMSIZ = 16
NETPRIO_ID_MAX = 0xFFFF  # USHRT_MAX
ROOT_ID = 1
FIRST_CHILD_ID = 2  # css_create: cgroup_idr_alloc(&ss->css_idr, NULL, 2, 0, ...)

# Interfaces the model pretends init_net has (see the module docstring).
NET_INTERFACES: tuple[str, ...] = ("lo",)


def net_interfaces(cg) -> tuple[str, ...]:
    host_ifaces = cg.hierarchy.model.host.net_interfaces
    return tuple(host_ifaces if host_ifaces is not None else NET_INTERFACES)


@dataclass
class NetPrioState:
    prioidx: int
    prios: dict[str, int] = field(default_factory=dict)


class NetPrio(Controller):
    name = "net_prio"

    def new_state(self, cgroup):
        parent = cgroup.parent
        if parent is None:
            return NetPrioState(ROOT_ID)
        root = cgroup.hierarchy.root
        used = {self.state(root).prioidx}
        used.update(self.state(d).prioidx for d in root.descendants())
        idx = FIRST_CHILD_ID
        while idx in used:
            idx += 1
        if idx > NETPRIO_ID_MAX:
            raise KernelError(errno.ENOSPC, "net_prio ids exhausted")
        pst = self.state(parent)
        # cgrp_css_online: inherit the parent's prio of each existing device.
        return NetPrioState(idx, {dev: pst.prios.get(dev, 0) for dev in net_interfaces(cgroup)})


NET_PRIO = CONTROLLER = NetPrio()


def _st(cg) -> NetPrioState:
    return NET_PRIO.state(cg)


def _read_ifpriomap(cg) -> str:
    prios = _st(cg).prios
    return "".join(f"{dev} {prios.get(dev, 0)}\n" for dev in net_interfaces(cg))


def _write_ifpriomap(cg, text: str, ctx: WriteContext) -> None:
    """write_priomap(): sscanf("%16s %u", devname, &prio) == 2, then
    dev_get_by_name(&init_net)."""
    s = text
    i = skip_spaces(s, 0)
    if i >= len(s):
        raise einval("no interface name")
    start = i
    while i < len(s) and s[i] not in KSPACE and i - start < IFNAMSIZ:
        i += 1
    name = s[start:i]
    scanned = scan_unsigned(s, skip_spaces(s, i), 32)
    if scanned is None:
        raise einval("no priority")
    if name not in net_interfaces(cg):
        raise KernelError(errno.ENODEV, f"no interface {name!r}")
    _st(cg).prios[name] = scanned[0]


NET_PRIO.files = (
    ControlFile("net_prio.prioidx", 0o444, lambda cg: f"{_st(cg).prioidx}\n", None),
    ControlFile("net_prio.ifpriomap", 0o644, _read_ifpriomap, _write_ifpriomap),
)
