"""rdma and perf_event.

rdma is NOT measured: the VM's kernel has no CONFIG_CGROUP_RDMA (not in
/proc/cgroups, ``mount -t cgroup -o rdma`` fails), so these rules come from
kernel/cgroup/rdma.c (rdmacg_files, rdmacg_resource_set_max, parse_resource,
lib/parser.c match_int). Devices come from ``rdma.RDMA_DEVICES`` (empty by
default); tests that need one register "mlx5_0".

perf_event was measured by mounting it in a private mount namespace: the
root holds only the core files.
"""

from __future__ import annotations

import errno

import pytest

from fakefs.model.controllers import rdma
from fakefs.model.errors import KernelError
from fakefs.model.tree import CgroupModel
from tests import kernelio

CORE_ROOT_FILES = ["cgroup.clone_children", "cgroup.procs", "cgroup.sane_behavior", "notify_on_release",
                   "release_agent", "tasks"]
ALL_MAX = "mlx5_0 hca_handle=max hca_object=max \n"


@pytest.fixture
def h():
    return CgroupModel().hierarchy("rdma")


@pytest.fixture
def device(monkeypatch):
    monkeypatch.setattr(rdma, "RDMA_DEVICES", ("mlx5_0",))


def write(h, cg, data):
    return kernelio.write(h, cg, "rdma.max", data)


def err(h, cg, data):
    return kernelio.write_errno(h, cg, "rdma.max", data)


# -- perf_event ---------------------------------------------------------------------
def test_perf_event_has_only_core_files():
    """Measured: the perf_event root lists only the core files."""
    h = CgroupModel().hierarchy("perf_event")
    assert sorted(h.files(h.root)) == CORE_ROOT_FILES
    child = h.mkdir(h.root, "a")
    assert sorted(h.files(child)) == ["cgroup.clone_children", "cgroup.procs", "notify_on_release", "tasks"]


# -- rdma files ---------------------------------------------------------------------
def test_rdma_files_are_not_on_root(h):
    """Source: both cftypes are CFTYPE_NOT_ON_ROOT; max 0644, current 0444."""
    assert sorted(h.files(h.root)) == CORE_ROOT_FILES
    files = h.files(h.mkdir(h.root, "a"))
    assert files["rdma.max"].mode == 0o644
    assert files["rdma.current"].mode == 0o444


def test_no_devices_reads_empty(h):
    """Source: one line per registered device, none here."""
    a = h.mkdir(h.root, "a")
    assert h.read_file(a, "rdma.max") == ""
    assert h.read_file(a, "rdma.current") == ""


def test_current_is_read_only(h):
    a = h.mkdir(h.root, "a")
    with pytest.raises(KernelError) as info:
        h.write_file(a, "rdma.current", b"mlx5_0 hca_handle=1")
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize("text", ["mlx5_0 hca_handle=2", "mlx5_0", "", "\n", "mlx5_0 hca_object=max",
                                  "mlx5_0 hca_handle=", "mlx5_0 hca_handle=ma", "mlx5_0 hca_handle=5abc",
                                  "mlx5_0 hca_handle=-", "mlx5_0\thca_handle=x",
                                  "mlx5_0 hca_handle=18446744073709551616"])
def test_well_formed_write_without_devices_is_enodev(h, text):
    """Source: parsing succeeds, then rdmacg_get_device_locked finds nothing.
    Empty values and prefixes of "max" mean max; a tab is part of the name."""
    a = h.mkdir(h.root, "a")
    if text:
        assert err(h, a, text) == errno.ENODEV
    else:
        assert write(h, a, text) == 0  # zero-length write never reaches the handler


@pytest.mark.parametrize("text", ["mlx5_0 foo=1", "mlx5_0 hca_handle", "mlx5_0  hca_handle=1",
                                  "mlx5_0 hca_handle=-1", "mlx5_0 hca_handle=maxx", "mlx5_0 hca_handle=+5",
                                  "mlx5_0 hca_handle=2147483648", "mlx5_0 hca_handle=1 hca_object=x",
                                  "mlx5_0 hca_handle=" + "1" * 24])
def test_parse_errors_win_over_enodev(h, text):
    """Source: the resource list is parsed before the device lookup."""
    a = h.mkdir(h.root, "a")
    assert err(h, a, text) == errno.EINVAL


def test_device_reads_all_max_and_zero_usage(h, device):
    """Source: no rpool prints S32_MAX as 'max' for rdma.max and 0 usage for
    rdma.current, each value followed by a space."""
    a = h.mkdir(h.root, "a")
    assert h.read_file(a, "rdma.max") == ALL_MAX
    assert h.read_file(a, "rdma.current") == "mlx5_0 hca_handle=0 hca_object=0 \n"


def test_device_limit_set_and_reset(h, device):
    """Source: set_resource_limit per named resource; other resources keep
    their value; all-max frees the pool."""
    a = h.mkdir(h.root, "a")
    write(h, a, "mlx5_0 hca_handle=2")
    assert h.read_file(a, "rdma.max") == "mlx5_0 hca_handle=2 hca_object=max \n"
    write(h, a, "mlx5_0 hca_object=0x10")
    assert h.read_file(a, "rdma.max") == "mlx5_0 hca_handle=2 hca_object=16 \n"
    write(h, a, "mlx5_0 hca_handle=max hca_object=2147483647")
    assert h.read_file(a, "rdma.max") == ALL_MAX
    assert a.state["rdma"].rpools == {}


def test_device_limits_are_per_cgroup(h, device):
    """Source: rpools hang off each cgroup; a child starts with none."""
    a = h.mkdir(h.root, "a")
    write(h, a, "mlx5_0 hca_handle=2")
    assert h.read_file(h.mkdir(a, "b"), "rdma.max") == ALL_MAX


def test_unknown_device_with_one_registered_is_enodev(h, device):
    a = h.mkdir(h.root, "a")
    assert err(h, a, "mlx4_0 hca_handle=2") == errno.ENODEV
    assert h.read_file(a, "rdma.max") == ALL_MAX
