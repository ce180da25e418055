"""devices controller: rules measured on Linux 6.18 (security/device_cgroup.c)
on throwaway children of /sys/fs/cgroup/devices, two levels deep.

Every expected value below was observed on the real kernel unless a test says
otherwise; the parent/child scenarios replay the measured sequences.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.model.tree import CgroupModel
from tests import kernelio

INVENTORY = Path(__file__).with_name("real_inventory.json")


@pytest.fixture
def h():
    return CgroupModel().hierarchy("devices")


def write(h, cg, name, data, ctx=WriteContext()):
    return kernelio.write(h, cg, "devices." + name, data, ctx)


def err(h, cg, name, data, ctx=WriteContext()):
    return kernelio.write_errno(h, cg, "devices." + name, data, ctx)


def lst(h, cg):
    return h.read_file(cg, "devices.list")


def tree(h):
    """A, A/b, A/b/c as in the measurements."""
    a = h.mkdir(h.root, "a")
    b = h.mkdir(a, "b")
    c = h.mkdir(b, "c")
    return a, b, c


# -- files ---------------------------------------------------------------------
@pytest.mark.parametrize("where", ["root", "child"])
def test_files_modes_and_contents_match_real_inventory(h, where):
    """Measured: allow/deny 0200 (read EINVAL), list 0444 'a *:* rwm'."""
    real = json.loads(INVENTORY.read_text())["devices"][where]
    cg = h.root if where == "root" else h.mkdir(h.root, "x")
    files = h.files(cg)
    assert sorted(files) == sorted(real)
    for name in ("devices.allow", "devices.deny", "devices.list"):
        mode, content = real[name]
        assert files[name].mode == int(mode, 8)
        if content == "ERR 22":
            with pytest.raises(KernelError) as info:
                h.read_file(cg, name)
            assert info.value.errno == errno.EINVAL
        else:
            assert h.read_file(cg, name) == content


# -- parsing (measured on a fresh allow-all child) -------------------------------
ACCEPTED = [
    "c 1:3 rwm", "c 1:3 rwm\n", "  c 1:3 rwm  \n", "c 1:3 rrrr", "c 1:3 rwmx", "c\t1:3\tr",
    "c *:* r", "c *:3 r", "c 1:* r", "b 8:0 r", "c 1:3 r\0junk", "c 4294967295:1 r",
    "c 00000000001:1 r", "c 1:3 mwr", "c 1:3 wm",
]
REJECTED = [
    "c 1:3", "c 1:3 ", "c 1:3 rwxm", "c 1:3 x", "c 1:3 r w", "c  1:3 r", "c 1 r", "c 1: r",
    "c :3 r", "x 1:3 r", "C 1:3 r", "\n", " ", "c", "c ", "c 4294967296:1 r",
    "c 000000000001:1 r", "c 12345678901:1 r", "c -1:1 r", "c +1:1 r", "c 0x1:1 r",
]


@pytest.mark.parametrize("rule", ACCEPTED)
@pytest.mark.parametrize("filename", ["allow", "deny"])
def test_well_formed_rules_are_accepted(h, filename, rule):
    """Measured: these all return the full byte count on allow and deny."""
    a = h.mkdir(h.root, "a")
    assert write(h, a, filename, rule) == len(rule.encode("latin-1"))


@pytest.mark.parametrize("rule", REJECTED)
@pytest.mark.parametrize("filename", ["allow", "deny"])
def test_malformed_rules_are_einval_and_change_nothing(h, filename, rule):
    """Measured: EINVAL (one blank exactly after the type and the minor, at
    most 11 digits fitting a u32, access chars only r/w/m, no +/-/0x)."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    write(h, a, "allow", "c 9:9 r")
    assert err(h, a, filename, rule) == errno.EINVAL
    assert lst(h, a) == "c 9:9 r\n"


def test_empty_write_is_a_noop(h):
    """Measured: write of 0 bytes returns 0."""
    a = h.mkdir(h.root, "a")
    assert write(h, a, "deny", "") == 0
    assert lst(h, a) == "a *:* rwm\n"


