"""Several processes hammer one mount for a few seconds with mixed reads,
writes, mkdir/rmdir/rename and task moves, racing each other on shared
names. No operation may hang (each worker has a watchdog and a timeout),
only the errnos the kernel gives for such races may come back, and
afterwards the tree is consistent: every task listed once per hierarchy,
each worker's private value intact, and the whole tree removable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.fuse

DURATION = 3.0
WORKERS = 6
HIERARCHIES = ["cpu,cpuacct", "pids", "memory", "freezer", "systemd"]

WORKER = r'''
import errno, json, os, random, signal, subprocess, sys, time

root, index, duration, hierarchies = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].split(":")
rng = random.Random(index)
# What the kernel answers when another process changed the tree in between:
# the name is gone (ENOENT; ENODEV on a handle whose cgroup went away), is
# already there (EEXIST), or the cgroup still has children/tasks (EBUSY);
# plus the parsers' EINVAL for the deliberately bad values.
ALLOWED = {
    "mkdir": {errno.EEXIST, errno.ENOENT},
    "rmdir": {errno.ENOENT, errno.EBUSY},
    "rename": {errno.ENOENT, errno.EEXIST, errno.EBUSY},
    "read": {errno.ENOENT, errno.ENODEV},
    "write": {errno.ENOENT, errno.ENODEV, errno.EINVAL},
    "move": {errno.ENOENT, errno.ENODEV},
    "list": {errno.ENOENT},
}
counts, unexpected = {}, []

def hang(signum, frame):
    raise TimeoutError("an operation blocked for 5 s")

signal.signal(signal.SIGALRM, hang)
sleeper = subprocess.Popen(["sleep", "60"])
mine = {h: os.path.join(root, h, f"w{index}") for h in hierarchies}
for d in mine.values():
    os.mkdir(d)
shared = [f"s{i}" for i in range(4)]

def shared_dir():
    h = rng.choice(hierarchies)
    parts = [rng.choice(shared)] + ([rng.choice(["t0", "t1"])] if rng.random() < 0.4 else [])
    return h, os.path.join(root, h, *parts)

def write(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)

def read(path):
    with open(path, "rb") as f:
        return f.read()

last_shares = None
deadline = time.monotonic() + duration
while time.monotonic() < deadline:
    op = rng.choice(["mkdir", "mkdir", "rmdir", "rename", "read", "write", "move", "move", "list"])
    h, d = shared_dir()
    signal.alarm(5)
    try:
        if op == "mkdir":
            os.mkdir(d)
        elif op == "rmdir":
            os.rmdir(d)
        elif op == "rename":
            os.rename(d, os.path.join(os.path.dirname(d), rng.choice(shared + ["t0", "t1"])))
        elif op == "read":
            read(os.path.join(d, rng.choice(["cgroup.procs", "tasks", "notify_on_release"])))
        elif op == "write":
            if rng.random() < 0.5:
                v = rng.randint(2, 262144)
                write(os.path.join(mine["cpu,cpuacct"], "cpu.shares"), str(v).encode())
                last_shares = v
            else:
                write(os.path.join(d, "notify_on_release"), rng.choice([b"0", b"1", b"junk"]))
        elif op == "move":
            target = rng.choice([d, mine[h], os.path.join(root, h)])
            write(os.path.join(target, "cgroup.procs"), str(sleeper.pid).encode())
        elif op == "list":
            for name in os.listdir(d):
                pass
        counts[op + ":ok"] = counts.get(op + ":ok", 0) + 1
    except OSError as exc:
        key = f"{op}:{errno.errorcode.get(exc.errno, exc.errno)}"
        counts[key] = counts.get(key, 0) + 1
        if exc.errno not in ALLOWED[op]:
            unexpected.append(f"{op} {d}: {exc}")
    except TimeoutError as exc:
        unexpected.append(f"{op} {d}: {exc}")
        break
    finally:
        signal.alarm(0)
# Park the sleeper in this worker's own cgroups, then let it exit.
for h in hierarchies:
    try:
        write(os.path.join(mine[h], "cgroup.procs"), str(sleeper.pid).encode())
    except OSError as exc:
        unexpected.append(f"final move {h}: {exc}")
sleeper.kill()
sleeper.wait()
print(json.dumps({"counts": counts, "unexpected": unexpected, "last_shares": last_shares,
                  "sleeper": sleeper.pid}))
'''


def _walk_dirs(top: str) -> list[str]:
    out = []
    for dirpath, dirnames, _ in os.walk(top):
        out += [os.path.join(dirpath, d) for d in dirnames]
    return out


def test_mixed_load_from_several_processes(cgmount):
    root = cgmount.path
    os.mkdir(cgmount.p("memory", "keep"))
    cgmount.write("memory/keep/memory.limit_in_bytes", "64M")
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, root, str(i), str(DURATION), ":".join(HIERARCHIES)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(WORKERS)]
    reports = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=DURATION + 30)  # a deadlock fails here
            assert p.returncode == 0, err
            reports.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for r in reports:
        assert r["unexpected"] == [], r
    total = {}
    for r in reports:
        for k, v in r["counts"].items():
            total[k] = total.get(k, 0) + v
    # The races really happened: every kind of operation succeeded and collided.
    for op in ("mkdir", "rmdir", "rename", "read", "write", "move", "list"):
        assert total.get(op + ":ok", 0) > 0, (op, total)
    assert total.get("mkdir:EEXIST", 0) + total.get("rmdir:EBUSY", 0) + total.get("rmdir:ENOENT", 0) > 0, total

    # Each worker's private value is the last one it wrote.
    for i, r in enumerate(reports):
        if r["last_shares"] is not None:
            assert cgmount.read("cpu,cpuacct", f"w{i}", "cpu.shares") == f"{r['last_shares']}\n"
    assert cgmount.read("memory", "keep", "memory.limit_in_bytes") == str(64 << 20) + "\n"

    # Consistent tree: every cgroup readable, no task listed twice in a
    # hierarchy, the sleepers (all exited) listed nowhere.
    sleepers = {str(r["sleeper"]) for r in reports}
    for h in HIERARCHIES:
        seen: dict[str, str] = {}
        for d in [cgmount.p(h)] + _walk_dirs(cgmount.p(h)):
            for tid in cgmount.read(os.path.relpath(d, root), "tasks").split():
                assert tid not in seen, f"task {tid} in {seen[tid]} and {d}"
                seen[tid] = d
        assert not sleepers & set(seen), h
    # ...and removable bottom-up: no cgroup is held by a task that is gone.
    for h in HIERARCHIES:
        for d in sorted(_walk_dirs(cgmount.p(h)), key=len, reverse=True):
            os.rmdir(d)
        assert not [e for e in os.scandir(cgmount.p(h)) if e.is_dir()]
