"""One writer of the crash test (tests/test_crash.py): makes, writes and
removes cgroups of its own below DIR as fast as the mount answers, printing
``try`` before and ``ack`` after each operation (JSON lines). An operation
that fails, or is interrupted by SIGUSR1, is printed as ``fail``: the test
does not know whether it happened."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time


class Interrupted(Exception):
    pass


def on_signal(_signum, _frame):
    raise Interrupted()


def main() -> None:
    top, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    signal.signal(signal.SIGUSR1, on_signal)
    rng = random.Random(name)
    alive: list[str] = []
    n = 0
    deadline = time.monotonic() + seconds
    out = sys.stdout
    # SIGUSR1 may only interrupt the filesystem operation, not the report.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    while time.monotonic() < deadline:
        roll = rng.random()
        if alive and roll < 0.25:
            op = {"op": "rmdir", "dir": alive[rng.randrange(len(alive))]}
        elif alive and roll < 0.75:
            op = {"op": "write", "dir": alive[rng.randrange(len(alive))], "value": str(rng.randrange(2, 262144))}
        else:
            n += 1
            op = {"op": "mkdir", "dir": f"{name}-{n}"}
        out.write(json.dumps({"try": op}) + "\n")
        out.flush()
        path = os.path.join(top, op["dir"])
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
            if op["op"] == "mkdir":
                os.mkdir(path)
                alive.append(op["dir"])
            elif op["op"] == "rmdir":
                os.rmdir(path)
                alive.remove(op["dir"])
            else:
                fd = os.open(os.path.join(path, "cpu.shares"), os.O_WRONLY)
                try:
                    os.write(fd, op["value"].encode())
                finally:
                    os.close(fd)
        except (OSError, Interrupted) as exc:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
            out.write(json.dumps({"fail": op, "error": str(exc)}) + "\n")
            out.flush()
            time.sleep(0.01)
            if op["op"] == "mkdir" and os.path.isdir(path):
                alive.append(op["dir"])  # it happened after all: keep using it
            continue
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        out.write(json.dumps({"ack": op}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
