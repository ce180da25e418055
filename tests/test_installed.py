"""The headline commands from an installed package, as a user runs them:
a wheel built from this checkout, installed into a fresh venv, and the
``fakefs`` on that venv's PATH run from outside the checkout.

The fresh venv gets fakefs only from the wheel. Its dependencies (pyfuse3,
trio, psutil) are the test venv's, added to the fresh venv's path by a
``.pth`` file, so that pyfuse3 is not compiled again and nothing is
downloaded (``make test`` has installed them): the test venv's editable
fakefs is not on that path (its ``.pth`` hook only runs in the test venv).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest

from tests.support import REPO, require, require_root_and_fuse

NODE = "/usr/bin/node"
# What a wheel is built from: the package and its metadata, nothing else of
# the checkout (tests/ or other checkout files would hide a file missing from the package).
SOURCES = ("fakefs", "pyproject.toml", "README.md")


def _copy_sources(dest: str) -> None:
    for name in SOURCES:
        src = os.path.join(REPO, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, os.path.join(dest, name))


@pytest.fixture(scope="module")
def installed():
    """(bin dir of the fresh venv, env without the checkout on any path)."""
    scratch = tempfile.mkdtemp(prefix="fakefs-wheel-")
    try:
        src, wheels, venv = (os.path.join(scratch, d) for d in ("src", "wheels", "venv"))
        os.mkdir(src)
        _copy_sources(src)
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                                "--no-index", "-q", "-w", wheels, src],
                               capture_output=True, text=True, timeout=300, cwd=scratch)
        assert build.returncode == 0, build.stdout + build.stderr
        [wheel] = os.listdir(wheels)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300, capture_output=True)
        vpython = os.path.join(venv, "bin", "python")
        site = subprocess.run([vpython, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        deps = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
        with open(os.path.join(site, "fakefs-test-deps.pth"), "w") as f:
            f.write("".join(f"{d}\n" for d in deps))
        install = subprocess.run([vpython, "-m", "pip", "install", "--no-index", "--no-deps", "-q",
                                  os.path.join(wheels, wheel)], capture_output=True, text=True, timeout=300)
        assert install.returncode == 0, install.stdout + install.stderr
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FAKEFS_PROFILES", "VIRTUAL_ENV")}
        env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
        where = subprocess.run(["fakefs", "--version"], capture_output=True, text=True, env=env, cwd="/")
        assert where.returncode == 0, where.stderr
        origin = subprocess.run([vpython, "-c", "import fakefs; print(fakefs.__file__)"], capture_output=True,
                                text=True, env=env, cwd="/").stdout.strip()
        assert origin.startswith(venv + "/"), f"fakefs imported from {origin}, not from the wheel"
        yield env
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fakefs_cmd(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``fakefs ARGS`` as typed in a shell: found on PATH, run from /."""
    return subprocess.run(["fakefs", *args], capture_output=True, text=True, env=env, cwd="/", timeout=timeout)


def test_profiles_ship_with_the_package(installed):
    res = fakefs_cmd(installed, "profiles")
    assert res.returncode == 0, res.stderr
    names = {line.split("\t")[0] for line in res.stdout.splitlines()}
    assert {"cgroup-v1", "cgroup-v1-fake", "cgroup-subtree", "kubelet", "runc", "k3s-worker"} <= names


