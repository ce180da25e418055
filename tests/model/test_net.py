"""net_cls and net_prio: rules measured on Linux 6.18 by mounting each
controller in a private mount namespace (``unshare -m``) and working in
throwaway children. The VM's init_net had lo, ifb0, ifb1, eth0; the model's
interfaces come from ``net_prio.NET_INTERFACES`` (default ("lo",)).
"""

from __future__ import annotations

import errno

import pytest

from fakefs.model.controllers import net_prio
from fakefs.model.errors import KernelError
from fakefs.model.tree import CgroupModel
from tests.kernelio import write, write_errno as err

VM_IFACES = ("lo", "ifb0", "ifb1", "eth0")


@pytest.fixture
def h():
    return CgroupModel().hierarchy("net_cls,net_prio")


@pytest.fixture
def vm_ifaces(monkeypatch):
    monkeypatch.setattr(net_prio, "NET_INTERFACES", VM_IFACES)






# -- net_cls ----------------------------------------------------------------------
def test_net_cls_files(h):
    """Measured: one file net_cls.classid, 0644, '0' on the root."""
    files = h.files(h.root)
    assert files["net_cls.classid"].mode == 0o644
    assert h.read_file(h.root, "net_cls.classid") == "0\n"
    assert "net_cls.classid" in h.files(h.mkdir(h.root, "a"))


@pytest.mark.parametrize("text,shown", [
    ("0x100001", "1048577"), ("100", "100"), ("010", "8"), ("0x10", "16"), ("4294967295", "4294967295"),
    ("4294967296", "0"), ("4294967297", "1"), ("18446744073709551615", "4294967295"), ("5\n", "5"), ("0", "0"),
])
def test_classid_is_kstrtoull_truncated_to_u32(h, text, shown):
    """Measured: base-0 u64 parse, stored as u32, read back in decimal."""
    a = h.mkdir(h.root, "a")
    write(h, a, "net_cls.classid", text)
    assert h.read_file(a, "net_cls.classid") == shown + "\n"


@pytest.mark.parametrize("text,code", [
    ("18446744073709551616", errno.ERANGE), ("-1", errno.EINVAL), (" 5", errno.EINVAL), ("5 ", errno.EINVAL),
    ("abc", errno.EINVAL), ("\n", errno.EINVAL),
])
def test_classid_rejects(h, text, code):
    """Measured errnos; the old value stays."""
    a = h.mkdir(h.root, "a")
    write(h, a, "net_cls.classid", "7")
    assert err(h, a, "net_cls.classid", text) == code
    assert h.read_file(a, "net_cls.classid") == "7\n"


def test_classid_inherited_at_mkdir(h):
    """Measured: a child created under classid 16 reads 16."""
    a = h.mkdir(h.root, "a")
    write(h, a, "net_cls.classid", "0x10")
    assert h.read_file(h.mkdir(a, "b"), "net_cls.classid") == "16\n"


# -- net_prio: prioidx ---------------------------------------------------------------
def test_prioidx_is_read_only(h):
    """Measured: 0444 and a write is EINVAL."""
    a = h.mkdir(h.root, "a")
    assert h.files(a)["net_prio.prioidx"].mode == 0o444
    assert err(h, a, "net_prio.prioidx", "5") == errno.EINVAL


def test_prioidx_root_is_1_and_children_count_from_2(h):
    """Measured: root 1, then a=2, b=3, c=4."""
    assert h.read_file(h.root, "net_prio.prioidx") == "1\n"
    ids = [h.read_file(h.mkdir(h.root, n), "net_prio.prioidx") for n in "abc"]
    assert ids == ["2\n", "3\n", "4\n"]


def test_prioidx_reuses_the_lowest_free_id(h):
    """Measured: after rmdir b (id 3), d gets 3 and e gets 5; a grandchild
    then gets 6."""
    a, b, c = (h.mkdir(h.root, n) for n in "abc")
    h.rmdir(b)
    d = h.mkdir(h.root, "d")
    e = h.mkdir(h.root, "e")
    x = h.mkdir(a, "x")
    assert [h.read_file(cg, "net_prio.prioidx") for cg in (d, e, x)] == ["3\n", "5\n", "6\n"]


