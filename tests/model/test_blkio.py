"""blkio controller: rules measured on Linux 6.18 on throwaway children of
/sys/fs/cgroup/blkio, with the VM's disk vda (254:0, mq-deadline scheduler)
and a bogus 250:250. The model gets its disks from
``blkio.BLOCK_DEVICES``; tests that need a disk set it to ((254, 0),).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from fakefs.model.controllers import blkio
from fakefs.model.errors import KernelError
from fakefs.model.tree import CgroupModel
from tests import kernelio

INVENTORY = Path(__file__).with_name("real_inventory.json")
VDA = (254, 0)
STATS_254 = ("254:0 Read 0\n254:0 Write 0\n254:0 Sync 0\n254:0 Async 0\n"
             "254:0 Discard 0\n254:0 Total 0\nTotal 0\n")


@pytest.fixture
def h():
    return CgroupModel().hierarchy("blkio")


@pytest.fixture
def disk(monkeypatch):
    monkeypatch.setattr(blkio, "BLOCK_DEVICES", (VDA,))


def write(h, cg, name, data):
    return kernelio.write(h, cg, "blkio." + name, data)


def err(h, cg, name, data):
    return kernelio.write_errno(h, cg, "blkio." + name, data)


def read(h, cg, name):
    return h.read_file(cg, "blkio." + name)


# -- files ---------------------------------------------------------------------
@pytest.mark.parametrize("where", ["root", "child"])
def test_files_modes_and_contents_match_real_inventory(h, where):
    """Measured listing: bfq.weight/weight_device only on children, throttle
    files everywhere, reset_stats 0200 (read EINVAL), stats 'Total 0'."""
    real = json.loads(INVENTORY.read_text())["blkio"][where]
    cg = h.root if where == "root" else h.mkdir(h.root, "x")
    files = h.files(cg)
    assert sorted(files) == sorted(real)
    for name, (mode, content) in real.items():
        if not name.startswith("blkio."):
            continue
        assert files[name].mode == int(mode, 8), name
        if content == "ERR 22":
            with pytest.raises(KernelError) as info:
                h.read_file(cg, name)
            assert info.value.errno == errno.EINVAL
        else:
            assert h.read_file(cg, name) == content, name


# -- throttle: device lookup ------------------------------------------------------
def test_no_disks_means_every_device_is_enodev(h):
    """Model default: no disks, so even 254:0 is ENODEV like the bogus
    250:250 measured on the VM."""
    a = h.mkdir(h.root, "a")
    assert err(h, a, "throttle.read_bps_device", "254:0 1000") == errno.ENODEV
    assert err(h, a, "throttle.read_bps_device", "250:250 1000") == errno.ENODEV


@pytest.mark.parametrize("text", ["250:250 1000", "254:1 5", "1:3 5", "8:0 5", "250:250 abc", "250:250 "])
def test_unknown_device_is_enodev_before_the_value_is_parsed(h, disk, text):
    """Measured: ENODEV for a missing disk (or a minor that is not a whole
    disk), even when the value is garbage or missing after the blank."""
    a = h.mkdir(h.root, "a")
    assert err(h, a, "throttle.write_iops_device", text) == errno.ENODEV


@pytest.mark.parametrize("text", ["254:0", "250:250", "254 5", "abc", "\n", "254 :0 8", "-1:0 5",
                                  "+254:0 9", "254:0x 5", "254:0:1 5", "254:0,5", "vda 5"])
def test_bad_device_syntax_is_einval(h, disk, text):
    """Measured: sscanf("%u:%u") failing or no blank after MAJ:MIN is EINVAL."""
    a = h.mkdir(h.root, "a")
    assert err(h, a, "throttle.read_bps_device", text) == errno.EINVAL


@pytest.mark.parametrize("text", ["254:0 abc", "254:0 ", "254:0 max", "254:0 MAX", "254:0 -1", "254:0 +9",
                                  "254:0 \x005"])
def test_bad_value_is_einval(h, disk, text):
    """Measured: the value is sscanf %llu; 'max' is not accepted in v1."""
    a = h.mkdir(h.root, "a")
    assert err(h, a, "throttle.read_bps_device", text) == errno.EINVAL
    assert read(h, a, "throttle.read_bps_device") == ""


# -- throttle: values ------------------------------------------------------------
@pytest.mark.parametrize("text,shown", [
    ("254:0 1000", "254:0 1000\n"), ("254:0 1000\n", "254:0 1000\n"), ("254:0 010", "254:0 10\n"),
    ("254:0 1k", "254:0 1\n"), ("254:0 5abc", "254:0 5\n"), ("254:0 1.5", "254:0 1\n"),
    ("254:0  5", "254:0 5\n"), (" 254:0 5", "254:0 5\n"), ("254:0\t6", "254:0 6\n"), ("254:0\n5", "254:0 5\n"),
    ("254:0 5 6", "254:0 5\n"), ("254:00 7", "254:0 7\n"), ("0254:0 8", "254:0 8\n"), ("254: 0 7", "254:0 7\n"),
    ("254:0 5\x00junk", "254:0 5\n"), ("4294967550:0 5", "254:0 5\n"), ("18446744073709551870:0 6", "254:0 6\n"),
    ("254:0 0x10", ""), ("254:0 0", ""), ("254:0 00", ""), ("254:0 18446744073709551615", ""),
    ("254:0 18446744073709551616", ""), ("254:0 18446744073709551617", "254:0 1\n"),
    ("254:0 9223372036854775807", "254:0 9223372036854775807\n"), ("254:0 4294967297", "254:0 4294967297\n"),
])
def test_bps_value_parsing(h, disk, text, shown):
    """Measured read-backs: sscanf base 10, junk after the number ignored,
    numbers wrap at 2^64, major/minor truncated to u32, 0 (and U64_MAX)
    remove the limit."""
    a = h.mkdir(h.root, "a")
    assert write(h, a, "throttle.read_bps_device", text) == len(text.encode("latin-1"))
    assert read(h, a, "throttle.read_bps_device") == shown


@pytest.mark.parametrize("value,shown", [
    ("4294967296", "254:0 0\n"), ("4294967295", ""), ("4294967297", "254:0 1\n"),
    ("18446744073709551614", "254:0 4294967294\n"), ("99999999999999999999999", "254:0 4135583743\n"),
])
def test_iops_limits_are_unsigned_int(h, disk, value, shown):
    """Measured: iops limits are stored as unsigned int, UINT_MAX means none."""
    a = h.mkdir(h.root, "a")
    write(h, a, "throttle.write_iops_device", f"254:0 {value}")
    assert read(h, a, "throttle.write_iops_device") == shown


def test_limit_replaced_and_removed(h, disk):
    """Measured: a second write replaces, writing 0 removes the line."""
    a = h.mkdir(h.root, "a")
    write(h, a, "throttle.write_bps_device", "254:0 1000")
    write(h, a, "throttle.write_bps_device", "254:0 2000")
    assert read(h, a, "throttle.write_bps_device") == "254:0 2000\n"
    write(h, a, "throttle.write_bps_device", "254:0 0")
    assert read(h, a, "throttle.write_bps_device") == ""


def test_four_throttle_files_are_independent(h, disk):
    """Measured: each file keeps its own value."""
    a = h.mkdir(h.root, "a")
    write(h, a, "throttle.read_bps_device", "254:0 100")
    write(h, a, "throttle.write_bps_device", "254:0 200")
    write(h, a, "throttle.read_iops_device", "254:0 300")
    assert read(h, a, "throttle.read_bps_device") == "254:0 100\n"
    assert read(h, a, "throttle.write_bps_device") == "254:0 200\n"
    assert read(h, a, "throttle.read_iops_device") == "254:0 300\n"
    assert read(h, a, "throttle.write_iops_device") == ""


def test_limits_are_not_inherited_nor_checked_against_parent(h, disk):
    """Measured: a new child shows no limits; it may set a limit above its
    parent's, and that does not change the parent."""
    a = h.mkdir(h.root, "a")
    write(h, a, "throttle.read_bps_device", "254:0 100")
    b = h.mkdir(a, "b")
    assert read(h, b, "throttle.read_bps_device") == ""
    write(h, b, "throttle.read_bps_device", "254:0 5000")
    assert read(h, b, "throttle.read_bps_device") == "254:0 5000\n"
    assert read(h, a, "throttle.read_bps_device") == "254:0 100\n"


