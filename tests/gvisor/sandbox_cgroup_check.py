"""Runs INSIDE a gVisor sandbox (``runsc do``): mounts fakefs at
/sys/fs/cgroup with ``--backend auto`` and exercises it the way consumers
do. Prints one JSON report on stdout; the pytest side asserts on it.

Python only: coreutils ``ls`` can fail with EINVAL under gVisor's ptrace
platform, while os.listdir works.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import uuid

TARGET = "/sys/fs/cgroup"
FAKEFS = [sys.executable, "-m", "fakefs"]


def errname(fn, *args) -> str:
    try:
        fn(*args)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ok"


def write(path: str, data: bytes) -> int:
    fd = os.open(path, os.O_WRONLY)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def checks(report: dict) -> None:
    cg = TARGET
    with open("/proc/self/mountinfo") as f:
        report["mountinfo"] = [line.split() for line in f if line.split()[4] == cg]
    status = subprocess.run(FAKEFS + ["status", "--json"], capture_output=True, text=True)
    report["status"] = json.loads(status.stdout or "[]")
    report["top"] = sorted(os.listdir(cg))

    # a child cgroup has its control files the moment mkdir returns
    name = f"fakefs-gvisor-{uuid.uuid4().hex[:8]}"
    child = os.path.join(cg, "memory", name)
    os.mkdir(child)
    report["child_files"] = sorted(os.listdir(child))
    report["child_limit"] = read(os.path.join(child, "memory.limit_in_bytes")).decode()

    # the kernel's errnos come back through gVisor's FUSE client
    limit = os.path.join(child, "memory.limit_in_bytes")
    report["errnos"] = {
        "limit_abc": errname(write, limit, b"abc"),
        "mkdir_bad_name": errname(os.mkdir, os.path.join(cg, "memory", "bad\nname")),
        "mkdir_exists": errname(os.mkdir, child),
        "unlink_control_file": errname(os.unlink, os.path.join(child, "cgroup.procs")),
        "create_file": errname(lambda: open(os.path.join(child, "newfile"), "w")),
        "missing": errname(os.stat, os.path.join(cg, "memory", "nope")),
        "root_cpu_shares": errname(write, os.path.join(cg, "cpu", "cpu.shares"), b"100"),
        "cpu_stat_write": errname(write, os.path.join(cg, "cpu", "cpu.stat"), b"0"),
    }
    report["limit_write"] = write(limit, b"64M")
    report["limit_after"] = read(limit).decode()
    os.mkdir(os.path.join(child, "grandchild"))
    report["errnos"]["rmdir_busy"] = errname(os.rmdir, child)
    os.rmdir(os.path.join(child, "grandchild"))

    # sizes are exact: gVisor cuts every read at st_size
    sizes = {}
    for rel in ("cpu/cpu.shares", "cpu/cpu.cfs_period_us", "memory/memory.stat", "cpuset/cpuset.cpus",
                f"memory/{name}/memory.limit_in_bytes", "devices/devices.list"):
        path = os.path.join(cg, rel)
        sizes[rel] = [os.stat(path).st_size, len(read(path))]
    report["sizes"] = sizes
    report["cpu_shares"] = read(os.path.join(cg, "cpu", "cpu.shares")).decode()

    # one open = one snapshot, whole across offsets even if the value changes
    snap = os.path.join(cg, "cpu", name)
    os.mkdir(snap)
    period = os.path.join(snap, "cpu.cfs_period_us")
    fd = os.open(period, os.O_RDONLY)
    try:
        first = os.read(fd, 2)
        write(period, b"2000")
        rest = b""
        while chunk := os.read(fd, 1):
            rest += chunk
    finally:
        os.close(fd)
    report["snapshot"] = (first + rest).decode()
    report["after_snapshot"] = read(period).decode()

    # many entries: READDIR resumes at the offsets gVisor sends
    many = [f"c{i:03d}-{'x' * 24}" for i in range(150)]
    for n in many:
        os.mkdir(os.path.join(snap, n))
    listed = os.listdir(snap)
    report["many"] = {"missing": sorted(set(many) - set(listed)),
                      "duplicates": len(listed) - len(set(listed)), "count": len(listed)}
    for n in many:
        os.rmdir(os.path.join(snap, n))

    # cgroup.procs takes this process; "0" means the writer
    pids = os.path.join(cg, "pids", name)
    os.mkdir(pids)
    write(os.path.join(pids, "cgroup.procs"), b"0")
    report["procs"] = read(os.path.join(pids, "cgroup.procs")).decode().split()
    report["self_pid"] = str(os.getpid())
    write(os.path.join(cg, "pids", "cgroup.procs"), str(os.getpid()).encode())
    for d in (pids, snap, child):
        os.rmdir(d)
    report["removed"] = not os.path.exists(child)


def main() -> int:
    from fakefs.host.sysmount import unshare_mount_namespace

    # A namespace fakefs made: its safety check then allows /sys/fs/cgroup
    # (the sandbox is private anyway; this keeps the command the one users run).
    unshare_mount_namespace()
    report: dict = {"errors": []}
    res = subprocess.run(FAKEFS + ["mount", TARGET, "--backend", "auto"],
                         capture_output=True, text=True)
    report["mount"] = {"rc": res.returncode, "stderr": res.stderr.strip()}
    if res.returncode != 0:
        print(json.dumps(report))
        return 1
    try:
        checks(report)
    except Exception as exc:  # reported, then the mount is still removed
        report["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        logs = [os.path.join(d, f) for d in [os.environ.get("FAKEFS_RUN_DIR", "/run/fakefs")]
                for f in os.listdir(d) if f.endswith(".log")]
        report["daemon_log"] = "".join(open(p).read() for p in logs)
        res = subprocess.run(FAKEFS + ["umount", TARGET], capture_output=True, text=True)
        report["umount"] = {"rc": res.returncode, "stdout": res.stdout.strip(), "stderr": res.stderr.strip()}
        with open("/proc/self/mountinfo") as f:
            report["mounted_after"] = any(line.split()[4] == TARGET for line in f)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
