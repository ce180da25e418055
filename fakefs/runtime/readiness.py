"""The one-line readiness report a daemon sends its starter through a pipe:
``ok`` once the mount answers, or ``error REASON``. One line, not EOF: the
supervisor's server processes hold the pipe too."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable


def reporter(wfd: int) -> Callable[[str | None], None]:
    """The ``on_ready`` callback that writes the report to ``wfd`` (once)."""
    def report(error: str | None) -> None:
        os.write(wfd, b"ok\n" if error is None else f"error {error}\n".encode())
        os.close(wfd)

    return report


def await_report(rfd: int, timeout: float | None = None) -> tuple[str, str]:
    """Read the report from ``rfd`` (closed afterwards): ("ok", ""),
    ("error", reason), ("closed", "") when every writer closed without a
    report, or ("timeout", "") when nothing came within ``timeout``."""
    chunks = []
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout", ""
                try:
                    readable, _, _ = select.select([rfd], [], [], left)
                except InterruptedError:
                    continue
                if not readable:
                    continue
            try:
                data = os.read(rfd, 4096)
            except InterruptedError:
                continue
            if not data:
                break
            chunks.append(data)
            if b"\n" in data:
                break
    finally:
        os.close(rfd)
    answer = b"".join(chunks).decode(errors="replace").strip()
    if answer == "ok":
        return "ok", ""
    if answer.startswith("error "):
        return "error", answer[len("error "):]
    return "closed", ""
