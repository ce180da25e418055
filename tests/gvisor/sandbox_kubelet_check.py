"""Runs INSIDE a gVisor sandbox, as the command of
``fakefs run --profile kubelet -- python sandbox_kubelet_check.py``: kubelet's
tunables check (tests/scripts/kubelet_tunables_check.py), then what served
it and whether bad writes are refused. Prints one JSON report."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(os.path.dirname(HERE), "scripts", "kubelet_tunables_check.py")


def write(path: str, data: bytes) -> str:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ok"


def main() -> int:
    check = subprocess.run([sys.executable, CHECK], capture_output=True, text=True)
    status = subprocess.run([sys.executable, "-m", "fakefs", "status", "--json"], capture_output=True, text=True)
    report = {
        "check_rc": check.returncode,
        "check": json.loads(check.stdout) if check.stdout.strip() else {"stderr": check.stderr},
        "status": json.loads(status.stdout or "{}"),
        "bad_writes": {
            "panic_on_oom=abc": write("/proc/sys/vm/panic_on_oom", b"abc"),
            "panic_on_oom=3": write("/proc/sys/vm/panic_on_oom", b"3"),
            "panic=x": write("/proc/sys/kernel/panic", b"x"),
            "cap_last_cap": write("/proc/sys/kernel/cap_last_cap", b"40"),
        },
        "panic_on_oom": open("/proc/sys/vm/panic_on_oom").read(),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
