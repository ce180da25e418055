"""pids controller model.

Measured on Linux 6.18 in throwaway children of /sys/fs/cgroup/pids:
pids.max parsing (strstrip, "max", kstrtoll base 0, "MAX"/-1/4194305
EINVAL, s64 overflow ERANGE, NUL ends the buffer), a `sleep` moved into a
group with pids.max 0 (allowed; current 1 > max 0), and pids.peak after
moving that task child -> parent -> root: parent peak 2 with current never
above 1 (charge-before-uncharge in pids_can_attach). pids.events on v1 is
the local fork-failure count (pids_events_show, from the source).
"""

import errno

import pytest

from fakefs.model.controllers.pids import PIDS
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from tests.kernelio import write as w


def setup():
    procs = StaticProcessTable()
    model = CgroupModel(host=HostFacts(), processes=procs, hierarchies=["pids"])
    return model.hierarchy("pids"), procs




def r(h, cg, name):
    return h.read_file(cg, name)


def test_no_files_on_root():
    h, _ = setup()
    assert not [n for n in h.files(h.root) if n.startswith("pids.")]


def test_child_defaults():
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    assert [r(h, c, f) for f in ("pids.max", "pids.current", "pids.peak", "pids.events")] == \
        ["max\n", "0\n", "0\n", "max 0\n"]


@pytest.mark.parametrize("text, shown", [
    ("max\n", "max\n"), (" max", "max\n"), ("max\n\n", "max\n"), ("0x10", "16\n"), ("010", "8\n"),
    ("+5", "5\n"), ("-0", "0\n"), ("4194304", "4194304\n"), (" 5 ", "5\n"), ("5\0junk", "5\n"),
    ("7\xa0", "7\n"),
])
def test_max_accepts(text, shown):
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    w(h, c, "pids.max", "3")
    w(h, c, "pids.max", text)
    assert r(h, c, "pids.max") == shown


@pytest.mark.parametrize("text, code", [
    ("MAX", errno.EINVAL), ("-1", errno.EINVAL), ("4194305", errno.EINVAL), ("maxx", errno.EINVAL),
    ("99999999999999999999", errno.ERANGE),
])
def test_max_rejects(text, code):
    h, _ = setup()
    c = h.mkdir(h.root, "c")
    with pytest.raises(KernelError) as exc:
        w(h, c, "pids.max", text)
    assert exc.value.errno == code
    assert r(h, c, "pids.max") == "max\n"


def test_current_counts_threads_of_the_subtree():
    h, procs = setup()
    procs.spawn(100, threads=3)
    procs.spawn(200)
    p = h.mkdir(h.root, "p")
    c = h.mkdir(p, "c")
    w(h, p, "cgroup.procs", "100")
    w(h, c, "cgroup.procs", "200")
    assert r(h, p, "pids.current") == "4\n"
    assert r(h, c, "pids.current") == "1\n"


def test_attach_over_limit_is_allowed():
    h, procs = setup()
    procs.spawn(100)
    c = h.mkdir(h.root, "c")
    w(h, c, "pids.max", "0")
    w(h, c, "cgroup.procs", "100")
    assert r(h, c, "pids.current") == "1\n"
    assert r(h, c, "pids.max") == "0\n"


def test_peak_counts_transient_charge_on_migration():
    """Measured sequence: into c, up to p, out to root."""
    h, procs = setup()
    procs.spawn(100)
    p = h.mkdir(h.root, "p")
    c = h.mkdir(p, "c")
    w(h, c, "cgroup.procs", "100")
    assert (r(h, p, "pids.peak"), r(h, c, "pids.peak")) == ("1\n", "1\n")
    w(h, p, "cgroup.procs", "100")
    assert (r(h, p, "pids.current"), r(h, p, "pids.peak")) == ("1\n", "2\n")
    assert (r(h, c, "pids.current"), r(h, c, "pids.peak")) == ("0\n", "1\n")
    w(h, h.root, "cgroup.procs", "100")
    assert (r(h, p, "pids.current"), r(h, p, "pids.peak")) == ("0\n", "2\n")


def test_peak_keeps_counts_seen_after_exit():
    h, procs = setup()
    procs.spawn(100, threads=2)
    c = h.mkdir(h.root, "c")
    w(h, c, "cgroup.procs", "100")
    procs.exit(100)
    assert r(h, c, "pids.current") == "0\n"
    assert r(h, c, "pids.peak") == "2\n"


def test_moving_within_the_group_charges_nothing():
    h, procs = setup()
    procs.spawn(100)
    c = h.mkdir(h.root, "c")
    w(h, c, "cgroup.procs", "100")
    w(h, c, "cgroup.procs", "100")
    assert r(h, c, "pids.peak") == "1\n"


def test_fork_over_ancestor_limit_counts_locally():
    h, procs = setup()
    procs.spawn(100)
    p = h.mkdir(h.root, "p")
    c = h.mkdir(p, "c")
    w(h, c, "cgroup.procs", "100")
    w(h, p, "pids.max", "1")
    with pytest.raises(KernelError) as exc:
        PIDS.check_fork(c)
    assert exc.value.errno == errno.EAGAIN
    assert r(h, c, "pids.events") == "max 1\n"
    assert r(h, p, "pids.events") == "max 0\n"


def test_fork_under_limit_is_allowed():
    h, procs = setup()
    procs.spawn(100)
    c = h.mkdir(h.root, "c")
    w(h, c, "cgroup.procs", "100")
    w(h, c, "pids.max", "2")
    PIDS.check_fork(c)
    assert r(h, c, "pids.events") == "max 0\n"