# -- statistics ---------------------------------------------------------------------
def test_stats_show_a_disk_once_throttling_has_a_blkg_there(h, disk):
    """Measured: before any throttle write 'Total 0'; after a child's write the
    child and its parent show per-disk zero lines, a sibling does not, and
    the lines stay after the limit is removed. bfq stats stay 'Total 0'."""
    a = h.mkdir(h.root, "a")
    b = h.mkdir(a, "b")
    c = h.mkdir(a, "c")
    assert read(h, a, "throttle.io_serviced") == "Total 0\n"
    write(h, b, "throttle.write_iops_device", "254:0 5")
    for cg in (a, b):
        assert read(h, cg, "throttle.io_serviced") == STATS_254
        assert read(h, cg, "throttle.io_service_bytes_recursive") == STATS_254
        assert read(h, cg, "bfq.io_serviced") == "Total 0\n"
    assert read(h, c, "throttle.io_serviced") == "Total 0\n"
    write(h, b, "throttle.write_iops_device", "254:0 0")
    assert read(h, b, "throttle.io_serviced") == STATS_254


def test_root_shows_a_disk_once_throttling_is_activated(h, disk):
    """Measured: after the first throttle write on vda the root's stats list
    254:0 (the root always has a blkg per disk)."""
    a = h.mkdir(h.root, "a")
    assert read(h, h.root, "throttle.io_service_bytes") == "Total 0\n"
    write(h, a, "throttle.read_bps_device", "254:0 1")
    assert read(h, h.root, "throttle.io_service_bytes") == STATS_254


