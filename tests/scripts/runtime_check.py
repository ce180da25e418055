"""Run one container with a real runtime (runc or crun) whose cgroupsPath is
below the fake subtree, and report what was observed as JSON (last line of
stdout). Meant to run under ``fakefs run --profile <subtree profile>``.

    runtime_check.py RUNTIME BUNDLE ID PARENT [--stats] [--announced]

The container waits for /release in its rootfs, then exits 0. While it
runs: its init pid, the fake files of its cgroup in every hierarchy, the
filesystem type there, and the real hierarchies seen through fresh mounts of
the same cgroupfs (where the container's directory must not exist). With
--stats: ``RUNTIME ps`` and ``RUNTIME events --stats`` output. Afterwards:
the runtime's exit status and whether its cgroups are gone from the fake.
With --announced, "every hierarchy" is every cgroup mount mountinfo lists
under /sys/fs/cgroup (the whole tree is fake, see hierarchies()); PARENT may
then be empty.

``--legacy-layout`` (first argument) prepares the namespace instead and
re-executes the rest: a private tmpfs over /sys/fs/cgroup holding the
authentic v1 hierarchies only, for runtimes that refuse this host's hybrid
cgroup2 mount. It must run in a mount namespace of its own.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from fakefs.host.mountinfo import read_mounts, visible_mounts  # noqa: E402
from fakefs.host.sysmount import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REC, mount, umount  # noqa: E402

CG = "/sys/fs/cgroup"
FUSE_SUPER_MAGIC = 0x65735546
FILES = ("cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "memory.limit_in_bytes", "pids.max",
         "devices.list", "cpuset.cpus", "cpuset.mems")


# --announced: the hierarchies are every cgroup mount mountinfo lists under CG,
# covered ones included (what runc discovers when fakefs serves the whole tree).
ANNOUNCED = False


def hierarchies() -> dict[str, tuple[str, str]]:
    """dirname -> (fstype, super options) of the authentic mounts under CG."""
    mounts = read_mounts() if ANNOUNCED else visible_mounts()
    return {os.path.basename(m.mountpoint): (m.fstype, m.super_options) for m in mounts
            if os.path.dirname(m.mountpoint) == CG and m.fstype in ("cgroup", "cgroup2")}


def statfs_type(path: str) -> int:
    import ctypes
    import ctypes.util

    buf = ctypes.create_string_buffer(256)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.statfs(path.encode(), buf) != 0:
        return -1
    return int.from_bytes(buf.raw[:8], sys.byteorder)


def real_view(parent: str, cid: str) -> dict:
    """Each real hierarchy through a fresh mount of it (no fake over it)."""
    out = {}
    for name, (fstype, opts) in hierarchies().items():
        scratch = tempfile.mkdtemp(prefix="fakefs-realview-")
        data = None if fstype == "cgroup2" else ",".join(
            o for o in opts.split(",") if o not in ("rw", "ro"))
        try:
            mount("cgroup", scratch, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, data)
            out[name] = {"parent": os.path.isdir(os.path.join(scratch, parent)),
                         "container": os.path.exists(os.path.join(scratch, parent, cid))}
            umount(scratch, detach=True)
        except OSError as exc:
            out[name] = {"error": exc.strerror}
        finally:
            os.rmdir(scratch)
    return out


def read(path: str):
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        return {"error": exc.strerror}


def runtime_cmd(runtime: str, state: str) -> list[str]:
    cmd = [runtime]
    if runtime == "crun":
        cmd.append("--cgroup-manager=cgroupfs")  # not systemd: cgroupsPath is a path
    return cmd + ["--root", state]


def check(runtime: str, bundle: str, cid: str, parent: str, stats: bool) -> dict:
    report: dict = {"runtime": runtime, "hierarchies": sorted(hierarchies())}
    state = tempfile.mkdtemp(prefix="fakefs-rt-state-")
    base = runtime_cmd(runtime, state)
    release = os.path.join(bundle, "rootfs", "release")
    proc = subprocess.Popen(base + ["run", cid], cwd=bundle, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pid = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            st = subprocess.run(base + ["state", cid], capture_output=True, text=True)
            if st.returncode == 0:
                info = json.loads(st.stdout)
                if info.get("status") == "running" and info.get("pid"):
                    pid = info["pid"]
                    break
            time.sleep(0.05)
        report["pid"] = pid
        if pid is None:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            report["start_error"] = err[-2000:]
            return report
        memory_procs = os.path.join(CG, "memory", parent, cid, "cgroup.procs")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and str(pid) not in str(read(memory_procs)).split():
            time.sleep(0.05)
        report["while_running"] = {}
        for name in hierarchies():
            d = os.path.join(CG, name, parent, cid)
            entry = {"fstype": statfs_type(d), "procs": read(os.path.join(d, "cgroup.procs"))}
            for f in FILES:
                if os.path.exists(os.path.join(d, f)):
                    entry[f] = read(os.path.join(d, f))
            report["while_running"][name] = entry
        report["real_while_running"] = real_view(parent, cid)
        if stats:
            ps = subprocess.run(base + ["ps", cid], capture_output=True, text=True)
            report["ps"] = {"rc": ps.returncode, "out": ps.stdout, "err": ps.stderr[-2000:]}
            ev = subprocess.run(base + ["events", "--stats", cid], capture_output=True, text=True)
            report["events"] = {"rc": ev.returncode, "err": ev.stderr[-2000:]}
            try:
                report["events"]["json"] = json.loads(ev.stdout)
            except ValueError:
                report["events"]["out"] = ev.stdout[-2000:]
        with open(release, "w"):
            pass
        out, err = proc.communicate(timeout=30)
        report["rc"] = proc.returncode
        report["stdout"] = out
        report["stderr"] = err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(base + ["delete", "--force", cid], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)  # the runtime's own state dir, on the host's /tmp
        if os.path.exists(release):
            os.unlink(release)
    report["after"] = {name: os.path.exists(os.path.join(CG, name, parent, cid)) for name in hierarchies()}
    report["real_after"] = real_view(parent, cid)
    return report


def legacy_layout() -> str:
    """A private tmpfs over /sys/fs/cgroup with the authentic v1 mounts bound
    back: no hybrid cgroup2 mount, nothing written to the host's tmpfs.
    Returns the stash directory (see drop_stash)."""
    stash = tempfile.mkdtemp(prefix="fakefs-legacy-stash-")
    v1 = [name for name, (fstype, _) in hierarchies().items() if fstype == "cgroup"]
    for name in v1:
        os.mkdir(os.path.join(stash, name))
        mount(os.path.join(CG, name), os.path.join(stash, name), None, MS_BIND | MS_REC)
    mount("tmpfs", CG, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
    for name in v1:
        os.mkdir(os.path.join(CG, name))
        mount(os.path.join(stash, name), os.path.join(CG, name), None, MS_BIND | MS_REC)
    return stash


def drop_stash(stash: str) -> None:
    """Remove the stash from the host's /tmp: detach its binds of the real
    hierarchies first, then rmdir only (never a recursive delete: below a
    bind still attached are real cgroups)."""
    for name in os.listdir(stash):
        path = os.path.join(stash, name)
        try:
            umount(path, detach=True)
            os.rmdir(path)
        except OSError:
            pass
    try:
        os.rmdir(stash)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--legacy-layout":
        from fakefs.host.sysmount import unshare_mount_namespace

        unshare_mount_namespace()
        stash = legacy_layout()
        try:
            return subprocess.call(argv[1:])
        finally:
            drop_stash(stash)
    runtime, bundle, cid, parent = argv[:4]
    global ANNOUNCED
    ANNOUNCED = "--announced" in argv[4:]
    print(json.dumps(check(runtime, bundle, cid, parent, "--stats" in argv[4:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