def test_user_profiles_are_searched_first(installed, tmp_path):
    (tmp_path / "kubelet.toml").write_text('description = "my kubelet"\ninclude = ["runc"]\n')
    res = fakefs_cmd(installed, "profiles", "--profiles", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert f"kubelet\tmy kubelet\t(from {tmp_path})" in res.stdout.splitlines()
    env = dict(installed, FAKEFS_PROFILES=str(tmp_path))
    assert "kubelet\tmy kubelet" in fakefs_cmd(env, "profiles").stdout


def test_apply_dry_run_from_the_installed_package(installed):
    res = fakefs_cmd(installed, "apply", "kubelet", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("plan for profile kubelet")
    res = fakefs_cmd(installed, "apply", "kubelet", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["profile"] == "kubelet"


def test_probe_json_from_the_installed_package(installed):
    res = fakefs_cmd(installed, "probe", "--json")
    report = json.loads(res.stdout)
    assert res.returncode == (0 if report["auto_backend"] else 1), res.stderr
    assert report["schema"] == 1 and {"kubelet", "runc"} <= set(report["consumers"])
    if os.geteuid() == 0 and os.path.exists("/dev/fuse"):
        assert report["auto_backend"] == "fuse", report["backends"]


def test_run_with_a_memory_limit_from_the_installed_package(installed):
    require_root_and_fuse()
    require(os.access(NODE, os.X_OK), "needs Debian's nodejs at /usr/bin/node")
    res = fakefs_cmd(installed, "run", "--limit", "memory=512M", "--", "node", "-e",
                     "console.log(process.constrainedMemory())")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(512 << 20)


# -- a broken environment: one line `fakefs: ...`, never a traceback ----------------

def assert_one_line_error(res: subprocess.CompletedProcess, *, must_fail: bool, says: str = "") -> None:
    what = f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert "Traceback" not in res.stderr + res.stdout, what
    if must_fail:
        assert res.returncode != 0, what
    if res.returncode != 0:
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("fakefs: "), what
        assert says in lines[0], what


def _site_of_installed(env: dict) -> str:
    out = subprocess.run(["python", "-c", "import fakefs, os; print(os.path.dirname(fakefs.__file__))"],
                         capture_output=True, text=True, env=env, cwd="/", check=True)
    return out.stdout.strip()


def test_no_profiles_installed_is_one_line_everywhere(installed):
    """The package's profiles gone (the broken install this issue started
    from): every command that needs one says so in one line."""
    require(os.geteuid() == 0, "run needs root to reach the profile lookup")
    shipped = os.path.join(_site_of_installed(installed), "profiles")
    aside = shipped + ".aside"
    os.rename(shipped, aside)
    try:
        assert_one_line_error(fakefs_cmd(installed, "profiles"), must_fail=True, says="no profiles found")
        for args in (["apply", "kubelet"], ["apply", "kubelet", "--dry-run"], ["apply", "k3s-worker", "--dry-run", "--json"],
                     ["run", "--profile", "kubelet", "--", "true"], ["run", "--limit", "memory=512M", "--", "true"],
                     ["run", "--", "true"]):
            res = fakefs_cmd(installed, *args)
            assert_one_line_error(res, must_fail=True, says="available: none")
    finally:
        os.rename(aside, shipped)


def test_unusable_run_directory_is_one_line_everywhere(installed, tmp_path):
    require_root_and_fuse()
    not_a_dir = tmp_path / "run"
    not_a_dir.write_text("")
    env = dict(installed, FAKEFS_RUN_DIR=str(not_a_dir))
    target = tmp_path / "mnt"
    target.mkdir()
    for args in (["mount", str(target)], ["umount", str(target)], ["umount", "--all"], ["status"],
                 ["status", "--json"], ["apply", "cgroup-v1-fake"], ["run", "--limit", "memory=512M", "--", "true"]):
        assert_one_line_error(fakefs_cmd(env, *args), must_fail=True, says=f"run directory {not_a_dir}")
    assert_one_line_error(fakefs_cmd(env, "probe"), must_fail=False)  # the probe keeps its own scratch dirs
    assert not os.path.ismount(target)


# Runs in a mount namespace of its own where /dev is a tmpfs holding only the
# character devices programs need (bound from the real /dev): /dev/fuse is
# missing there, and nowhere else. Prints the results as JSON.
NO_DEV_FUSE = r"""
import json, os, subprocess, sys
from fakefs.host.sysmount import MS_BIND, mount, unshare_mount_namespace
unshare_mount_namespace()
keep = sys.argv[1]
mount("/dev", keep, None, MS_BIND)
mount("tmpfs", "/dev", "tmpfs", 0, "mode=755")
for name in ("null", "zero", "full", "random", "urandom"):
    open(f"/dev/{name}", "w").close()
    mount(f"{keep}/{name}", f"/dev/{name}", None, MS_BIND)
results = []
for args in json.loads(sys.argv[2]):
    res = subprocess.run(["fakefs", *args], capture_output=True, text=True, timeout=60)
    results.append([args, res.returncode, res.stdout, res.stderr])
print(json.dumps(results))
"""


def test_missing_dev_fuse_is_one_line_everywhere(installed, tmp_path):
    require_root_and_fuse()
    target, refused, keep = tmp_path / "mnt", tmp_path / "refused", tmp_path / "dev"
    for d in (target, refused, keep):
        d.mkdir()
    t = str(target)
    commands = [["mount", str(refused), "--backend", "fuse"], ["mount", str(refused), "--backend", "fuse-raw"],
                ["run", "--backend", "fuse", "--limit", "memory=512M", "--", "true"],
                ["run", "--backend", "fuse-raw", "--profile", "cgroup-v1-fake", "--", "true"],
                ["probe", "--json"],
                ["mount", t], ["status"], ["umount", t]]  # auto: the tmpfs backend needs no /dev/fuse
    env = dict(installed, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-c", NO_DEV_FUSE, str(keep), json.dumps(commands)],
                         capture_output=True, text=True, env=env, cwd="/", timeout=300)
    assert out.returncode == 0, out.stderr
    results = {tuple(args): subprocess.CompletedProcess(args, rc, so, se) for args, rc, so, se in json.loads(out.stdout)}
    for args in commands[:4]:
        assert_one_line_error(results[tuple(args)], must_fail=True, says="/dev/fuse")
    # a daemon that failed keeps its log, and the error names it
    err = results[tuple(commands[0])].stderr
    log = err.split("(daemon log ")[1].split(",")[0].rstrip(")\n")
    assert os.path.exists(log), err
    probe = json.loads(results[("probe", "--json")].stdout)
    assert probe["checks"]["dev_fuse"]["ok"] is False and probe["auto_backend"] == "tmpfs"
    for args in commands[5:]:
        assert results[tuple(args)].returncode == 0, results[tuple(args)]
    assert "tmpfs" in results[("status",)].stdout
    assert not os.path.ismount(target)
