"""Fork inheritance in the fake tree from the kernel's process events.

Live: a process placed in a fake cgroup forks and starts threads; its
children and threads appear there, as with cgroup_post_fork. Synthetic
events: the connector's parent is the real parent, so threads are resolved
to their leader, and (opt-in) CLONE_PARENT children of a placed sibling."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

import pytest

from fakefs.host import forkwatch
from fakefs.host.forkwatch import PROC_EVENT_EXIT, PROC_EVENT_FORK, ForkWatcher, open_watcher
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from tests.support import require, wait_for


def _event(what: int, payload: bytes) -> bytes:
    cn_len = 16 + len(payload)
    body = struct.pack("=IIQ", what, 0, 0) + payload
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, cn_len, 0) + body
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


def fork_event(ppid, ptgid, pid, tgid) -> bytes:
    return _event(PROC_EVENT_FORK, struct.pack("=IIII", ppid, ptgid, pid, tgid))


def exit_event(pid, tgid) -> bytes:
    return _event(PROC_EVENT_EXIT, struct.pack("=IIII", pid, tgid, 0, 0))


class _NoSocket:
    def close(self):
        pass


def setup(clone_parent=False, top_is_root=True):
    procs = StaticProcessTable({10: [10], 20: [20], 21: [21], 22: [22], 23: [23]})
    model = CgroupModel(HostFacts(), procs, ["pids", "name=systemd"], top_is_root=top_is_root)
    return model, ForkWatcher(_NoSocket(), clone_parent=clone_parent)


def test_fork_thread_and_exit_events():
    model, watcher = setup()
    h = model.hierarchy("pids")
    a = h.mkdir(h.root, "a")
    h.write_file(a, "cgroup.procs", b"10")
    # A plain fork by 10; a thread 24 of process 20 whose leader is not placed;
    # then a thread 25 of 21 (placed by the fork below) reported with 21's
    # real parent (10's parent, 1) as "parent".
    data = fork_event(10, 10, 21, 21) + fork_event(1, 1, 24, 20) + fork_event(1, 1, 25, 21)
    assert watcher._apply(data, model) == 3
    assert h.placed == {10: a, 21: a, 25: a}
    assert model.hierarchy("systemd").placed == {}
    watcher._apply(exit_event(21, 21), model)
    assert 21 not in h.placed and 25 in h.placed


def test_clone_parent_children_follow_their_placed_sibling(monkeypatch):
    """runc: runc (20) starts stage-0 (21, placed), which makes stage-1 and
    stage-2 with CLONE_PARENT: the events report runc as their parent."""
    env = {20: b"PATH=/bin\0", 21: b"PATH=/bin\0_LIBCONTAINER_INITPIPE=3\0",
           22: b"PATH=/bin\0_LIBCONTAINER_INITPIPE=3\0", 23: None, 24: b"PATH=/bin\0"}
    monkeypatch.setattr(forkwatch, "_read", lambda path: env.get(int(path.split("/")[2])))
    monkeypatch.setattr(forkwatch, "_ppid", lambda tid: 20)
    for clone_parent in (False, True):
        model, watcher = setup(clone_parent=clone_parent, top_is_root=False)
        model.on_attach = watcher.remember
        h = model.hierarchy("pids")
        ctr = h.mkdir(h.root, "ctr")
        h.write_file(ctr, "cgroup.procs", b"21")
        # stage-1 (22: the stage-0 environment), stage-2 (23: gone already),
        # then a plain fork by runc itself (24: runc's environment).
        watcher._apply(fork_event(20, 20, 22, 22) + fork_event(20, 20, 23, 23) + fork_event(20, 20, 24, 24), model)
        if clone_parent:
            assert h.placed == {21: ctr, 22: ctr, 23: ctr}
        else:
            assert h.placed == {21: ctr}


@pytest.fixture
def watched_mount(cgmount):
    require(isinstance(open_watcher(), ForkWatcher), "needs the proc connector (CAP_NET_ADMIN)")
    return cgmount


def test_live_children_and_threads_inherit(watched_mount):
    m = watched_mount
    os.mkdir(m.p("pids", "inherit"))
    code = ("import sys, threading, time, subprocess\n"
            "sys.stdin.readline()\n"
            "t = threading.Thread(target=time.sleep, args=(3,)); t.start()\n"
            "p = subprocess.Popen(['sleep', '3'])\n"
            "print(threading.get_native_id() if False else t.native_id, p.pid, flush=True)\n"
            "p.wait(); t.join()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        m.write("pids/inherit/cgroup.procs", str(proc.pid))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        thread_id, child = (int(x) for x in proc.stdout.readline().split())
        assert wait_for(lambda: str(child) in m.read("pids", "inherit", "cgroup.procs").split(), timeout=3), \
            m.read("pids", "inherit", "cgroup.procs")
        tasks = m.read("pids", "inherit", "tasks").split()
        assert str(thread_id) in tasks and str(proc.pid) in tasks
        # Other processes are still outside.
        assert str(os.getpid()) not in tasks
    finally:
        proc.kill()
        proc.wait()
    assert wait_for(lambda: m.read("pids", "inherit", "cgroup.procs").split() in ([], [str(child)]), timeout=5)
    assert wait_for(lambda: not m.read("pids", "inherit", "cgroup.procs"), timeout=5)
    time.sleep(0)
    os.rmdir(m.p("pids", "inherit"))
