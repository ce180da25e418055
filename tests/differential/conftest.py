"""Fixtures of the differential suite: a kernel surface and a candidate
surface (the model, or fakefs mounted over FUSE) with the same fresh base cgroup.

Every test here compares against the real cgroup v1 of this machine; it
needs root and the hierarchies mounted at /sys/fs/cgroup, else it skips
(or fails under CI, see surfaces.require).
"""

from __future__ import annotations

import os

import pytest

from .surfaces import CANDIDATES, KernelSurface, PathSurface, kernel_cgroup_v1_available, machine_layout_mount, require


@pytest.fixture(scope="session")
def diff_mount():
    """fakefs over FUSE with this machine's layout, for the "mount" candidate."""
    if os.environ.get("FAKEFS_DIFF_MOUNT"):
        yield os.environ["FAKEFS_DIFF_MOUNT"]
        return
    with machine_layout_mount() as path:
        yield path


@pytest.fixture(scope="session")
def diff_mount_raw():
    """The same served by fuse-raw, for the "mount-raw" candidate."""
    with machine_layout_mount("fuse-raw") as path:
        yield path


@pytest.fixture(params=CANDIDATES, ids=lambda f: f.id)
def candidate_factory(request):
    return request.param


@pytest.fixture
def pair(controller, candidate_factory, request):
    """(kernel, candidate): both with a fresh base cgroup under the root of
    ``controller``'s hierarchy. Cleanup runs even when the test fails."""
    ok, why = kernel_cgroup_v1_available(controller)
    require(ok, why)
    kernel = KernelSurface(controller)
    try:
        if candidate_factory.id in ("mount", "mount-raw"):
            fixture = "diff_mount" if candidate_factory.id == "mount" else "diff_mount_raw"
            candidate = PathSurface(request.getfixturevalue(fixture), controller, label=candidate_factory.id)
        else:
            candidate = candidate_factory.make(controller)
    except BaseException:
        kernel.close()
        raise
    try:
        yield kernel, candidate
    finally:
        try:
            candidate.close()
        finally:
            kernel.close()