def test_einval_value_still_creates_the_blkg(h, disk):
    """Measured: '254:0 abc' / '254:0 ' fail EINVAL after the blkg exists (stats
    show 254:0); '254:0' fails before (stats stay 'Total 0')."""
    a = h.mkdir(h.root, "a")
    b = h.mkdir(h.root, "b")
    assert err(h, a, "throttle.read_bps_device", "254:0 abc") == errno.EINVAL
    assert read(h, a, "throttle.io_serviced") == STATS_254
    assert err(h, b, "throttle.read_bps_device", "254:0") == errno.EINVAL
    assert read(h, b, "throttle.io_serviced") == "Total 0\n"
    assert err(h, b, "throttle.read_bps_device", "254:0 ") == errno.EINVAL
    assert read(h, b, "throttle.io_serviced") == STATS_254


@pytest.mark.parametrize("text", ["1", "0", "7\x00junk"])
def test_reset_stats_accepts_any_u64(h, text):
    """Measured: write_u64 handler, the whole write is consumed."""
    a = h.mkdir(h.root, "a")
    assert write(h, a, "reset_stats", text) == len(text)


@pytest.mark.parametrize("text", ["abc", "\n", "x" * 10])
def test_reset_stats_rejects_non_numbers(h, text):
    """Measured: EINVAL from kstrtoull."""
    a = h.mkdir(h.root, "a")
    assert err(h, a, "reset_stats", text) == errno.EINVAL


# -- bfq weights --------------------------------------------------------------------
@pytest.mark.parametrize("text,weight", [
    ("100", 100), ("1", 1), ("1000", 1000), ("0x10", 16), ("010", 8), ("200\n", 200), ("7\x00junk", 7),
])
def test_bfq_weight_accepted(h, text, weight):
    """Measured: write_u64 (kstrtoull base 0), 1..1000; the same weight is the
    'default' line of bfq.weight_device."""
    a = h.mkdir(h.root, "a")
    write(h, a, "bfq.weight", text)
    assert read(h, a, "bfq.weight") == f"{weight}\n"
    assert read(h, a, "bfq.weight_device") == f"default {weight}\n"


@pytest.mark.parametrize("text,code", [
    ("0", errno.ERANGE), ("1001", errno.ERANGE), ("18446744073709551616", errno.ERANGE),
    ("-1", errno.EINVAL), ("abc", errno.EINVAL), (" 200", errno.EINVAL), ("200 ", errno.EINVAL),
    ("\n", errno.EINVAL),
])
def test_bfq_weight_rejected(h, text, code):
    """Measured: out of 1..1000 (or of u64) ERANGE, not a number EINVAL."""
    a = h.mkdir(h.root, "a")
    write(h, a, "bfq.weight", "500")
    assert err(h, a, "bfq.weight", text) == code
    assert read(h, a, "bfq.weight") == "500\n"


def test_bfq_weight_is_not_inherited(h):
    """Measured: a child of a cgroup with weight 500 starts at 100."""
    a = h.mkdir(h.root, "a")
    write(h, a, "bfq.weight", "500")
    assert read(h, h.mkdir(a, "x"), "bfq.weight") == "100\n"


@pytest.mark.parametrize("text,weight", [
    ("300", 300), ("default 400", 400), ("default  401", 401), ("  250  ", 250), ("0x20", 32),
    ("default 300\n", 300), ("300\n", 300), ("default 5 6", 5), ("default 5x", 5), ("default5", 5),
    ("default 18446744073709551617", 1), ("18446744073709551618", 2), ("default\t7", 7), ("\xa0300\xa0", 300),
])
def test_bfq_weight_device_default_forms(h, text, weight):
    """Measured: 'WEIGHT' (simple_strtoull base 0 after strim) or 'default
    WEIGHT' set the cgroup weight shown by both files."""
    a = h.mkdir(h.root, "a")
    write(h, a, "bfq.weight_device", text)
    assert read(h, a, "bfq.weight_device") == f"default {weight}\n"
    assert read(h, a, "bfq.weight") == f"{weight}\n"


@pytest.mark.parametrize("text,code", [
    ("default 0", errno.ERANGE), ("default 1001", errno.ERANGE), ("0", errno.ERANGE), ("1001", errno.ERANGE),
    ("\n", errno.ERANGE), ("default abc", errno.EINVAL), ("default", errno.EINVAL), ("abc", errno.EINVAL),
    ("12abc", errno.EINVAL), ("defaultx 5", errno.EINVAL), ("default +5", errno.EINVAL),
    ("default -5", errno.EINVAL), ("-5", errno.EINVAL), ("+5", errno.EINVAL),
    ("254:0 500", errno.EOPNOTSUPP), ("254:0 default", errno.EOPNOTSUPP), ("254:0 0", errno.EOPNOTSUPP),
    ("254:0 abc", errno.EOPNOTSUPP), ("250:250 500", errno.ENODEV), ("254:0", errno.EINVAL),
    ("0x", errno.EINVAL),
])
def test_bfq_weight_device_errors(h, disk, text, code):
    """Measured: out-of-range ERANGE, unparsable EINVAL, a real disk EOPNOTSUPP
    (bfq not its scheduler), a missing disk ENODEV. Nothing changes."""
    a = h.mkdir(h.root, "a")
    assert err(h, a, "bfq.weight_device", text) == code
    assert read(h, a, "bfq.weight_device") == "default 100\n"