def test_mkdir_beyond_netprio_id_max_is_enospc(h, monkeypatch):
    """Source (cgrp_css_online: css->id > NETPRIO_ID_MAX (65535) -> ENOSPC);
    not measured. The limit is lowered to 4 so the test stays small."""
    monkeypatch.setattr(net_prio, "NETPRIO_ID_MAX", 4)
    h.mkdir(h.root, "a")
    b = h.mkdir(h.root, "b")
    h.mkdir(b, "c")
    with pytest.raises(KernelError) as info:
        h.mkdir(h.root, "d")
    assert info.value.errno == errno.ENOSPC
    assert "d" not in h.root.children
    h.rmdir(b.children["c"])
    assert h.read_file(h.mkdir(h.root, "d"), "net_prio.prioidx") == "4\n"


# -- net_prio: ifpriomap ---------------------------------------------------------------
def test_ifpriomap_default_lists_lo(h):
    """Model default interface list ("lo",); the format is measured."""
    assert h.read_file(h.root, "net_prio.ifpriomap") == "lo 0\n"


def test_ifpriomap_lists_every_interface(h, vm_ifaces):
    """Measured on the VM's root: 'lo 0\\nifb0 0\\nifb1 0\\neth0 0\\n'."""
    assert h.read_file(h.root, "net_prio.ifpriomap") == "lo 0\nifb0 0\nifb1 0\neth0 0\n"


@pytest.mark.parametrize("text,lo", [
    ("lo 5", 5), ("lo 0x10", 0), ("lo 010", 10), ("lo 4294967295", 4294967295), ("lo 4294967296", 0),
    ("lo 4294967297", 1), (" lo 9", 9), ("lo  11", 11), ("lo\t12", 12), ("lo 13abc", 13), ("lo 14 15", 14),
    ("lo\n5", 5), ("lo 18446744073709551617", 1), ("lo 6\n", 6), ("lo 7\x00junk", 7),
])
def test_ifpriomap_write_forms(h, vm_ifaces, text, lo):
    """Measured: sscanf("%16s %u"): decimal only, wraps, truncated to u32,
    junk after the number ignored; other interfaces keep their prio."""
    a = h.mkdir(h.root, "a")
    write(h, a, "net_prio.ifpriomap", "eth0 7")
    write(h, a, "net_prio.ifpriomap", text)
    assert h.read_file(a, "net_prio.ifpriomap") == f"lo {lo}\nifb0 0\nifb1 0\neth0 7\n"


@pytest.mark.parametrize("text,code", [
    ("lo -1", errno.EINVAL), ("lo +3", errno.EINVAL), ("lo", errno.EINVAL), ("lo ", errno.EINVAL),
    ("\n", errno.EINVAL), ("lo abc", errno.EINVAL), ("aaaaaaaaaaaaaaaaa 5", errno.EINVAL),
    ("nosuch 5", errno.ENODEV), ("aaaaaaaaaaaaaaaa 5", errno.ENODEV), ("aaaaaaaaaaaaaaaa5", errno.ENODEV),
    ("LO 3", errno.ENODEV),
])
def test_ifpriomap_errors(h, vm_ifaces, text, code):
    """Measured: a failed scan is EINVAL (a 17-char name leaves no number),
    an unknown name (exact, at most 16 chars) ENODEV."""
    a = h.mkdir(h.root, "a")
    assert err(h, a, "net_prio.ifpriomap", text) == code
    assert h.read_file(a, "net_prio.ifpriomap") == "lo 0\nifb0 0\nifb1 0\neth0 0\n"


def test_ifpriomap_inherited_at_mkdir_then_independent(h, vm_ifaces):
    """Measured: child x of a (lo 6, eth0 3) starts with the same map; its
    write 'lo 99' does not change a."""
    a = h.mkdir(h.root, "a")
    write(h, a, "net_prio.ifpriomap", "lo 6")
    write(h, a, "net_prio.ifpriomap", "eth0 3")
    x = h.mkdir(a, "x")
    assert h.read_file(x, "net_prio.ifpriomap") == "lo 6\nifb0 0\nifb1 0\neth0 3\n"
    write(h, x, "net_prio.ifpriomap", "lo 99")
    assert h.read_file(a, "net_prio.ifpriomap") == "lo 6\nifb0 0\nifb1 0\neth0 3\n"
    assert h.read_file(x, "net_prio.ifpriomap") == "lo 99\nifb0 0\nifb1 0\neth0 3\n"


def test_parent_write_after_mkdir_does_not_reach_child(h):
    """Source (write_priomap sets only this css): inheritance is a copy."""
    a = h.mkdir(h.root, "a")
    x = h.mkdir(a, "x")
    write(h, a, "net_prio.ifpriomap", "lo 4")
    assert h.read_file(x, "net_prio.ifpriomap") == "lo 0\n"
