"""rdma controller (kernel/cgroup/rdma.c ``rdmacg_files``).

NOT measured: the development VM's kernel is built without
CONFIG_CGROUP_RDMA (absent from /proc/cgroups, ``mount -o rdma`` fails), so
this follows the source. Both files are CFTYPE_NOT_ON_ROOT: ``rdma.max``
(0644) and ``rdma.current`` (0444). Reads print one line per registered RDMA
device, ``"<dev> hca_handle=<v> hca_object=<v> \\n"`` (note the space before
the newline), S32_MAX shown as "max"; with no devices both read empty.

RDMA devices come from ``HostFacts.rdma_devices`` when it is set, else from the module-level ``RDMA_DEVICES`` (empty by
default), so every well-formed write fails with ENODEV.

rdmacg_resource_set_max(): strstrip, the device name is the text up to the
first space, then space-separated ``name=value`` tokens: an unknown resource,
a missing ``=``, an empty token (two spaces) or a bad value is EINVAL; the
value is match_int() (simple_strtol base 0, trailing junk ignored, must fit an
int and be >= 0) or any prefix of "max" (even the empty one). Parsing comes
before the device lookup, so EINVAL wins over ENODEV.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from fakefs.model.cftype import ControlFile, Controller, Placement, WriteContext
from fakefs.model.errors import KernelError, einval
from fakefs.model.kparse import INT_MAX, INT_MIN, kernel_strstrip, simple_strtoull, to_s64

RESOURCES = ("hca_handle", "hca_object")
NUMBER_BUF_LEN = 24  # lib/parser.c: longer values are ERANGE

# RDMA devices the model pretends are registered (see the module docstring).
RDMA_DEVICES: tuple[str, ...] = ()


def rdma_devices(cg) -> tuple[str, ...]:
    host_devices = cg.hierarchy.model.host.rdma_devices
    return tuple(host_devices if host_devices is not None else RDMA_DEVICES)


@dataclass
class RdmaState:
    # device -> [max per resource]; absent = every limit "max" (no rpool).
    rpools: dict[str, list[int]] = field(default_factory=dict)


class Rdma(Controller):
    name = "rdma"

    def new_state(self, cgroup):
        return RdmaState()


RDMA = CONTROLLER = Rdma()


def _st(cg) -> RdmaState:
    return RDMA.state(cg)


def _match_int(value: str) -> int | None:
    """lib/parser.c match_int() -> match_number(base 0): None on failure."""
    if len(value) >= NUMBER_BUF_LEN:
        return None  # -ERANGE
    negative = value.startswith("-")
    body = value[1:] if negative else value
    parsed, end = simple_strtoull(body, 0, 0)
    if end == 0 and not negative:
        # -EINVAL: nothing parsed. After a '-', simple_strtol's end pointer is
        # past the sign even when no digit follows, so "-" alone parses as 0.
        return None
    # simple_strtol(): a long, so the u64 wraps to signed.
    if negative:
        parsed = -parsed
    parsed = to_s64(parsed)
    if not INT_MIN <= parsed <= INT_MAX:
        return None  # -ERANGE
    return parsed


def _parse_resource(token: str) -> tuple[int, int]:
    """parse_resource(): returns (resource index, limit)."""
    name, eq, value = token.partition("=")
    if not eq:
        raise einval("resource without '='")
    if name not in RESOURCES:
        raise einval(f"unknown resource {name!r}")
    index = RESOURCES.index(name)
    number = _match_int(value)
    if number is not None:
        if number < 0:
            raise einval("negative limit")
        return index, number
    if "max".startswith(value):  # strncmp(value, "max", strlen(value)) == 0
        return index, INT_MAX
    raise einval(f"bad limit {value!r}")


def _write_max(cg, text: str, ctx: WriteContext) -> None:
    options = kernel_strstrip(text)
    dev_name, space, rest = options.partition(" ")
    limits: dict[int, int] = {}
    if space:
        for token in rest.split(" "):
            index, value = _parse_resource(token)
            limits[index] = value
    if dev_name not in rdma_devices(cg):
        raise KernelError(errno.ENODEV, f"no rdma device {dev_name!r}")
    pool = _st(cg).rpools.setdefault(dev_name, [INT_MAX] * len(RESOURCES))
    for index, value in limits.items():
        pool[index] = value
    if all(v == INT_MAX for v in pool):
        # No charges in the model, so an all-max rpool is freed at once.
        del _st(cg).rpools[dev_name]


def _fmt(value: int) -> str:
    return "max" if value == INT_MAX else str(value)


def _read_max(cg) -> str:
    out = []
    for dev in rdma_devices(cg):
        pool = _st(cg).rpools.get(dev, [INT_MAX] * len(RESOURCES))
        out.append(f"{dev} " + "".join(f"{r}={_fmt(v)} " for r, v in zip(RESOURCES, pool)) + "\n")
    return "".join(out)


def _read_current(cg) -> str:
    # No RDMA resources are ever charged in the model: usage is 0.
    return "".join(f"{dev} " + "".join(f"{r}=0 " for r in RESOURCES) + "\n" for dev in rdma_devices(cg))


RDMA.files = (
    ControlFile("rdma.max", 0o644, _read_max, _write_max, Placement.NOT_ON_ROOT),
    ControlFile("rdma.current", 0o444, _read_current, None, Placement.NOT_ON_ROOT),
)
