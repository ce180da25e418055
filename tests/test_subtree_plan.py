"""The cgroup-subtree profile: its schema, its plan on this host, and
apply/undo in the test session's private namespace (real throwaway child
cgroups made and removed; the fake over them seeded from them)."""

from __future__ import annotations

import os
import tempfile
import uuid

import pytest

from fakefs.runtime import journal
from fakefs.manager.apply import undo
from fakefs.manager.plan import make_plan, subtree_hierarchies, visible_mounts
from fakefs.manager.profile import ProfileError, load
from fakefs.host.sysmount import mount, umount
from tests.support import fakefs, require, require_root_and_fuse

CG = "/sys/fs/cgroup"
FUSE_SUPER_MAGIC = 0x65735546


def test_profile_schema(tmp_path, monkeypatch):
    prof = load("cgroup-subtree")
    assert prof.subtree == "fakefs" and not prof.hierarchies and prof.cgroup_target == CG
    monkeypatch.setenv("FAKEFS_PROFILES", str(tmp_path))
    (tmp_path / "inc.toml").write_text('include = ["base"]\n[cgroup]\nsubtree = "mine"\n')
    (tmp_path / "base.toml").write_text('[cgroup]\nsubtree = "theirs"\n')
    assert load("inc").subtree == "mine"
    for bad in ("a/b", "..", "x\\ny"):
        (tmp_path / "bad.toml").write_text(f'[cgroup]\nsubtree = "{bad}"\n')
        with pytest.raises(ProfileError, match="one cgroup name"):
            load("bad")
    (tmp_path / "both.toml").write_text('[cgroup]\nsubtree = "s"\nhierarchies = ["memory"]\n')
    with pytest.raises(ProfileError, match="cannot be combined"):
        load("both")


def _authentic() -> dict[str, str]:
    out = {}
    for mp, spec, _ in subtree_hierarchies(CG):
        if spec is not None:
            out[mp] = spec
    return out


def test_plan_covers_every_authentic_hierarchy():
    found = _authentic()
    require(bool(found), "needs authentic cgroup hierarchies under /sys/fs/cgroup")
    prof = load("cgroup-subtree")
    prof.subtree = f"fakefs-plan-{uuid.uuid4().hex[:8]}"
    plan = make_plan(prof, "/nonexistent/stage")
    steps = [(s.action, s.target) for s in plan.steps]
    daemon = next(s for s in plan.steps if s.action == "start-daemon")
    assert daemon.options["tree"] == "cgroup"
    assert sorted(daemon.options["hierarchies"]) == sorted(found.values())
    for mp in found:
        real = os.path.join(mp, prof.subtree)
        mk = steps.index(("mkdir", real))
        bind = steps.index(("bind", real))
        assert mk < steps.index(("start-daemon", daemon.target)) < bind
        assert real in daemon.options["subtree_of"].values()
    # Hybrid host: the cgroup2 mount runtimes also join is covered too.
    if os.path.ismount(os.path.join(CG, "unified")):
        assert "name=unified" in daemon.options["hierarchies"]
    # Planning changed nothing.
    assert not any(os.path.exists(os.path.join(mp, prof.subtree)) for mp in found)


def test_visible_mounts_skips_covered_ones():
    require(os.geteuid() == 0, "needs root")
    top = tempfile.mkdtemp(prefix="fakefs-visible-")
    inner = os.path.join(top, "inner")
    os.mkdir(inner)
    mounted = []
    try:
        mount("tmpfs", inner, "tmpfs", 0, "size=1m")
        mounted.append(inner)
        assert any(m.mountpoint == inner for m in visible_mounts())
        mount("tmpfs", top, "tmpfs", 0, "size=1m")
        mounted.append(top)
        os.mkdir(inner)
        mount("tmpfs", inner, "tmpfs", 0, "size=1m")
        mounted.append(inner)
        seen = [m for m in visible_mounts() if m.mountpoint in (top, inner)]
        # The first inner mount is still in mountinfo but hidden under top.
        assert sum(1 for m in visible_mounts() if m.mountpoint == inner) == 1
        assert [m.mountpoint for m in seen].count(top) == 1
        hidden = [m for m in __import__("fakefs.host.mountinfo", fromlist=["x"]).read_mounts()
                  if m.mountpoint == inner]
        assert len(hidden) == 2
    finally:
        for path in reversed(mounted):
            umount(path, detach=True)
        os.rmdir(inner)
        os.rmdir(top)


@pytest.fixture
def applied_subtree(tmp_path):
    require_root_and_fuse()
    require(bool(_authentic()), "needs authentic cgroup hierarchies under /sys/fs/cgroup")
    parent = f"fakefs-subtree-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "subtree-test.toml"
    path.write_text(f'include = ["cgroup-subtree"]\n[cgroup]\nsubtree = "{parent}"\n')
    res = fakefs("apply", str(path))
    try:
        assert res.returncode == 0, res.stderr
        yield parent
    finally:
        problems = []
        applied = journal.read()
        for record in [r for r in applied if r["profile"] == "subtree-test"]:
            problems += undo(record)
            applied.remove(record)
        journal.write(applied)
        left = [mp for mp in _authentic() if os.path.isdir(os.path.join(mp, parent))]
        for mp in left:
            os.rmdir(os.path.join(mp, parent))
        assert not problems and not left, (problems, left)


def test_apply_mounts_seeded_fakes_and_undo_removes_the_real_children(applied_subtree):
    parent = applied_subtree
    for mp in _authentic():
        d = os.path.join(mp, parent)
        assert os.statvfs(d) and _fstype(d) == FUSE_SUPER_MAGIC, d
    mem = os.path.join(CG, "memory", parent)
    # The top behaves as a child cgroup: limits accepted, pids files present.
    with open(os.path.join(CG, "pids", parent, "pids.max")) as f:
        assert f.read() == "max\n"
    with open(os.path.join(mem, "memory.limit_in_bytes"), "w") as f:
        f.write("1073741824")
    with open(os.path.join(mem, "memory.limit_in_bytes")) as f:
        assert f.read() == "1073741824\n"
    # Seeded from the fresh real child: an empty cpuset, as the kernel gives it.
    with open(os.path.join(CG, "cpuset", parent, "cpuset.cpus")) as f:
        assert f.read() == "\n"
    # A cgroup made below lives in the fake only.
    os.mkdir(os.path.join(mem, "child"))
    scratch = tempfile.mkdtemp(prefix="fakefs-realview-")
    try:
        mount("cgroup", scratch, "cgroup", 0, "memory")
        try:
            assert os.path.isdir(os.path.join(scratch, parent))
            assert not os.path.exists(os.path.join(scratch, parent, "child"))
            with open(os.path.join(scratch, parent, "memory.limit_in_bytes")) as f:
                assert f.read() != "1073741824\n"
        finally:
            umount(scratch, detach=True)
    finally:
        os.rmdir(scratch)
    os.rmdir(os.path.join(mem, "child"))


def _fstype(path: str) -> int:
    import ctypes
    import ctypes.util
    import sys

    buf = ctypes.create_string_buffer(256)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    assert libc.statfs(path.encode(), buf) == 0
    return int.from_bytes(buf.raw[:8], sys.byteorder)
