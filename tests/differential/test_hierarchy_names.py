"""Hierarchy names (``--hierarchy name=X``) follow the kernel's rules for
``mount -t cgroup -o none,name=X``: compared name by name with real mounts
of throwaway named hierarchies in a scratch directory (this session's
private mount namespace; a named hierarchy with no cgroups goes away when
it is unmounted). The model and the CLI refuse what the kernel refuses,
and names the kernel takes but no directory can have (``.``, ``..``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile

import pytest

from fakefs.model.errors import KernelError
from fakefs.model.tree import CgroupModel, check_hierarchy_name, parse_hierarchies
from tests.support import fakefs

from .surfaces import require

# Names as bytes (the kernel's unit). Prefixed with "fk12" where possible
# so that no real hierarchy of this machine is met by accident.
NAMES = [b"fk12", b"fk12-a_b.c", b"fk12 x", b"fk12\nx", b"fk12+x", b"fk12:x", b"fk12/x", b"",
         b"fk12" + b"x" * 59, b"fk12" + b"x" * 60, b"fk12" + b"x" * 296,
         b"fk12\xe9", b"fk12\xc0", b"fk12\xd7", b"fk12\xdf", b"fk12\xf7", b"fk12\xaa", b"fk12\xb5",
         "fk12\u00e9".encode(), b".", b".."]


def _kernel_takes(name: bytes) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    scratch = tempfile.mkdtemp(prefix="fakefs-hname-")
    try:
        if libc.mount(b"cgroup", scratch.encode(), b"cgroup", 0, b"none,name=" + name) != 0:
            assert ctypes.get_errno() == errno.EINVAL, (name, errno.errorcode[ctypes.get_errno()])
            return False
        assert libc.umount2(scratch.encode(), 0) == 0, name
        return True
    finally:
        os.rmdir(scratch)


def _model_takes(name: bytes) -> bool:
    try:
        check_hierarchy_name(os.fsdecode(name))
    except KernelError as exc:
        assert exc.errno == errno.EINVAL
        return False
    return True


@pytest.mark.kernel
def test_names_follow_the_kernels_mount_option_rules():
    require(os.geteuid() == 0 and os.path.isdir("/sys/fs/cgroup"), "needs root and cgroup v1 to mount")
    verdicts = {name: (_kernel_takes(name), _model_takes(name)) for name in NAMES}
    differ = {name: v for name, v in verdicts.items() if v[0] != v[1]}
    assert not differ, f"(kernel, model) differ: {differ}"
    # The measured facts the rules rest on.
    assert verdicts[b"fk12" + b"x" * 59] == (True, True) and verdicts[b"fk12" + b"x" * 60] == (False, False)
    assert verdicts[b"fk12\xe9"] == (True, True) and verdicts["fk12\u00e9".encode()] == (False, False)


def test_hierarchy_names_that_cannot_be_a_directory_are_refused():
    for spec in ["name=.", "name=..", "none,name=.."]:
        with pytest.raises(KernelError, match="cannot be a directory"):
            CgroupModel(hierarchies=[spec])
    with pytest.raises(KernelError, match="cannot be a directory"):
        CgroupModel(hierarchies=["cpu"], dirnames={"cpu": ".."})
    # With controllers, the directory is named after them: name=. is fine.
    assert CgroupModel(hierarchies=["cpu,name=."]).mounts[0].dirname == "cpu"
    with pytest.raises(KernelError, match="two entries of the mount named 'cpu'"):
        CgroupModel(hierarchies=["cpu,cpuacct", "name=cpu"])
    for specs, message in [(["name=x", "name=x"], "given twice"),
                           (["cpu", "cpu"], "controller cpu in two"), (["name=a,name=b"], "two names"),
                           (["none,cpu"], "'none' with controllers"), (["none"], "empty hierarchy")]:
        with pytest.raises(KernelError, match=message):
            parse_hierarchies(specs)
    assert CgroupModel(hierarchies=["none,name=fk12"]).mounts[0].hierarchy.label == "name=fk12"


@pytest.mark.parametrize("spec, message", [
    ("name=..", "cannot be a directory"),
    ("name=.", "cannot be a directory"),
    ("name=a b", "only letters, digits"),
    ("name=a\nb", "only letters, digits"),
    ("name=" + "x" * 300, "at most 63"),
])
def test_cli_refuses_bad_hierarchy_names_in_one_line(spec, message):
    # A target that does not exist: should the name pass, nothing is mounted.
    res = fakefs("mount", "/nonexistent/fakefs-target", "--hierarchy", spec)
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("fakefs: --hierarchy: "), res.stderr
    assert message in res.stderr
