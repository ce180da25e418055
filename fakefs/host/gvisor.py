"""Telling whether this kernel is gVisor's (standard library only: the probe
uses it too)."""

from __future__ import annotations

import ctypes

from fakefs.host.procfs import read_text
from fakefs.host.sysmount import libc

SYSLOG_ACTION_READ_ALL = 3
# gVisor's fixed /proc/version (4.4.0, built "Sun Jan 10 15:06:54 PST 2016").
GVISOR_PROC_VERSION = "4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016"


def gvisor_evidence() -> tuple[bool, str]:
    """(is gVisor, what says so)."""
    buf = ctypes.create_string_buffer(1 << 16)
    n = libc.klogctl(SYSLOG_ACTION_READ_ALL, buf, len(buf))
    if n > 0 and b"gVisor" in buf.raw[:n]:
        return True, "the kernel log says \"Starting gVisor...\""
    version = read_text("/proc/version") or ""
    if GVISOR_PROC_VERSION in version:
        return True, "/proc/version is gVisor's fixed 4.4.0 string"
    return False, f"not gVisor: {version.strip() or 'no /proc/version'}"


def is_gvisor() -> bool:
    return gvisor_evidence()[0]
