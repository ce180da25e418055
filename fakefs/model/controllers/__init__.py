"""One module per cgroup v1 controller, each declaring its control files.

``CONTROLLERS`` maps the controller name (as in /proc/cgroups and mount
options) to its singleton.
"""

from __future__ import annotations

import importlib

from fakefs.model.cftype import Controller

_MODULES = {
    "cpu": "cpu", "cpuacct": "cpuacct", "cpuset": "cpuset", "memory": "memory",
    "devices": "devices", "freezer": "freezer", "blkio": "blkio", "pids": "pids",
    "hugetlb": "hugetlb", "net_cls": "net_cls", "net_prio": "net_prio",
    "perf_event": "perf_event", "rdma": "rdma",
}


def _load() -> dict[str, Controller]:
    found: dict[str, Controller] = {}
    for name, module in _MODULES.items():
        mod = importlib.import_module(f"{__name__}.{module}")
        found[name] = getattr(mod, "CONTROLLER")
    return found


CONTROLLERS: dict[str, Controller] = _load()
