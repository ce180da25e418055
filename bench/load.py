"""The load: the same Python loops against every target.

Readers are forked processes that start together and each run for the same
wall-clock window; every operation is timed. The loops are deliberately the
same for all targets, so the real cgroupfs and tmpfs figures are bounded by
the reader loop itself (that is the "physical limit" a Python reader sees).
"""

from __future__ import annotations

import os
import pickle
import time
from array import array

from .stats import percentile

READ_CHUNK = 65536


def _open_read_close(path: str, o_open=os.open, o_read=os.read, o_close=os.close, rdonly=os.O_RDONLY) -> None:
    fd = o_open(path, rdonly)
    try:
        while o_read(fd, READ_CHUNK):
            pass
    finally:
        o_close(fd)


# What a reader process does with each path: open, read until EOF, close
# (as cat, Python, Go's ReadFile do); list a directory; stat a file.
OPERATIONS = {"read": _open_read_close, "listdir": os.listdir, "stat": os.stat}


def _loop(op, paths: list[str], start_at: float, duration: float) -> tuple[array, int]:
    """``op`` on each path in turn (round-robin) for ``duration`` seconds."""
    lat = array("q")
    errors = 0
    clock = time.perf_counter_ns
    while time.monotonic() < start_at:
        time.sleep(min(0.001, max(0.0, start_at - time.monotonic())))
    end = clock() + int(duration * 1e9)
    n = len(paths)
    i = 0
    t = clock()
    while t < end:
        try:
            op(paths[i])
        except OSError:
            errors += 1
        i += 1
        if i == n:
            i = 0
        t2 = clock()
        lat.append(t2 - t)
        t = t2
    return lat, errors


def readers(paths: str | list[str], nproc: int, duration: float, operation: str = "read") -> dict:
    """``nproc`` processes doing ``operation`` (OPERATIONS) for ``duration``
    seconds; ops/s over all of them and the latency percentiles of every
    operation."""
    if isinstance(paths, str):
        paths = [paths]
    op = OPERATIONS[operation]
    start_at = time.monotonic() + 0.05 + 0.01 * nproc
    kids = []
    for k in range(nproc):
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # reader
            code = 1
            try:
                os.close(rfd)
                # Readers start at different places so 4 readers do not march in step.
                offset = (k * len(paths)) // nproc
                lat, errors = _loop(op, paths[offset:] + paths[:offset], start_at, duration)
                data = pickle.dumps((lat.tobytes(), errors))
                view = memoryview(data)
                while view:
                    view = view[os.write(wfd, view):]
                code = 0
            finally:
                os._exit(code)
        os.close(wfd)
        kids.append((pid, rfd))
    lats: list[int] = []
    errors = 0
    for pid, rfd in kids:
        chunks = []
        while chunk := os.read(rfd, 1 << 20):
            chunks.append(chunk)
        os.close(rfd)
        os.waitpid(pid, 0)
        if chunks:
            raw, errs = pickle.loads(b"".join(chunks))
            arr = array("q")
            arr.frombytes(raw)
            lats.extend(arr)
            errors += errs
        else:
            errors += 1
    lats.sort()
    return {
        "ops_per_s": len(lats) / duration,
        "p50_us": percentile(lats, 50) / 1000.0,
        "p99_us": percentile(lats, 99) / 1000.0,
        "errors": errors,
    }


def writes(path: str, duration: float, values: tuple[bytes, ...] = (b"2048", b"1024")) -> dict:
    """open, write one command, close (as ``echo N > file`` or runc do)."""
    n = errors = 0
    end = time.perf_counter() + duration
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, values[n % len(values)])
            finally:
                os.close(fd)
        except OSError:
            errors += 1
        n += 1
    return {"ops_per_s": n / (time.perf_counter() - t0), "errors": errors}


def mkdir_rmdir(parent: str, duration: float, prefix: str = "b") -> dict:
    """mkdir then rmdir of a fresh name, as pairs."""
    n = errors = 0
    end = time.perf_counter() + duration
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        path = os.path.join(parent, f"{prefix}{n}")
        try:
            os.mkdir(path)
            os.rmdir(path)
        except OSError:
            errors += 1
        n += 1
    return {"ops_per_s": n / (time.perf_counter() - t0), "errors": errors}


def first_read(path: str, deadline: float, poll: float = 0.0005) -> float | None:
    """When ``path`` first read successfully (monotonic time), polling until ``deadline``."""
    while True:
        try:
            with open(path, "rb") as f:
                f.read()
            return time.monotonic()
        except OSError:
            if time.monotonic() > deadline:
                return None
            time.sleep(poll)
