"""Fixtures of the differential suite: a kernel surface and a candidate
surface (the model, or later a FUSE mount) with the same fresh base cgroup.

Every test here compares against the real cgroup v1 of this machine; it
needs root and the hierarchies mounted at /sys/fs/cgroup, else it skips
(or fails under CI, see surfaces.require).
"""

from __future__ import annotations

import pytest

from .surfaces import CANDIDATES, KernelSurface, kernel_cgroup_v1_available, require


@pytest.fixture(params=CANDIDATES, ids=lambda f: f.id)
def candidate_factory(request):
    return request.param


@pytest.fixture
def pair(controller, candidate_factory):
    """(kernel, candidate): both with a fresh base cgroup under the root of
    ``controller``'s hierarchy. Cleanup runs even when the test fails."""
    ok, why = kernel_cgroup_v1_available(controller)
    require(ok, why)
    kernel = KernelSurface(controller)
    try:
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
