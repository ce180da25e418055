"""The host's own layout: a client that finds the hierarchies in mountinfo
and makes one cgroup in every announced one (tests/scripts/cgroup_client.py)
gets the kernel's results under ``fakefs run --profile cgroup-v1-fake`` —
the same mkdir outcomes (no EEXIST where two announced hierarchies would
share one directory), the same files in the same order with the same modes,
the same contents — and the cgroup2 mount is the kernel's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.support import REPO, require_root_and_fuse

from .surfaces import CGROUP_ROOT, require
from .test_inventory import LIVE_FORMAT_ONLY, VENDOR_EXTRAS, shape

pytestmark = [pytest.mark.kernel, pytest.mark.fuse]
CLIENT = os.path.join(REPO, "tests", "scripts", "cgroup_client.py")


def client(name: str, *fakefs_run: str) -> dict:
    cmd = [sys.executable, CLIENT, name]
    if fakefs_run:
        cmd = [sys.executable, "-m", "fakefs", "run", *fakefs_run, "--"] + cmd
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.splitlines()[-1])


def comparable(result: dict) -> dict:
    """What must match: everything, statistics by their format only, and
    files this vendor kernel adds to mainline left out."""
    out = dict(result)
    extras = VENDOR_EXTRAS.get(os.path.basename(out.get("mountpoint", "")), set())
    if "entries" in out:
        out["entries"] = [e for e in out["entries"] if e[0] not in extras]
    if "reads" in out:
        out["reads"] = {n: ([kind, shape(v)] if n in LIVE_FORMAT_ONLY and kind == "ok" else [kind, v])
                        for n, (kind, v) in out["reads"].items() if n not in extras}
    return out


def test_one_cgroup_in_every_announced_hierarchy():
    require_root_and_fuse()
    name = f"fakefs-diff-layout-{uuid.uuid4().hex[:8]}"
    try:
        kernel = client(name)
    finally:
        for mp in os.listdir(CGROUP_ROOT):  # the client removes it; make sure
            path = os.path.join(CGROUP_ROOT, mp, name)
            if os.path.isdir(path) and not os.path.islink(os.path.join(CGROUP_ROOT, mp)):
                os.rmdir(path)
    require(any(r["fstype"] == "cgroup" for r in kernel.values()),
            "needs cgroup v1 hierarchies announced under /sys/fs/cgroup")
    fake = client(name, "--profile", "cgroup-v1-fake")
    assert list(fake) == list(kernel)  # the same announced mount points, in order
    problems = []
    for mp, want in kernel.items():
        assert want["mkdir"] == ["ok", None] and want["rmdir"] == ["ok", None], (mp, want)
        got = fake[mp]
        k, f = comparable({**want, "mountpoint": mp}), comparable({**got, "mountpoint": mp})
        for key in sorted(set(k) | set(f)):
            if key == "reads":
                for file in sorted(set(k.get(key, {})) | set(f.get(key, {}))):
                    if k[key].get(file) != f[key].get(file):
                        problems.append(f"{mp} read {file}: kernel {k[key].get(file)} | fake {f[key].get(file)}")
            elif k.get(key) != f.get(key):
                problems.append(f"{mp} {key}: kernel {k.get(key)} | fake {f.get(key)}")
    assert not problems, "\n".join(problems)
