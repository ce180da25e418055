"""A reader of the /proc views for the tests: run as its own process (the
views follow the cgroups of the process that reads), prints one JSON line.

    procviews_reader.py read DIR NAME...          contents of DIR/NAME
    procviews_reader.py loop DIR GO COUNT         wait for file GO, read DIR's meminfo and
                                                  cpu-online COUNT times: the values seen
    procviews_reader.py hostile DIR NAME...       tiny reads, reads past the end, random preads
    procviews_reader.py tools                     free, psutil, node, sysconf, top under /proc
    procviews_reader.py diff NAME...              each bound view against the real file (read
                                                  through a private bind of /proc) at the same time
Options before the mode: --join FILE (write our pid to each cgroup.procs FILE first).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

VIEW_PATHS = {
    "meminfo": "/proc/meminfo", "cpuinfo": "/proc/cpuinfo", "stat": "/proc/stat", "uptime": "/proc/uptime",
    "loadavg": "/proc/loadavg", "swaps": "/proc/swaps", "diskstats": "/proc/diskstats",
    "cpu-online": "/sys/devices/system/cpu/online",
}


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def masked(text: str) -> str:
    return re.sub(r"[0-9]", "#", text)


def mode_read(d: str, *names: str) -> dict:
    return {n: read(os.path.join(d, n)) for n in names}


def mode_around(d: str, *names: str) -> dict:
    """Each view in ``d`` with the real file read just before and after it
    (machine-wide counters move between any two reads)."""
    return {n: {"before": read(VIEW_PATHS[n]), "view": read(os.path.join(d, n)), "after": read(VIEW_PATHS[n])}
            for n in names}


def mode_loop(d: str, go: str, count: str) -> dict:
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            return {"error": "no go"}
        time.sleep(0.005)
    totals, online = set(), set()
    for _ in range(int(count)):
        for line in read(os.path.join(d, "meminfo")).splitlines():
            if line.startswith("MemTotal:"):
                totals.add(int(line.split()[1]))
        online.add(read(os.path.join(d, "cpu-online")))
    return {"memtotal_kb": sorted(totals), "online": sorted(online)}


def mode_hostile(d: str, *names: str) -> dict:
    out = {}
    rng = random.Random(15)
    for name in names:
        path = os.path.join(d, name)
        reference = read(path).encode()
        fd = os.open(path, os.O_RDONLY)
        try:
            tiny = b""
            while True:
                chunk = os.read(fd, 1)
                if not chunk:
                    break
                tiny += chunk
            past = [os.pread(fd, 64, len(reference) + extra) for extra in (0, 1, 4096, 1 << 20)]
            mismatches = []
            for _ in range(200):
                off = rng.randrange(0, len(reference) + 8)
                size = rng.choice([1, 2, 7, 64, 4096])
                got = os.pread(fd, size, off)
                want = reference[off:off + size]
                if masked(got.decode()) != masked(want.decode()):
                    mismatches.append([off, size, got.decode(), want.decode()])
        finally:
            os.close(fd)
        out[name] = {"reference": reference.decode(), "tiny": tiny.decode(), "past": [p.decode() for p in past],
                     "mismatches": mismatches[:5]}
    return out


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout


def mode_tools() -> dict:
    free = _run("free", "-b")
    mem_line = next((line.split() for line in free.splitlines() if line.startswith("Mem:")), [])
    py = _run(sys.executable, "-c", "import json, os, psutil; print(json.dumps([psutil.virtual_memory().total, "
              "os.sysconf('SC_NPROCESSORS_ONLN'), os.cpu_count()]))")
    node = _run("node", "-e", "const os = require('os'); console.log(JSON.stringify([os.totalmem(), os.cpus().length]))")
    top = _run("top", "-bn1")
    top_mem = next((line for line in top.splitlines() if "Mem :" in line), "")
    return {"free_total": int(mem_line[1]) if len(mem_line) > 1 else None,
            "psutil": json.loads(py or "null"), "node": json.loads(node or "null"),
            "getconf": _run("getconf", "_NPROCESSORS_ONLN").strip(), "top_mem": top_mem}


def mode_diff(*names: str) -> dict:
    """Each view (at its real path) against the real file at the same
    moment: the real one read before and after, through a bind of /proc
    without its submounts (our namespace is private: fakefs run made it)."""
    scratch = tempfile.mkdtemp()
    real_proc = os.path.join(scratch, "proc")
    real_cpu = os.path.join(scratch, "cpu")
    os.mkdir(real_proc)
    os.mkdir(real_cpu)
    subprocess.run(["mount", "--bind", "/proc", real_proc], check=True)
    subprocess.run(["mount", "--bind", "/sys/devices/system/cpu", real_cpu], check=True)
    try:
        out = {}
        for name in names:
            real = os.path.join(real_cpu, "online") if name == "cpu-online" else os.path.join(real_proc, name)
            before, view, after = read(real), read(VIEW_PATHS[name]), read(real)
            out[name] = {"before": before, "view": view, "after": after}
        return out
    finally:
        subprocess.run(["umount", real_proc])
        subprocess.run(["umount", real_cpu])
        os.rmdir(real_proc)
        os.rmdir(real_cpu)
        os.rmdir(scratch)


def main(argv: list[str]) -> None:
    while argv and argv[0] == "--join":
        with open(argv[1], "w") as f:
            f.write(str(os.getpid()))
        argv = argv[2:]
    mode, *args = argv
    result = {"read": mode_read, "loop": mode_loop, "hostile": mode_hostile, "tools": mode_tools,
              "diff": mode_diff, "around": mode_around}[mode](*args)
    print(json.dumps({"pid": os.getpid(), "result": result}))


if __name__ == "__main__":
    main(sys.argv[1:])
