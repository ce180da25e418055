"""`make demo`: mount the fake cgroup v1 tree over /sys/fs/cgroup inside a
private mount namespace (the host never sees it) and use it as kubelet and
runc would: list, read, write, make a child cgroup, watch the kernel's
errnos. Then unmount."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

from fakefs.host.sysmount import unshare_mount_namespace

TARGET = "/sys/fs/cgroup"


def step(title: str) -> None:
    print(f"\n== {title}")


def try_write(path: str, data: str) -> str:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]


def main() -> int:
    if os.geteuid() != 0:
        print("fakefs demo: must run as root", file=sys.stderr)
        return 1
    cli = [sys.executable, "-m", "fakefs"]
    step("fakefs probe: what this machine allows")
    probe = subprocess.run(cli + ["probe", "--json"], capture_output=True, text=True)
    try:
        report = json.loads(probe.stdout)
        print(f"  gVisor: {report['gvisor']}; --backend auto uses: {report['auto_backend']}")
        for name, verdict in report["consumers"].items():
            blocker = verdict["first_blocker"]
            print(f"  {name}: " + (f"stops at: {blocker['error']}" if blocker else
                                   "runs" if verdict["runs"] else "not known: some checks ran out of time"))
    except (ValueError, KeyError):
        print("  probe failed:", probe.stderr.strip())
    unshare_mount_namespace()
    res = subprocess.run(cli + ["mount", TARGET], capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr.strip(), file=sys.stderr)
        return 1
    try:
        step(f"mountinfo line for {TARGET}")
        print([l.strip() for l in open("/proc/self/mountinfo") if l.split()[4] == TARGET][-1])
        step(f"ls {TARGET}")
        for name in sorted(os.listdir(TARGET)):
            p = os.path.join(TARGET, name)
            print(f"  {name} -> {os.readlink(p)}" if os.path.islink(p) else f"  {name}/")
        step("memory controller files at a child")
        child = os.path.join(TARGET, "memory", "demo")
        os.mkdir(child)
        print("  " + " ".join(sorted(os.listdir(child))))
        step("writes with the kernel's parsing")
        for value in ["512M", "1k", "4097", "-1", "12x"]:
            result = try_write(os.path.join(child, "memory.limit_in_bytes"), value)
            now = open(os.path.join(child, "memory.limit_in_bytes")).read().strip()
            print(f"  echo {value!r:8} > memory.limit_in_bytes: {result:7} reads {now}")
        cpu = os.path.join(TARGET, "cpu", "demo")
        os.mkdir(cpu)
        for value in ["1", "0x400", "999999", "abc"]:
            result = try_write(os.path.join(cpu, "cpu.shares"), value)
            print(f"  echo {value!r:8} > cpu.shares: {result:7} reads {open(os.path.join(cpu, 'cpu.shares')).read().strip()}")
        step("moving a process and the rmdir rule")
        sleeper = subprocess.Popen(["sleep", "30"])
        print("  attach:", try_write(os.path.join(cpu, "cgroup.procs"), str(sleeper.pid)),
              "| cgroup.procs:", open(os.path.join(cpu, "cgroup.procs")).read().split())
        try:
            os.rmdir(cpu)
        except OSError as exc:
            print("  rmdir while populated:", errno.errorcode[exc.errno])
        sleeper.kill()
        sleeper.wait()
        os.rmdir(cpu)
        os.rmdir(child)
        print("  after the process exited: rmdir ok")
    finally:
        subprocess.run(cli + ["umount", TARGET])
    return 0


if __name__ == "__main__":
    sys.exit(main())
