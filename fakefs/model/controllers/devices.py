"""devices controller (security/device_cgroup.c, ``dev_cgroup_files``).

A cgroup has a default behaviour (allow-all or deny-all) and a list of
exceptions ``TYPE MAJOR:MINOR ACCESS``. Measured on Linux 6.18:

- ``devices.allow``/``devices.deny`` are 0200 with no read handler,
  ``devices.list`` is 0444; all three exist on the root and on children.
- Writes need CAP_SYS_ADMIN, checked before anything is parsed (EPERM even
  for garbage).
- The buffer is cut at its first NUL and strstrip()ed, then parsed by hand
  by devcgroup_update_access(): any text whose first char is ``a`` switches
  the behaviour; ``b``/``c`` must be followed by exactly one whitespace, a
  major (``*`` or up to 11 digits that fit a u32), ``:``, a minor, one
  whitespace and up to three of ``rwm`` (repeats allowed, anything after the
  third char ignored). Every other shape is EINVAL.
- A major/minor of 4294967295 is the wildcard ``~0`` and lists as ``*``.
- ``devices.list`` prints ``a *:* rwm`` for allow-all, else one line per
  exception in insertion order (accesses always printed in ``rwm`` order).
- A child copies its parent's behaviour and exceptions at mkdir; "a" writes
  are EINVAL while the cgroup has children; "allow a" is EPERM unless the
  parent allows all; a child may never gain access its parent lacks (EPERM);
  deny rules propagate to descendants, which are then revalidated.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from fakefs.model.cftype import ControlFile, Controller, WriteContext
from fakefs.model.errors import KernelError, einval
from fakefs.model.kparse import KSPACE, U32_MAX, kernel_strstrip, kstrtoull

ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
ACC_MASK = ACC_MKNOD | ACC_READ | ACC_WRITE
DEV_BLOCK, DEV_CHAR = 1, 2
WILDCARD = U32_MAX  # ~0 as a u32: what "*" parses to

ALLOW = "allow"  # DEVCG_DEFAULT_ALLOW
DENY = "deny"  # DEVCG_DEFAULT_DENY

@dataclass
class DevException:
    type: int
    major: int
    minor: int
    access: int

    def same_device(self, other: "DevException") -> bool:
        return (self.type, self.major, self.minor) == (other.type, other.major, other.minor)


@dataclass
class DevicesState:
    behavior: str = ALLOW
    exceptions: list[DevException] = field(default_factory=list)


def _copy(exceptions: list[DevException]) -> list[DevException]:
    return [DevException(e.type, e.major, e.minor, e.access) for e in exceptions]


class Devices(Controller):
    name = "devices"

    def new_state(self, cgroup):
        # devcgroup_online(): the root allows all; a child copies its
        # parent's behaviour and exception list.
        if cgroup.parent is None:
            return DevicesState()
        p = self.state(cgroup.parent)
        return DevicesState(p.behavior, _copy(p.exceptions))


DEVICES = CONTROLLER = Devices()


def _st(cg) -> DevicesState:
    return DEVICES.state(cg)


# -- exception list primitives ------------------------------------------------
def _exception_add(st: DevicesState, ex: DevException) -> None:
    """dev_exception_add(): merge access into a same-device entry, else append."""
    merged = False
    for walk in st.exceptions:
        if walk.same_device(ex):
            walk.access |= ex.access
            merged = True
    if not merged:
        st.exceptions.append(DevException(ex.type, ex.major, ex.minor, ex.access))


def _exception_rm(st: DevicesState, ex: DevException) -> None:
    """dev_exception_rm(): clear access bits of the same-device entry, drop it
    once no access is left. Exact device match only (no wildcard logic)."""
    access = ex.access
    keep = []
    for walk in st.exceptions:
        if walk.same_device(ex):
            walk.access &= ~access
            if not walk.access:
                continue
        keep.append(walk)
    st.exceptions[:] = keep


def _match(exceptions: list[DevException], ex: DevException) -> bool:
    """match_exception(): one exception covers the whole of ``ex``."""
    for e in exceptions:
        if (ex.type & DEV_BLOCK) and not (e.type & DEV_BLOCK):
            continue
        if (ex.type & DEV_CHAR) and not (e.type & DEV_CHAR):
            continue
        if e.major != WILDCARD and e.major != ex.major:
            continue
        if e.minor != WILDCARD and e.minor != ex.minor:
            continue
        if ex.access & ~e.access:
            continue
        return True
    return False


def _match_partial(exceptions: list[DevException], ex: DevException) -> bool:
    """match_exception_partial(): some exception overlaps any part of ``ex``."""
    for e in exceptions:
        if (ex.type & DEV_BLOCK) and not (e.type & DEV_BLOCK):
            continue
        if (ex.type & DEV_CHAR) and not (e.type & DEV_CHAR):
            continue
        if e.major != WILDCARD and ex.major != WILDCARD and e.major != ex.major:
            continue
        if e.minor != WILDCARD and ex.minor != WILDCARD and e.minor != ex.minor:
            continue
        if not (ex.access & e.access):
            continue
        return True
    return False


def _verify_new_ex(parent: DevicesState, ex: DevException, behavior: str) -> bool:
    """verify_new_ex(): may a child with ``behavior`` hold exception ``ex``?"""
    if parent.behavior == ALLOW:
        if behavior == ALLOW:
            return True  # the child's exception only restricts
        return not _match_partial(parent.exceptions, ex)
    return _match(parent.exceptions, ex)


def _parent_has_perm(cg, ex: DevException) -> bool:
    if cg.parent is None:
        return True
    return _verify_new_ex(_st(cg.parent), ex, _st(cg).behavior)


def _parent_allows_removal(cg, ex: DevException) -> bool:
    """parent_allows_removal(): an allow-all child may not drop (part of) an
    exception its parent holds."""
    if cg.parent is None or _st(cg).behavior == DENY:
        return True
    return not _match_partial(_st(cg.parent).exceptions, ex)


def _revalidate(cg) -> None:
    """revalidate_active_exceptions(): drop exceptions the parent no longer
    permits (each dropped entirely, as dev_exception_rm(devcg, ex) is called
    with the entry itself)."""
    st = _st(cg)
    for ex in list(st.exceptions):
        if ex in st.exceptions and not _parent_has_perm(cg, ex):
            _exception_rm(st, DevException(ex.type, ex.major, ex.minor, ex.access))


def _propagate(cg, ex: DevException) -> None:
    """propagate_exception(): pre-order walk of the descendants. The root's
    behaviour is that of the cgroup written to, not the immediate parent."""
    root_behavior = _st(cg).behavior
    for d in cg.descendants():
        dst = _st(d)
        if root_behavior == ALLOW and dst.behavior == ALLOW:
            _exception_add(dst, ex)
        else:
            _exception_rm(dst, ex)
        _revalidate(d)


# -- parsing ------------------------------------------------------------------
def _parse_number(b: str, i: int) -> tuple[int, int]:
    """The major/minor reader of devcgroup_update_access(): ``*`` or at most
    11 digits through kstrtou32(base 10); returns (value, next index)."""
    ch = b[i] if i < len(b) else "\0"
    if ch == "*":
        return WILDCARD, i + 1
    if not ("0" <= ch <= "9"):
        raise einval("major/minor is neither * nor a number")
    start = i
    for _count in range(11):
        i += 1
        if not (i < len(b) and "0" <= b[i] <= "9"):
            break
    value = kstrtoull(b[start:i], 10)  # kstrtou32(): -ERANGE, returned as -EINVAL
    if value > U32_MAX:
        raise einval("major/minor above u32")
    return value, i


def parse_rule(b: str) -> DevException | None:
    """devcgroup_update_access() parsing of a stripped buffer. Returns None
    for an ``a`` rule (behaviour change)."""
    first = b[:1]
    if first == "a":
        return None
    if first == "b":
        dev_type = DEV_BLOCK
    elif first == "c":
        dev_type = DEV_CHAR
    else:
        raise einval("type is not a, b or c")

    def at(i: int) -> str:
        return b[i] if i < len(b) else "\0"

    if at(1) not in KSPACE:
        raise einval("no space after type")
    major, i = _parse_number(b, 2)
    if at(i) != ":":
        raise einval("no ':' after major")
    minor, i = _parse_number(b, i + 1)
    if at(i) not in KSPACE:
        raise einval("no space after minor")
    access = 0
    i += 1
    for _count in range(3):
        ch = at(i)
        if ch == "r":
            access |= ACC_READ
        elif ch == "w":
            access |= ACC_WRITE
        elif ch == "m":
            access |= ACC_MKNOD
        elif ch in "\n\0":
            break
        else:
            raise einval(f"bad access char {ch!r}")
        i += 1
    return DevException(dev_type, major, minor, access)


# -- write handlers -----------------------------------------------------------
def _update_access(cg, filetype: str, text: str, ctx: WriteContext) -> None:
    if ctx.uid != 0:
        # capable(CAP_SYS_ADMIN) is the first check, before parsing.
        raise KernelError(errno.EPERM, "devices rules need CAP_SYS_ADMIN")
    b = kernel_strstrip(text)
    ex = parse_rule(b)
    st = _st(cg)
    parent = cg.parent
    if ex is None:
        if cg.children:
            # css_has_online_children(): the default cannot change under children.
            raise einval("cgroup has children")
        if filetype == ALLOW:
            if parent is not None and _st(parent).behavior != ALLOW:
                raise KernelError(errno.EPERM, "parent does not allow all")  # may_allow_all()
            st.exceptions = [] if parent is None else _copy(_st(parent).exceptions)
            st.behavior = ALLOW
        else:
            st.exceptions = []
            st.behavior = DENY
        return

    if filetype == ALLOW:
        if st.behavior == ALLOW:
            # Allow-all: an allow rule removes a matching exception, silently,
            # unless that would give back access the parent denies.
            if not _parent_allows_removal(cg, ex):
                raise KernelError(errno.EPERM, "parent denies this access")
            _exception_rm(st, ex)
            return
        if not _parent_has_perm(cg, ex):
            raise KernelError(errno.EPERM, "parent lacks this access")
        _exception_add(st, ex)
        return

    if st.behavior == DENY:
        _exception_rm(st, ex)
    else:
        _exception_add(st, ex)
    # "we only propagate new restrictions"
    _propagate(cg, ex)


def _write_allow(cg, text: str, ctx: WriteContext) -> None:
    _update_access(cg, ALLOW, text, ctx)


def _write_deny(cg, text: str, ctx: WriteContext) -> None:
    _update_access(cg, DENY, text, ctx)


# -- read handler ---------------------------------------------------------------
def _type_char(t: int) -> str:
    return {DEV_BLOCK: "b", DEV_CHAR: "c"}.get(t, "X")


def _access_str(access: int) -> str:
    # set_access(): fixed r, w, m order whatever the order written.
    return ("r" if access & ACC_READ else "") + ("w" if access & ACC_WRITE else "") + \
        ("m" if access & ACC_MKNOD else "")


def _majmin(n: int) -> str:
    return "*" if n == WILDCARD else str(n)


def _read_list(cg) -> str:
    """devcgroup_seq_show(): allow-all shows only ``a *:* rwm``; deny-all
    lists the exceptions (a whitelist), empty when there are none."""
    st = _st(cg)
    if st.behavior == ALLOW:
        return "a *:* rwm\n"
    return "".join(f"{_type_char(e.type)} {_majmin(e.major)}:{_majmin(e.minor)} {_access_str(e.access)}\n"
                   for e in st.exceptions)


DEVICES.files = (
    ControlFile("devices.allow", 0o200, None, _write_allow),
    ControlFile("devices.deny", 0o200, None, _write_deny),
    ControlFile("devices.list", 0o444, _read_list, None),
)
