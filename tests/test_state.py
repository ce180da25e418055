"""Saved state: the model to a JSON-able dict and back (after any sequence
of random operations, the restored model serves every file identically),
refusal of files that do not fit, and through real mounts: durable as soon
as the operation returns (journal and snapshot, mode 0600 under
$FAKEFS_RUN_DIR; tests/test_crash.py kills servers under load), restored when the
same target is mounted again (also after kill -9 of the daemon), discarded
by ``fakefs umount --forget``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant

from fakefs.runtime import registry, rundir, statefile
from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.model.host import StaticProcessTable
from fakefs.model.state import StateError, dump, restore
from fakefs.model.tree import CgroupModel
from tests.support import fakefs, is_mounted, wait_for, wait_state_saved
from tests.test_model_stateful import HOST, CgroupModelMachine, RulesMachine


def _everything(model) -> dict:
    """What every file of every cgroup reads (or the errno), by path."""
    out = {}
    for m in model.mounts:
        h = m.hierarchy
        for cg in [h.root, *h.root.descendants()]:
            for name in sorted(h.files(cg)):
                try:
                    out[(m.dirname, cg.path, name)] = h.read_file(cg, name)
                except KernelError as exc:
                    out[(m.dirname, cg.path, name)] = exc.errno
            for name, a in cg.attrs.items():
                out[(m.dirname, cg.path, name, "attrs")] = (a.mode, a.uid, a.gid)
        out[(m.dirname, "release_agent")] = h.release_agent
    return out


class _RoundTrip:
    @invariant()
    def state_round_trips(self):
        text = json.dumps(dump(self.model))
        again = CgroupModel(HOST, self.procs, self.HIERARCHIES)
        restore(again, json.loads(text))
        assert json.dumps(dump(again)) == text
        assert _everything(again) == _everything(self.model)


class EveryHierarchyRoundTrip(_RoundTrip, CgroupModelMachine):
    pass


class RulesRoundTrip(_RoundTrip, RulesMachine):
    pass


_SETTINGS = settings(max_examples=15, stateful_step_count=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
EveryHierarchyRoundTrip.TestCase.settings = _SETTINGS
RulesRoundTrip.TestCase.settings = _SETTINGS
TestEveryHierarchyRoundTrip = EveryHierarchyRoundTrip.TestCase
TestRulesRoundTrip = RulesRoundTrip.TestCase


def _small_model(procs=None, hierarchies=("cpu,cpuacct", "cpuset", "memory", "pids")):
    procs = procs or StaticProcessTable()
    return CgroupModel(HOST, procs, list(hierarchies))


def test_memberships_survive_only_for_the_same_task():
    procs = StaticProcessTable()
    procs.spawn(10)
    procs.spawn(20)
    started = procs.start_times
    started.update({10: 111, 20: 222})
    model = _small_model(procs)
    h = model.hierarchy("pids")
    job = h.mkdir(h.root, "job")
    h.write_file(job, "cgroup.procs", b"10")
    h.write_file(job, "cgroup.procs", b"20")
    data = json.loads(json.dumps(dump(model)))
    started[20] = 999  # pid 20 exited and the number was reused
    procs.spawn(30)
    again = _small_model(procs)
    restore(again, data)
    h2 = again.hierarchy("pids")
    assert h2.tids_in(h2.resolve("/job")) == [10]


def test_xattrs_times_and_odd_names_round_trip():
    from fakefs.model.cftype import FileAttrs

    model = _small_model()
    h = model.hierarchy("cpu")
    cg = h.mkdir(h.root, os.fsdecode(b"odd\xff"))
    cg.attrs["."] = FileAttrs(mode=0o700, atime_ns=1, mtime_ns=2, ctime_ns=3,
                              xattrs={os.fsdecode(b"user.\xfe"): bytes(range(256)), "trusted.t": b""})
    text = json.dumps(dump(model))
    again = _small_model()
    restore(again, json.loads(text))
    a = again.hierarchy("cpu").root.children[os.fsdecode(b"odd\xff")].attrs["."]
    assert a == cg.attrs["."]
    assert json.dumps(dump(again)) == text


def test_xattrs_and_times_are_journaled_and_replayed():
    from fakefs.model.state import replay
    from fakefs.vfs.cgroupfs import CgroupFsRoot
    from fakefs.vfs.ops import ROOT_INODE, FsOps

    model = _small_model()
    h = model.hierarchy("cpu")
    h.mkdir(h.root, "j")
    base = json.loads(json.dumps(dump(model)))
    records: list[dict] = []
    model.journal = records.append
    fs = FsOps(CgroupFsRoot(model))
    cpu, _ = fs.lookup(ROOT_INODE, "cpu,cpuacct")
    j, _ = fs.lookup(cpu, "j")
    shares, _ = fs.lookup(j, "cpu.shares")
    root = WriteContext(tid=1, uid=0)
    fs.setxattr(j, os.fsdecode(b"user.\xff"), b"\x00\xfe", 0, root)
    fs.setxattr(j, "trusted.gone", b"1", 0, root)
    fs.removexattr(j, "trusted.gone", root)
    fs.setattr(shares, atime_ns=7, mtime_ns=8)
    fs.setattr(shares, mode=0o600)
    again = _small_model()
    restore(again, base)
    assert replay(again, json.loads(json.dumps(records))) == (len(records), [])
    assert again.hierarchy("cpu").resolve("/j").attrs == h.resolve("/j").attrs


@pytest.mark.parametrize("mangle, match", [
    (lambda d: {"format": 99}, "version"),
    (lambda d: [], "version"),
    (lambda d: {**d, "hierarchies": d["hierarchies"][:1]}, "other hierarchies"),
    (lambda d: _set(d, 0, "cgroups", 1, "path", "/../escape"), "bad cgroup path"),
    (lambda d: _set(d, 0, "cgroups", 1, "path", "/x/y"), "before its parent"),
    (lambda d: _set(d, 0, "cgroups", 1, "state", "cpu", [["shares", "many"]]), "expected a"),
    (lambda d: _set(d, 0, "cgroups", 1, "state", "nonsense", {}), "unknown controllers"),
    (lambda d: _set(d, 3, "placed", [[1, "/nowhere", None]]), "bad placement"),
    (lambda d: _set(d, 0, "release_agent", ["rm", "-rf"]), "release_agent"),
])
def test_files_that_do_not_fit_are_refused_whole(mangle, match):
    model = _small_model()
    h = model.hierarchy("cpu")
    h.write_file(h.mkdir(h.root, "a"), "cpu.shares", b"100")
    data = mangle(json.loads(json.dumps(dump(model))))
    fresh = _small_model()
    before = json.dumps(dump(fresh))
    with pytest.raises(StateError, match=match):
        restore(fresh, data)
    assert json.dumps(dump(fresh)) == before  # nothing half applied


def _set(d, index, *path_and_value):
    *path, value = path_and_value
    node = d["hierarchies"][index]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return d


# -- through real mounts -------------------------------------------------------------

def _state_path(target: str) -> str:
    return statefile.path_for(os.path.realpath(target))


def _saved(target: str) -> dict | None:
    try:
        with open(_state_path(target)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _saved_shares(target: str, cgroup: str) -> int | None:
    """cpu.shares of ``cgroup`` as a daemon started now would restore it
    (snapshot and journal)."""
    model = CgroupModel(HOST, StaticProcessTable())
    statefile.Store(model, _state_path(target)).load()
    h = model.hierarchy("cpu")
    try:
        return int(h.read_file(h.resolve(cgroup), "cpu.shares"))
    except KernelError:
        return None


@pytest.mark.fuse
def test_state_saved_quickly_restored_and_forgotten(cgmount):
    target = cgmount.path
    os.mkdir(cgmount.p("cpu", "kept"))
    os.mkdir(cgmount.p("memory", "kept"))
    os.chmod(cgmount.p("cpu", "kept", "cpu.shares"), 0o664)
    cgmount.write("memory/kept/memory.limit_in_bytes", "64M")
    cgmount.write("cpu/release_agent", "/bin/never-run")
    os.setxattr(cgmount.p("cpu", "kept"), os.fsdecode(b"user.k\xff"), bytes(range(256)))
    os.setxattr(cgmount.p("cpu", "kept", "cpu.shares"), "trusted.t", b"")
    os.utime(cgmount.p("cpu", "kept", "cpu.shares"), ns=(1_000_000_001, 2_000_000_002))
    # durable once the write returned: no waiting
    for value in (300, 400, 500):
        cgmount.write("cpu/kept/cpu.shares", str(value))
        assert _saved_shares(target, "/kept") == value
    path = _state_path(target)
    assert wait_for(lambda: os.path.exists(path), timeout=5)  # the snapshot follows within a second
    assert os.path.dirname(path) == os.environ["FAKEFS_RUN_DIR"] == rundir.run_dir()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]

    # unmount, mount the same target again: everything is back
    res = fakefs("umount", target)
    assert res.returncode == 0, res.stderr
    assert wait_for(lambda: not is_mounted(target))
    res = fakefs("mount", target, *_backend_args(cgmount))
    assert res.returncode == 0, res.stderr
    assert cgmount.read("cpu", "kept", "cpu.shares") == "500\n"
    assert cgmount.read("memory", "kept", "memory.limit_in_bytes") == str(64 << 20) + "\n"
    assert cgmount.read("cpu", "release_agent") == "/bin/never-run\n"
    assert stat.S_IMODE(os.stat(cgmount.p("cpu", "kept", "cpu.shares")).st_mode) == 0o664
    assert os.getxattr(cgmount.p("cpu", "kept"), os.fsdecode(b"user.k\xff")) == bytes(range(256))
    assert os.listxattr(cgmount.p("cpu", "kept", "cpu.shares")) == ["trusted.t"]
    st = os.stat(cgmount.p("cpu", "kept", "cpu.shares"))
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_001, 2_000_000_002)

    # --forget: the next mount starts from scratch
    res = fakefs("umount", "--forget", target)
    assert res.returncode == 0, res.stderr
    assert "discarded" in res.stdout
    assert not os.path.exists(path)
    res = fakefs("mount", target, *_backend_args(cgmount))
    assert res.returncode == 0, res.stderr
    assert not os.path.exists(cgmount.p("cpu", "kept"))
    assert cgmount.read("cpu", "release_agent") == "\n"


def _backend_args(m) -> tuple[str, ...]:
    rec = registry.load(os.path.realpath(m.path))
    return ("--backend", rec.backend) if rec is not None else ()


@pytest.mark.fuse
def test_state_survives_kill_9(cgmount):
    target = cgmount.path
    backend = _backend_args(cgmount)
    os.mkdir(cgmount.p("pids", "job"))
    os.mkdir(cgmount.p("pids", "job", "inner"))
    cgmount.write("pids/job/pids.max", "17")
    sleeper = __import__("subprocess").Popen(["sleep", "60"])
    try:
        cgmount.write("pids/job/inner/cgroup.procs", str(sleeper.pid))
        changed = time.time_ns()
        time.sleep(0.1)  # a save already under way may predate the change
        wait_state_saved(target, changed)
        # Only in the journal when the server dies: acknowledged, so durable.
        os.setxattr(cgmount.p("pids", "job"), "user.k", b"\xff\x00")
        os.utime(cgmount.p("pids", "job", "pids.max"), ns=(5_000_000_005, 6_000_000_006))
        rec = registry.load(os.path.realpath(target))
        os.kill(rec.pid, signal.SIGKILL)
        # The server dies with its supervisor, but a moment later (its
        # PDEATHSIG is sent as the supervisor exits): a request made while it
        # still lives is aborted (ECONNABORTED), not refused. Only once both
        # are gone is the mount stale.
        server = registry.MountRecord("", rec.server_pid, "", "", "", 0)
        assert wait_for(lambda: not rec.alive and not server.alive)
        with pytest.raises(OSError) as exc:
            cgmount.read("pids", "job", "pids.max")
        assert exc.value.errno == errno.ENOTCONN
        # mounting again cleans the stale mount up and restores the tree
        res = fakefs("mount", target, *backend)
        assert res.returncode == 0, res.stderr
        assert cgmount.read("pids", "job", "pids.max") == "17\n"
        assert cgmount.read("pids", "job", "inner", "cgroup.procs").split() == [str(sleeper.pid)]
        assert os.getxattr(cgmount.p("pids", "job"), "user.k") == b"\xff\x00"
        st = os.stat(cgmount.p("pids", "job", "pids.max"))
        assert (st.st_atime_ns, st.st_mtime_ns) == (5_000_000_005, 6_000_000_006)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert wait_for(lambda: cgmount.read("pids", "job", "inner", "cgroup.procs") == "")
    fakefs("umount", "--forget", target)
    fakefs("mount", target, *backend)  # for the fixture's own umount


def test_umount_forget_with_nothing_mounted(tmp_path):
    target = str(tmp_path)
    path = statefile.path_for(target)
    model = _small_model()
    statefile.Store(model, path).save()
    assert os.path.exists(path)
    res = fakefs("umount", "--forget", target)
    assert res.returncode == 0, res.stderr
    assert "discarded" in res.stdout and not os.path.exists(path)


def test_a_bad_state_file_is_set_aside_not_lost(tmp_path):
    path = str(tmp_path / "state.json")
    with open(path, "w") as f:
        f.write('{"format": 1, "hierarchies": "junk"}')
    model = _small_model()
    note = statefile.Store(model, path).load()
    assert "not restored" in note and os.path.exists(path + ".bad") and not os.path.exists(path)
    statefile.Store(model, path).save()
    fresh = _small_model()
    assert statefile.Store(fresh, path).load() == f"state restored from {path}"
