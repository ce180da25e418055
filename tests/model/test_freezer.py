"""freezer controller model.

Measured on Linux 6.18 in an empty throwaway tree p/c/g of
/sys/fs/cgroup/freezer (no process was ever frozen): accepted spellings of
freezer.state (strstrip incl. \\xa0, NUL ends the buffer, case-sensitive,
FREEZING EINVAL), FROZEN/self/parent on every level after freezing p,
thawing c under a frozen p (accepted, stays FROZEN), freezing c then thawing
p (c stays FROZEN, self 1), a group created under a frozen one (FROZEN,
parent 1). FREEZING with unfrozen tasks follows update_if_frozen() (source).
"""

import errno

import pytest

from fakefs.model.controllers.freezer import FREEZER
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from tests.kernelio import write as w


def setup():
    procs = StaticProcessTable()
    model = CgroupModel(host=HostFacts(), processes=procs, hierarchies=["freezer"])
    h = model.hierarchy("freezer")
    p = h.mkdir(h.root, "p")
    c = h.mkdir(p, "c")
    g = h.mkdir(c, "g")
    return h, procs, p, c, g




def look(h, cg):
    return (h.read_file(cg, "freezer.state").strip(), h.read_file(cg, "freezer.self_freezing").strip(),
            h.read_file(cg, "freezer.parent_freezing").strip())


def test_no_files_on_root():
    h, *_ = setup()
    assert not [n for n in h.files(h.root) if n.startswith("freezer.")]


def test_modes():
    h, _, p, *_ = setup()
    files = h.files(p)
    assert files["freezer.state"].mode == 0o644
    assert files["freezer.self_freezing"].mode == 0o444
    assert files["freezer.parent_freezing"].mode == 0o444


def test_default_thawed():
    h, _, p, *_ = setup()
    assert look(h, p) == ("THAWED", "0", "0")


@pytest.mark.parametrize("text", ["FROZEN", "FROZEN\n", " FROZEN", "FROZEN\n\n", "\vFROZEN\f",
                                  "FROZEN\xa0", "FROZEN\t\r", "FROZEN\0junk"])
def test_freeze_spellings(text):
    h, _, p, *_ = setup()
    w(h, p, "freezer.state", text)
    assert look(h, p) == ("FROZEN", "1", "0")


@pytest.mark.parametrize("text", ["frozen", "thawed", "FREEZING", "FROZENX", "THAWED\x85", "\n"])
def test_rejected_spellings(text):
    h, _, p, *_ = setup()
    with pytest.raises(KernelError) as exc:
        w(h, p, "freezer.state", text)
    assert exc.value.errno == errno.EINVAL
    assert look(h, p) == ("THAWED", "0", "0")


def test_freezing_parent_freezes_subtree():
    h, _, p, c, g = setup()
    w(h, p, "freezer.state", "FROZEN")
    assert look(h, p) == ("FROZEN", "1", "0")
    assert look(h, c) == ("FROZEN", "0", "1")
    assert look(h, g) == ("FROZEN", "0", "1")


def test_child_cannot_thaw_under_frozen_parent():
    h, _, p, c, g = setup()
    w(h, p, "freezer.state", "FROZEN")
    w(h, c, "freezer.state", "THAWED")  # accepted
    assert look(h, c) == ("FROZEN", "0", "1")


def test_self_frozen_child_survives_parent_thaw():
    h, _, p, c, g = setup()
    w(h, p, "freezer.state", "FROZEN")
    w(h, c, "freezer.state", "FROZEN")
    assert look(h, c) == ("FROZEN", "1", "1")
    w(h, p, "freezer.state", "THAWED")
    assert look(h, p) == ("THAWED", "0", "0")
    assert look(h, c) == ("FROZEN", "1", "0")
    assert look(h, g) == ("FROZEN", "0", "1")
    w(h, c, "freezer.state", "THAWED")
    assert look(h, g) == ("THAWED", "0", "0")


def test_freezing_leaf_leaves_ancestors_thawed():
    h, _, p, c, g = setup()
    w(h, g, "freezer.state", "FROZEN")
    assert look(h, g) == ("FROZEN", "1", "0")
    assert look(h, c) == ("THAWED", "0", "0")


def test_new_group_under_frozen_parent_starts_frozen():
    h, _, p, c, g = setup()
    w(h, g, "freezer.state", "FROZEN")
    n = h.mkdir(g, "n")
    assert look(h, n) == ("FROZEN", "0", "1")


def test_freezing_until_tasks_are_frozen(monkeypatch):
    h, procs, p, c, g = setup()
    procs.spawn(100)
    w(h, g, "cgroup.procs", "100")
    monkeypatch.setattr(FREEZER, "task_frozen", lambda tid: tid != 100)
    w(h, p, "freezer.state", "FROZEN")
    assert look(h, g)[0] == "FREEZING"
    assert look(h, c)[0] == "FREEZING"  # a child not yet frozen holds the parent back
    monkeypatch.setattr(FREEZER, "task_frozen", lambda tid: True)
    assert look(h, p)[0] == "FROZEN"
