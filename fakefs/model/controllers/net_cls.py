"""net_cls controller (net/core/netclassid_cgroup.c ``ss_files``).

One file, ``net_cls.classid`` (0644, everywhere). Measured on Linux 6.18 (in a
private mount namespace): it is a write_u64 handler, so the value goes through
kstrtoull base 0 ("0x100001" and "010" are accepted, blanks are EINVAL, above
u64 is ERANGE) and is then stored in a u32 (write_classid: ``(u32)value``,
so 4294967296 reads back 0). Reads print the u32 in decimal. A child copies
its parent's classid when it comes online (cgrp_css_online).
"""

from __future__ import annotations

from dataclasses import dataclass

from fakefs.model.cftype import ControlFile, Controller, WriteContext
from fakefs.model.kparse import U32_MAX, kstrtoull


@dataclass
class NetClsState:
    classid: int = 0


class NetCls(Controller):
    name = "net_cls"

    def new_state(self, cgroup):
        if cgroup.parent is None:
            return NetClsState()
        return NetClsState(self.state(cgroup.parent).classid)


NET_CLS = CONTROLLER = NetCls()


def _write_classid(cg, text: str, ctx: WriteContext) -> None:
    NET_CLS.state(cg).classid = kstrtoull(text) & U32_MAX


NET_CLS.files = (
    ControlFile("net_cls.classid", 0o644, lambda cg: f"{NET_CLS.state(cg).classid}\n", _write_classid),
)
