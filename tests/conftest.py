"""Test session set-up.

As root, the whole session moves into a private mount namespace first, so
every mount a test makes (FUSE, tmpfs, overlays of system paths) is invisible
to the rest of the machine and vanishes with the session even if a test
crashes. Each mount fixture still unmounts and stops its daemon itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.support import FUSE_BACKENDS, fakefs, is_mounted, require_root_and_fuse, wait_for

_RUN_DIR = tempfile.mkdtemp(prefix="fakefs-test-run-")
os.environ["FAKEFS_RUN_DIR"] = _RUN_DIR


def pytest_configure(config):
    if os.geteuid() == 0:
        from fakefs.host.sysmount import unshare_mount_namespace

        unshare_mount_namespace()


def pytest_sessionfinish(session, exitstatus):
    # One run directory per session on the host's /tmp: removed after a
    # green run, kept (with its daemon logs) after a failing one.
    if exitstatus == 0:
        shutil.rmtree(_RUN_DIR, ignore_errors=True)
    else:
        print(f"\nfakefs run directory (daemon logs): {_RUN_DIR}")


class FakeMount:
    def __init__(self, path: str):
        self.path = path

    def p(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def read(self, *parts: str) -> str:
        with open(self.p(*parts)) as f:
            return f.read()

    def write(self, rel: str, data: bytes | str) -> int:
        if isinstance(data, str):
            data = data.encode()
        fd = os.open(self.p(rel), os.O_WRONLY)
        try:
            return os.write(fd, data)
        finally:
            os.close(fd)


@pytest.fixture
def mount_fakefs():
    """Factory: mount fakefs (extra CLI args allowed) on a fresh directory.

    The directories live in a world-searchable scratch dir (not pytest's
    0700 tmp_path) so that tests can act as an unprivileged user."""
    require_root_and_fuse()
    made: list[str] = []
    scratch = tempfile.mkdtemp(prefix="fakefs-mnt-")
    os.chmod(scratch, 0o755)
    tmp_path = __import__("pathlib").Path(scratch)

    def _mount(*args: str, target: str | None = None, backend: str | None = None) -> FakeMount:
        path = target or str(tmp_path / f"mnt{len(made)}")
        os.makedirs(path, exist_ok=True)
        if backend is not None:
            args = (*args, "--backend", backend)
        res = fakefs("mount", path, *args)
        assert res.returncode == 0, f"fakefs mount failed: {res.stderr}"
        made.append(path)
        assert is_mounted(path)
        return FakeMount(path)

    yield _mount
    for path in reversed(made):
        res = fakefs("umount", path)
        assert res.returncode == 0, res.stderr
        assert wait_for(lambda: not is_mounted(path)), f"{path} still mounted"
        os.rmdir(path)
    os.rmdir(scratch)


@pytest.fixture(params=FUSE_BACKENDS)
def cgmount(mount_fakefs, request) -> FakeMount:
    return mount_fakefs(backend=request.param)
