"""Runs inside ``runsc --network=none do``: the /proc views in gVisor.

    sandbox_procviews_check.py run       fakefs run with the views (the file copies
                                         gVisor gets), CMD in a fake cgroup of 512M and
                                         1 CPU: free, psutil, node, sysconf, top
    sandbox_procviews_check.py readers   the per-reader FUSE views (fuse-raw): no limit
                                         = gVisor's own files, two readers in two fake
                                         cgroups, hostile reads

Prints one JSON report line. gVisor lists a controller in /proc/self/cgroup
only once a hierarchy of it is mounted, and ``fakefs run --limit`` cannot
place a limit there yet (issue 11): so the real memory and cpu,cpuacct
hierarchies are mounted in scratch directories first, this process moves to
a child ``pv`` of each, and CMD writes its own limits into the fake cgroup
at that path (what ``--limit`` does once it can).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
READER = os.path.join(REPO, "tests", "scripts", "procviews_reader.py")
PROFILE = """description = "test: every hierarchy fake, with the /proc views"
include = ["cgroup-v1-fake"]
[procviews]
limits = "reader"
"""


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def into_real_child() -> None:
    for opts in ("memory", "cpu,cpuacct"):
        d = tempfile.mkdtemp(prefix="cg-")
        sh("mount", "-t", "cgroup", "-o", opts, "cgroup", d)
        os.makedirs(os.path.join(d, "pv"), exist_ok=True)
        with open(os.path.join(d, "pv", "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


def own_paths() -> dict[str, str]:
    out = {}
    for line in open("/proc/self/cgroup"):
        _, controllers, path = line.rstrip("\n").split(":", 2)
        for c in controllers.split(","):
            out[c] = path
    return out


def inner() -> None:
    """CMD: its limits in its fake cgroups (as --limit writes them), then the tools."""
    paths = own_paths()
    for hierarchy, controller, file, value in (("memory", "memory", "memory.limit_in_bytes", "512M"),
                                               ("cpu", "cpu", "cpu.cfs_quota_us", "100000")):
        d = os.path.join("/sys/fs/cgroup", hierarchy, paths[controller].lstrip("/"))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, file), "w") as f:
            f.write(value)
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    res = sh(sys.executable, READER, "tools")
    print(res.stdout.strip().splitlines()[-1] if res.stdout.strip() else json.dumps({"error": res.stderr}))


def run_check() -> dict:
    into_real_child()
    profile = os.path.join(tempfile.mkdtemp(), "views.toml")
    with open(profile, "w") as f:
        f.write(PROFILE)
    env = {**os.environ, "PYTHONPATH": REPO}
    plan = sh(sys.executable, "-m", "fakefs", "apply", profile, "--dry-run", "--json", env=env, cwd=REPO)
    res = sh(sys.executable, "-m", "fakefs", "run", "--profile", profile, "--", sys.executable,
             os.path.abspath(__file__), "inner", env=env, cwd=REPO)
    tools = [line for line in res.stdout.splitlines() if line.startswith("{")]
    return {"rc": res.returncode, "stderr": res.stderr[-2000:], "plan": json.loads(plan.stdout or "null"),
            "tools": json.loads(tools[-1])["result"] if tools else None}


def reader(*args: str) -> dict:
    res = sh(sys.executable, READER, *args)
    return json.loads(res.stdout.splitlines()[-1])["result"] if res.returncode == 0 else {"error": res.stderr}


def readers_check() -> dict:
    from fakefs.runtime.daemons import start, stop
    from fakefs.runtime.serving import MountRequest

    target = tempfile.mkdtemp(prefix="views-")
    spec = target + ".json"
    with open(spec, "w") as f:
        json.dump({"procviews": {"limits": "reader"}}, f)
    start(MountRequest(target=target, tree="cgroup", backend="fuse-raw", hierarchies=["cpu,cpuacct", "memory"],
                       extra={"spec": spec}))
    report: dict = {}
    try:
        views = os.path.join(target, ".procviews")
        names = sorted(os.listdir(views))
        report["names"] = names
        # no limit: gVisor's own files (read around the view's read)
        report["diff"] = {n: {"before": open(p).read(), "view": open(os.path.join(views, n)).read(),
                              "after": open(p).read()}
                          for n, p in (("meminfo", "/proc/meminfo"), ("cpuinfo", "/proc/cpuinfo"),
                                       ("stat", "/proc/stat"), ("uptime", "/proc/uptime"),
                                       ("loadavg", "/proc/loadavg"), ("cpu-online", "/sys/devices/system/cpu/online"))}
        for name, limit, quota in (("a", "256M", "100000"), ("b", "512M", "-1")):
            for h, file, value in (("memory", "memory.limit_in_bytes", limit), ("cpu,cpuacct", "cpu.cfs_quota_us", quota)):
                os.mkdir(os.path.join(target, h, name))
                with open(os.path.join(target, h, name, file), "w") as f:
                    f.write(value)
        go = os.path.join(tempfile.mkdtemp(), "go")
        procs = {n: subprocess.Popen([sys.executable, READER, "loop", views, go, "100"], stdout=subprocess.PIPE, text=True)
                 for n in ("a", "b")}
        for n, p in procs.items():
            for h in ("memory", "cpu,cpuacct"):
                with open(os.path.join(target, h, n, "cgroup.procs"), "w") as f:
                    f.write(str(p.pid))
        open(go, "w").close()
        report["loop"] = {n: json.loads(p.communicate(timeout=60)[0].splitlines()[-1])["result"] for n, p in procs.items()}
        joins = [a for h in ("memory", "cpu,cpuacct") for a in ("--join", os.path.join(target, h, "a", "cgroup.procs"))]
        report["hostile"] = reader(*joins, "hostile", views, "meminfo", "cpuinfo", "cpu-online")
    finally:
        stop(target)
    return report


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "inner":
        inner()
    else:
        started = time.monotonic()
        report = run_check() if mode == "run" else readers_check()
        report["elapsed_s"] = round(time.monotonic() - started, 2)
        print(json.dumps(report))