@pytest.mark.parametrize("rule", ["abc", "a *:* rwm", "a 1:3 r", "aaaa", "a"])
def test_anything_starting_with_a_switches_to_deny_all(h, rule):
    """Measured: only the first char is looked at for 'a' rules."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", rule)
    assert lst(h, a) == ""


def test_nonroot_writer_gets_eperm_even_for_garbage(h):
    """Measured with CAP_SYS_ADMIN dropped: EPERM for a rule, garbage and 'a'."""
    a = h.mkdir(h.root, "a")
    user = WriteContext(uid=1000)
    assert err(h, a, "deny", "c 1:3 r", user) == errno.EPERM
    assert err(h, a, "deny", "garbage", user) == errno.EPERM
    assert err(h, a, "allow", "a", user) == errno.EPERM
    assert lst(h, a) == "a *:* rwm\n"


# -- list formatting in deny-all (measured sequence) ------------------------------
def test_deny_all_lists_nothing(h):
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    assert lst(h, a) == ""


def test_allow_rules_merge_per_device_and_print_in_rwm_order(h):
    """Measured: c 1:3 r, then w, then m merge into 'c 1:3 rwm'; 'mr' prints
    'rm'; insertion order is kept."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    write(h, a, "allow", "c 1:3 r")
    assert lst(h, a) == "c 1:3 r\n"
    write(h, a, "allow", "c 1:3 w")
    write(h, a, "allow", "c 1:3 m")
    write(h, a, "allow", "b 8:0 mr")
    assert lst(h, a) == "c 1:3 rwm\nb 8:0 rm\n"


def test_u32_max_major_minor_is_the_wildcard(h):
    """Measured: 'c 4294967295:4294967295 rw' lists as 'c *:* rw' and merges
    with a later 'c *:* m'."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    write(h, a, "allow", "c 4294967295:4294967295 rw")
    assert lst(h, a) == "c *:* rw\n"
    write(h, a, "allow", "c *:* m")
    assert lst(h, a) == "c *:* rwm\n"


def test_leading_zeros_name_the_same_device(h):
    """Measured: 'c 01:3 r' merged into the existing 'c 1:3' entry."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    write(h, a, "allow", "c 1:3 w")
    write(h, a, "allow", "c 01:3 r")
    assert lst(h, a) == "c 1:3 rw\n"


def test_deny_in_deny_all_removes_access_exactly(h):
    """Measured sequence: deny removes bits from the same-device entry only
    (no wildcard matching), the entry goes when no access is left."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    for rule in ("c 1:3 rwm", "b 8:0 rm", "c *:* rwm", "b 8:* rwm"):
        write(h, a, "allow", rule)
    write(h, a, "deny", "c 1:3 r")
    assert lst(h, a) == "c 1:3 wm\nb 8:0 rm\nc *:* rwm\nb 8:* rwm\n"
    write(h, a, "deny", "c 1:3 wm")
    write(h, a, "deny", "c *:* rwm")
    assert lst(h, a) == "b 8:0 rm\nb 8:* rwm\n"
    write(h, a, "deny", "b 8:* w")
    write(h, a, "deny", "b 8:0 rwm")
    write(h, a, "deny", "c 9:9 r")
    assert lst(h, a) == "b 8:* rm\n"


def test_allow_all_hides_exceptions_and_allow_a_clears_them(h):
    """Measured: in allow-all the list is 'a *:* rwm' whatever was denied;
    'deny a' clears the exceptions (the list is empty, not the old denials)."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "c 1:3 rw")
    assert lst(h, a) == "a *:* rwm\n"
    write(h, a, "deny", "a")
    assert lst(h, a) == ""


