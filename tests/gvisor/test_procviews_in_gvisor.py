"""The /proc views inside a real gVisor sandbox (``runsc --network=none do``).

gVisor's FUSE client (release-20221219) ignores lseek, so programs that keep
a /proc file open and re-read it after lseek(0) (procps's free and top) would
read nothing from a FUSE file: there the mount manager binds plain files
that the views' daemon rewrites (every second and after every change of the
fake tree). The per-reader FUSE views are checked there too, read as most
programs read (open, read to the end).
"""

from __future__ import annotations

import os
import re
import sys

import pytest

from tests.gvisor.sandbox import runsc_do
from tests.gvisor.test_fuse_raw_in_gvisor import report_of
from tests.test_procviews import assert_same_file

pytestmark = pytest.mark.gvisor

CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_procviews_check.py")


def test_free_psutil_node_sysconf_and_top_see_512m_and_one_cpu_in_gvisor():
    r = report_of(runsc_do(sys.executable, CHECK, "run"))
    assert r["rc"] == 0, r["stderr"]
    tools = r["tools"]
    assert tools["free_total"] == 536870912
    assert tools["psutil"][:2] == [536870912, 1]
    assert tools["node"] == [536870912, 1]
    assert tools["getconf"] == "1"
    assert re.search(r"MiB Mem :\s+512\.0 total", tools["top_mem"]), tools["top_mem"]
    steps = r["plan"]["steps"]
    # gVisor's procfs has neither file: those views are skipped, and say why
    skipped = {s["target"]: s["why"] for s in steps if s["action"] == "skip"}
    assert "no such file here" in skipped["/proc/swaps"] and "no such file here" in skipped["/proc/diskstats"]
    binds = [s for s in steps if s["action"] == "bind" and s["target"].startswith(("/proc/", "/sys/devices"))]
    assert {s["target"] for s in binds} == {"/proc/meminfo", "/proc/cpuinfo", "/proc/stat", "/proc/uptime",
                                            "/proc/loadavg", "/sys/devices/system/cpu/online"}
    assert all("ignores lseek" in s["why"] and "/procviews-files/" in s["source"] for s in binds)


def test_per_reader_views_over_fuse_raw_in_gvisor():
    r = report_of(runsc_do(sys.executable, CHECK, "readers"))
    assert r["names"] == sorted(["meminfo", "cpuinfo", "stat", "uptime", "loadavg", "swaps", "diskstats",
                                 "cpu-online"])
    for name, d in r["diff"].items():
        assert_same_file(name, d["before"], d["view"], d["after"])
    assert r["loop"]["a"] == {"memtotal_kb": [262144], "online": ["0\n"]}
    assert r["loop"]["b"]["memtotal_kb"] == [524288] and r["loop"]["b"]["online"] == [r["diff"]["cpu-online"]["before"]]
    for name, got in r["hostile"].items():
        assert got["past"] == ["", "", "", ""] and got["mismatches"] == [], (name, got)
        assert re.sub(r"\d", "#", got["tiny"]) == re.sub(r"\d", "#", got["reference"]), name