# -- hierarchy ----------------------------------------------------------------------
def test_child_copies_parent_state_at_mkdir(h):
    """Measured: B and C list A's whitelist right after mkdir."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    for rule in ("c 1:3 rw", "c 5:* r", "b 8:0 rwm"):
        write(h, a, "allow", rule)
    b = h.mkdir(a, "b")
    c = h.mkdir(b, "c")
    assert lst(h, b) == lst(h, c) == "c 1:3 rw\nc 5:* r\nb 8:0 rwm\n"


def test_a_rules_are_einval_with_children(h):
    """Measured: 'allow a' and 'deny a' on a cgroup with a child: EINVAL."""
    a, b, c = tree(h)
    assert err(h, a, "allow", "a") == errno.EINVAL
    assert err(h, a, "deny", "a") == errno.EINVAL
    assert err(h, b, "allow", "a") == errno.EINVAL


def test_allow_a_needs_an_allow_all_parent(h):
    """Measured: C (no children) under a deny-all B: 'allow a' is EPERM."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    b = h.mkdir(a, "b")
    c = h.mkdir(b, "c")
    assert err(h, c, "allow", "a") == errno.EPERM


def test_child_cannot_gain_access_under_deny_all_parent(h):
    """Measured: under A's whitelist 'c 1:3 rw, c 5:* r, b 8:0 rwm', C may add
    'c 5:2 r' (covered) but not 'c 1:3 m', 'c 5:* rw' or 'c *:* r'."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    for rule in ("c 1:3 rw", "c 5:* r", "b 8:0 rwm"):
        write(h, a, "allow", rule)
    b = h.mkdir(a, "b")
    c = h.mkdir(b, "c")
    assert err(h, c, "allow", "c 1:3 m") == errno.EPERM
    assert write(h, c, "allow", "c 5:2 r") == 7
    assert err(h, c, "allow", "c 5:* rw") == errno.EPERM
    assert err(h, c, "allow", "c *:* r") == errno.EPERM
    assert lst(h, c) == "c 1:3 rw\nc 5:* r\nb 8:0 rwm\nc 5:2 r\n"


def test_deny_propagates_and_revalidates_descendants(h):
    """Measured: B denies 'c 5:* r': C loses 'c 5:* r' and, on revalidation,
    its 'c 5:2 r'; A is untouched. Then A denies 'b 8:0 m' and B, C lose m."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    for rule in ("c 1:3 rw", "c 5:* r", "b 8:0 rwm"):
        write(h, a, "allow", rule)
    b = h.mkdir(a, "b")
    c = h.mkdir(b, "c")
    write(h, c, "allow", "c 5:2 r")
    write(h, b, "deny", "c 5:* r")
    assert lst(h, a) == "c 1:3 rw\nc 5:* r\nb 8:0 rwm\n"
    assert lst(h, b) == lst(h, c) == "c 1:3 rw\nb 8:0 rwm\n"
    write(h, b, "deny", "c 1:3 w")
    assert lst(h, c) == "c 1:3 r\nb 8:0 rwm\n"
    write(h, a, "deny", "b 8:0 m")
    assert lst(h, a) == "c 1:3 rw\nc 5:* r\nb 8:0 rw\n"
    assert lst(h, b) == lst(h, c) == "c 1:3 r\nb 8:0 rw\n"


def test_new_allow_is_not_propagated(h):
    """Measured: B re-allows 'c 5:* r' (A has it); C does not get it. A deny
    of an entry B lacks leaves B alone."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    b = h.mkdir(a, "b")
    write(h, a, "allow", "c 1:1 r")
    assert lst(h, a) == "c 1:1 r\n"
    assert lst(h, b) == ""
    write(h, b, "allow", "c 1:1 r")
    write(h, a, "deny", "c 1:1 r")
    assert lst(h, a) == lst(h, b) == ""


def test_deny_all_child_under_allow_all_parent_may_not_overlap_parent_denials(h):
    """Measured: A allow-all denies 'c 1:3 rw'; deny-all C may allow 'c 1:3 m',
    'c 7:7 rwm', 'c 1:* m' but not 'c 1:3 r' or 'c 1:* w' (partial match)."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "c 1:3 rw")
    b = h.mkdir(a, "b")
    c = h.mkdir(b, "c")
    write(h, c, "deny", "a")
    write(h, c, "allow", "c 1:3 m")
    write(h, c, "allow", "c 7:7 rwm")
    assert err(h, c, "allow", "c 1:3 r") == errno.EPERM
    assert err(h, c, "allow", "c 1:* w") == errno.EPERM
    write(h, c, "allow", "c 1:* m")
    assert lst(h, c) == "c 1:3 m\nc 7:7 rwm\nc 1:* m\n"


def test_allow_all_child_may_not_remove_parents_denial(h):
    """Measured: allow-all B under A (which denies 'c 1:3 rw'): allowing
    'c 1:3 rw' or 'c 1:3 r' is EPERM, 'c 1:3 m' and unrelated devices are fine."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "c 1:3 rw")
    b = h.mkdir(a, "b")
    assert err(h, b, "allow", "c 1:3 rw") == errno.EPERM
    assert err(h, b, "allow", "c 1:3 r") == errno.EPERM
    assert write(h, b, "allow", "c 1:3 m") == 7
    assert write(h, b, "allow", "c 9:9 r") == 7


def test_allow_all_ancestor_deny_reaches_allow_and_deny_descendants(h):
    """Measured: A (allow) denies 'c 7:* m': allow-all B records it (C can no
    longer allow 'c 7:8 m'), deny-all C drops 'c 7:7 rwm' on revalidation.
    Then B denies 'c 1:* m': C loses 'c 1:* m' and 'c 1:3 m'."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "c 1:3 rw")
    b = h.mkdir(a, "b")
    c = h.mkdir(b, "c")
    write(h, c, "deny", "a")
    for rule in ("c 1:3 m", "c 7:7 rwm", "c 1:* m"):
        write(h, c, "allow", rule)
    write(h, a, "deny", "c 7:* m")
    assert lst(h, a) == lst(h, b) == "a *:* rwm\n"
    assert lst(h, c) == "c 1:3 m\nc 1:* m\n"
    write(h, b, "deny", "c 1:* m")
    assert lst(h, c) == ""
    assert write(h, c, "allow", "c 7:8 r") == 7
    assert err(h, c, "allow", "c 7:8 m") == errno.EPERM


def test_allow_a_copies_the_parents_exceptions(h):
    """Measured: C switched back to allow-all inherits B's denials: allowing
    'c 1:* m' or 'c 7:* m' (removing them) is then EPERM."""
    a = h.mkdir(h.root, "a")
    b = h.mkdir(a, "b")
    c = h.mkdir(b, "c")
    write(h, c, "deny", "a")
    write(h, b, "deny", "c 1:* m")
    write(h, b, "deny", "c 7:* m")
    write(h, c, "allow", "a")
    assert lst(h, c) == "a *:* rwm\n"
    assert err(h, c, "allow", "c 1:* m") == errno.EPERM
    assert err(h, c, "allow", "c 7:* m") == errno.EPERM


def test_root_may_switch_when_childless(h):
    """Source (never measured: real root files are not written): the root has
    no parent, so any rule is accepted and 'allow a' restores allow-all."""
    write(h, h.root, "deny", "a")
    write(h, h.root, "allow", "c 1:3 r")
    assert lst(h, h.root) == "c 1:3 r\n"
    write(h, h.root, "allow", "a")
    assert lst(h, h.root) == "a *:* rwm\n"


def test_latin1_nbsp_counts_as_whitespace(h):
    """Measured: the kernel's isspace() includes 0xa0, as separator and when
    strstrip() trims."""
    a = h.mkdir(h.root, "a")
    write(h, a, "deny", "a")
    write(h, a, "allow", b"c\xa01:3\xa0r")
    write(h, a, "allow", b"c 1:4 w\xa0")
    assert lst(h, a) == "c 1:3 r\nc 1:4 w\n"
