"""The /proc views through real FUSE mounts (both transports), read by real
processes: a view follows the cgroups of the process that reads it.

- differential: a reader whose cgroups have no limit reads, field for field,
  the machine's file (values within the noise of a live counter);
- real hierarchies: a reader moved into throwaway real child cgroups with a
  memory limit, a CFS quota or a cpuset sees them;
- fake cgroups: two processes in two fake cgroups with different limits read
  the same file at the same time, each its own;
- hostile reads: byte-by-byte reads, reads past the end and random preads
  give the bytes of one consistent rendering;
- ``fakefs run --limit memory=512M --limit cpus=1``: free, psutil, node,
  glibc's sysconf and top show 512 MiB and 1 CPU; ``fakefs run --profile
  node-capacity`` binds views that equal the real files where no limit applies.

Real child cgroups are made only below this process's own cgroups and
removed afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile

import pytest

from fakefs.model.procviews import VIEW_PATHS, VIEWS_DIR
from fakefs.runtime.daemons import start, stop
from fakefs.runtime.serving import MountRequest
from tests.support import FUSE_BACKENDS, REPO, fakefs, require, require_root_and_fuse, wait_for
from tests.test_limits import _own_path

READER = os.path.join(REPO, "tests", "scripts", "procviews_reader.py")
REAL = "/sys/fs/cgroup"
ALL_VIEWS = [n for n, p in VIEW_PATHS.items() if os.path.isfile(p)]
NPROC = len(os.sched_getaffinity(0))


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@contextlib.contextmanager
def views_daemon(backend: str, spec: dict, tree: str = "procviews", hierarchies=None):
    """A daemon serving the views (and, for tree cgroup, a fake cgroup tree
    with the views in its .procviews directory) on a scratch directory."""
    require_root_and_fuse()
    target = tempfile.mkdtemp(prefix="fakefs-views-")
    os.chmod(target, 0o755)
    spec_path = target + ".spec.json"
    with open(spec_path, "w") as f:
        json.dump({"procviews": spec}, f)
    try:
        start(MountRequest(target=target, tree=tree, backend=backend, hierarchies=hierarchies,
                           extra={"spec": spec_path}))
        try:
            yield target
        finally:
            stop(target, forget=True)
    finally:
        os.rmdir(target)
        os.unlink(spec_path)


def reader(*args: str, timeout: float = 60) -> dict:
    res = subprocess.run([sys.executable, READER, *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])["result"]


@contextlib.contextmanager
def real_children(**settings: dict[str, str]):
    """Throwaway real child cgroups of this process's own, one per controller
    given (``memory={"memory.limit_in_bytes": "256M"}``): {controller: dir}."""
    name = f"fakefs-views-{secrets.token_hex(4)}"
    dirs = {}
    try:
        for controller, files in settings.items():
            require(os.path.isdir(os.path.join(REAL, controller)), f"needs the real {controller} hierarchy")
            d = os.path.join(REAL, controller, _own_path(controller).lstrip("/"), name)
            os.mkdir(d)
            dirs[controller] = d
            if controller == "cpuset":
                for f in ("cpuset.mems", "cpuset.cpus"):  # a new cpuset starts empty
                    _write(os.path.join(d, f), files.get(f) or open(os.path.join(os.path.dirname(d), f)).read())
            for f, value in files.items():
                _write(os.path.join(d, f), value)
        yield dirs
    finally:
        for d in dirs.values():
            # the readers have exited; their entries leave the cgroup shortly after
            assert wait_for(lambda d=d: not open(os.path.join(d, "cgroup.procs")).read().strip(), 10)
            os.rmdir(d)


# -- differential ------------------------------------------------------------------------

NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# How far a live value may move between two reads of the real file taken
# around the view's read: absolute, relative.
NOISE = {"meminfo": (32768, 0.05), "stat": (200, 0.02), "uptime": (2, 0.0), "loadavg": (1.5, 0.5),
         "diskstats": (50, 0.02), "cpuinfo": (5, 0.01), "swaps": (0, 0.0), "cpu-online": (0, 0.0)}


def assert_same_file(name: str, before: str, view: str, after: str) -> None:
    """Same lines, same keys in the same order; numbers within the noise
    of a live counter (between the two real reads, give or take)."""
    lines = view.splitlines()
    assert len(lines) == len(before.splitlines()) or len(lines) == len(after.splitlines()), (name, view)
    absolute, relative = NOISE[name]
    for i, line in enumerate(lines):
        b, a = before.splitlines()[i].split(), after.splitlines()[i].split()
        v = line.split()
        assert len(v) == len(b), (name, line, before.splitlines()[i])
        for tv, tb, ta in zip(v, b, a):
            parts = list(zip(tv.split("/"), tb.split("/"), ta.split("/")))  # loadavg's running/total
            if len(parts) == 2:
                # The running count is of this instant: any count up to the
                # total, like the kernel's (gVisor shows 0/0).
                running, total = int(parts[0][0]), int(parts[1][0])
                assert 0 <= running <= total, (name, line)
                parts = parts[1:]
            for pv_, pb, pa in parts:
                if NUMBER.match(pv_) and NUMBER.match(pb) and NUMBER.match(pa):
                    x, lo, hi = float(pv_), min(float(pb), float(pa)), max(float(pb), float(pa))
                    slack = max(absolute, relative * hi)
                    assert lo - slack <= x <= hi + slack, (name, line, before.splitlines()[i], after.splitlines()[i])
                else:
                    assert pv_ == pb, (name, line, before.splitlines()[i])


@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_without_a_limit_every_view_is_the_real_file(backend):
    # This process's cgroups have no limit (the test session sits where it was started).
    with views_daemon(backend, {"limits": "reader"}) as d:
        for name in ALL_VIEWS:
            real = VIEW_PATHS[name]
            before = open(real).read()
            view = open(os.path.join(d, name)).read()
            after = open(real).read()
            assert_same_file(name, before, view, after)
            # a reader in another process too
            r = reader("around", d, name)[name]
            assert_same_file(name, r["before"], r["view"], r["after"])


def test_node_capacity_binds_views_equal_to_the_real_files_where_no_limit_applies():
    require_root_and_fuse()
    res = fakefs("run", "--profile", "node-capacity", "--", sys.executable, READER, "diff", *ALL_VIEWS, timeout=120)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout.splitlines()[-1])["result"]
    assert set(result) == set(ALL_VIEWS)
    for name, r in result.items():
        assert_same_file(name, r["before"], r["view"], r["after"])


# -- real hierarchies --------------------------------------------------------------------

def _kb(meminfo: str, key: str) -> int:
    return int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith(key + ":")))


@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_a_reader_in_real_limited_cgroups_sees_its_limits(backend):
    with views_daemon(backend, {"limits": "reader"}) as d, \
            real_children(memory={"memory.limit_in_bytes": "256M"}, cpu={"cpu.cfs_quota_us": "50000"}) as cg:
        joins = [a for c in ("memory", "cpu") for a in ("--join", os.path.join(cg[c], "cgroup.procs"))]
        r = reader(*joins, "read", d, "meminfo", "cpu-online", "cpuinfo", "stat", "swaps", "loadavg")
    assert _kb(r["meminfo"], "MemTotal") == 262144
    assert 0 <= _kb(r["meminfo"], "MemFree") <= 262144
    assert r["cpu-online"] == "0\n"  # ceil(50000 / 100000) = 1 CPU
    assert len(re.findall(r"^processor\s*:", r["cpuinfo"], re.M)) == 1
    assert [line.split()[0] for line in r["stat"].splitlines() if line.startswith("cpu")] == ["cpu", "cpu0"]
    assert r["swaps"] == open("/proc/swaps").read().splitlines(keepends=True)[0] or "none" in r["swaps"]
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+\n", r["loadavg"])


@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_a_reader_in_a_real_cpuset_sees_those_cpus_renumbered(backend):
    require(NPROC >= 2, "needs two CPUs")
    last = max(os.sched_getaffinity(0))
    with views_daemon(backend, {"limits": "reader"}) as d, real_children(cpuset={"cpuset.cpus": str(last)}) as cg:
        r = reader("--join", os.path.join(cg["cpuset"], "cgroup.procs"), "read", d, "cpuinfo", "cpu-online")
    assert r["cpu-online"] == "0\n"
    [block] = [b for b in r["cpuinfo"].split("\n\n") if b.strip()]
    assert block.startswith("processor\t: 0\n")
    real_block = [b for b in open("/proc/cpuinfo").read().split("\n\n") if re.match(rf"processor\s*: {last}\n", b)][0]
    # the rest of the block is the real CPU's (its apicid, core id, ...)
    assert block.split("\n", 1)[1] == real_block.split("\n", 1)[1]


# -- fake cgroups ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_two_readers_in_two_fake_cgroups_each_see_their_own_limits(backend):
    with views_daemon(backend, {"limits": "reader"}, tree="cgroup", hierarchies=["cpu,cpuacct", "cpuset", "memory"]) as d:
        views = os.path.join(d, VIEWS_DIR)
        for name, limit, quota in (("a", "256M", "100000"), ("b", "512M", "-1")):
            os.mkdir(os.path.join(d, "memory", name))
            os.mkdir(os.path.join(d, "cpu,cpuacct", name))
            _write(os.path.join(d, "memory", name, "memory.limit_in_bytes"), limit)
            _write(os.path.join(d, "cpu,cpuacct", name, "cpu.cfs_quota_us"), quota)
        go = os.path.join(tempfile.mkdtemp(prefix="fakefs-go-"), "go")
        procs = {}
        try:
            for name in ("a", "b"):
                procs[name] = subprocess.Popen([sys.executable, READER, "loop", views, go, "200"],
                                               stdout=subprocess.PIPE, text=True)
                for h in ("memory", "cpu,cpuacct"):
                    _write(os.path.join(d, h, name, "cgroup.procs"), str(procs[name].pid))
            open(go, "w").close()  # both start reading at once
            results = {n: json.loads(p.communicate(timeout=60)[0].splitlines()[-1])["result"] for n, p in procs.items()}
        finally:
            for p in procs.values():
                p.kill()
                p.wait()
            shutil.rmtree(os.path.dirname(go))
    assert results["a"] == {"memtotal_kb": [262144], "online": ["0\n"]}
    assert results["b"]["memtotal_kb"] == [524288]
    assert results["b"]["online"] == [open("/sys/devices/system/cpu/online").read()]


@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_a_limit_written_in_the_fake_tree_shows_at_the_next_read(backend):
    with views_daemon(backend, {"limits": "reader"}, tree="cgroup", hierarchies=["memory"]) as d:
        cg = os.path.join(d, "memory", "c")
        os.mkdir(cg)
        _write(os.path.join(cg, "memory.limit_in_bytes"), "128M")
        proc = subprocess.Popen([sys.executable, "-c", "import sys; [print(open(sys.argv[1]).read(), flush=True) "
                                 "for _ in iter(sys.stdin.readline, '')]", os.path.join(d, VIEWS_DIR, "meminfo")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            _write(os.path.join(cg, "cgroup.procs"), str(proc.pid))

            def memtotal() -> int:
                proc.stdin.write("\n")
                proc.stdin.flush()
                text = "".join(iter(lambda: proc.stdout.readline(), "\n"))
                return _kb(text, "MemTotal")

            assert memtotal() == 131072
            _write(os.path.join(cg, "memory.limit_in_bytes"), "64M")
            assert memtotal() == 65536
            _write(os.path.join(d, "memory", "cgroup.procs"), str(proc.pid))  # back to the root: no limit
            assert memtotal() == _kb(open("/proc/meminfo").read(), "MemTotal")
        finally:
            proc.kill()
            proc.wait()


# -- hostile reads, modes, errors ---------------------------------------------------------------

@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_hostile_reads_give_bytes_of_one_consistent_rendering(backend):
    with views_daemon(backend, {"limits": "reader"}, tree="cgroup", hierarchies=["cpu,cpuacct", "memory"]) as d:
        for h in ("memory", "cpu,cpuacct"):
            os.mkdir(os.path.join(d, h, "h"))
        _write(os.path.join(d, "memory", "h", "memory.limit_in_bytes"), "300M")
        _write(os.path.join(d, "cpu,cpuacct", "h", "cpu.cfs_quota_us"), "100000")
        joins = [a for h in ("memory", "cpu,cpuacct") for a in ("--join", os.path.join(d, h, "h", "cgroup.procs"))]
        r = reader(*joins, "hostile", os.path.join(d, VIEWS_DIR), "meminfo", "cpuinfo", "cpu-online", "swaps")
    assert _kb(r["meminfo"]["reference"], "MemTotal") == 300 * 1024
    for name, got in r.items():
        assert got["past"] == ["", "", "", ""], name
        assert got["mismatches"] == [], name
        # one byte at a time: one rendering, read on where the last read ended
        tiny = got["tiny"]
        assert re.sub(r"\d", "#", tiny) == re.sub(r"\d", "#", got["reference"]), name
    kb = {line.split(":")[0]: int(line.split()[1]) for line in r["meminfo"]["tiny"].splitlines()
          if line.endswith(" kB")}
    assert kb["MemTotal"] == 300 * 1024 and kb["MemAvailable"] - kb["MemFree"] == kb["Cached"]


@pytest.mark.parametrize("backend", FUSE_BACKENDS)
def test_views_refuse_writes_as_procfs_and_sysfs_do(backend):
    with views_daemon(backend, {"limits": "reader"}) as d:
        st = os.stat(os.path.join(d, "meminfo"))
        assert (oct(st.st_mode), st.st_uid, st.st_gid) == (oct(0o100444), 0, 0)
        assert st.st_size == len(open(os.path.join(d, "meminfo")).read())  # gVisor cuts reads at st_size
        fd = os.open(os.path.join(d, "meminfo"), os.O_WRONLY)  # root may open a procfs file for writing...
        try:
            with pytest.raises(OSError) as exc:
                os.write(fd, b"1")
            assert exc.value.errno == errno.EIO  # ...and the write fails (measured on /proc/meminfo)
        finally:
            os.close(fd)
        with pytest.raises(OSError) as exc:
            os.open(os.path.join(d, "cpu-online"), os.O_WRONLY)
        assert exc.value.errno == errno.EACCES  # kernfs: even root
        res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                              f"import os\ntry:\n    os.open({os.path.join(d, 'meminfo')!r}, os.O_WRONLY)\n"
                              f"except OSError as e:\n    print(e.errno)\nprint(open({os.path.join(d, 'meminfo')!r}).read()[:9])"],
                             capture_output=True, text=True, timeout=30)
        assert res.stdout.split() == [str(errno.EACCES), "MemTotal:"], res.stderr


def test_the_views_tree_says_what_is_wrong_with_its_spec():
    require_root_and_fuse()
    from fakefs.errors import CliError

    with pytest.raises(CliError) as exc:
        with views_daemon("fuse", {"views": ["meminfo", "vmstat"]}):
            pass
    assert "unknown view 'vmstat'" in str(exc.value)


# -- fakefs run --limit ---------------------------------------------------------------------------

def test_fakefs_run_limit_shows_512m_and_one_cpu_to_real_programs():
    require_root_and_fuse()
    for tool in ("free", "top", "node", "getconf"):
        require(shutil.which(tool) is not None, f"needs {tool}")
    # Until `fakefs run` gives a command sitting in the root cpu cgroup one of
    # its own (issue 11), the command starts in a throwaway real cpu child.
    with real_children(cpu={}) as cg:
        res = subprocess.run(["sh", "-c", 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', "sh", cg["cpu"],
                              sys.executable, "-m", "fakefs", "run", "--limit", "memory=512M", "--limit", "cpus=1",
                              "--", sys.executable, READER, "tools"],
                             capture_output=True, text=True, timeout=180, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": REPO})
    assert res.returncode == 0, res.stdout + res.stderr
    r = json.loads(res.stdout.splitlines()[-1])["result"]
    assert r["free_total"] == 536870912
    assert r["psutil"][0] == 536870912
    assert r["node"] == [536870912, 1]
    assert r["psutil"][1] == 1 and r["getconf"] == "1"  # glibc reads /sys/devices/system/cpu/online
    assert re.search(r"MiB Mem :\s+512\.0 total", r["top_mem"]), r["top_mem"]


def test_run_dry_run_and_profiles_list_each_view_with_its_reason():
    res = fakefs("apply", "node-capacity", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    steps = json.loads(res.stdout)["steps"]
    binds = {s["target"]: s for s in steps if s["action"] == "bind"}
    assert set(binds) == {VIEW_PATHS[n] for n in ALL_VIEWS}
    assert all(s["why"].startswith(f"view {n} from the sandbox's own cgroups: ")
               for n in ALL_VIEWS for s in [binds[VIEW_PATHS[n]]])
    [daemon] = [s for s in steps if s["action"] == "start-daemon"]
    assert daemon["options"]["tree"] == "procviews" and daemon["options"]["procviews"]["limits"] == "sandbox"
    assert daemon["options"]["procviews"]["cgroups"]["memory"] == _own_path("memory")
    k3s = json.loads(fakefs("apply", "k3s-worker", "--dry-run", "--json").stdout)["steps"]
    assert {s["target"] for s in k3s if s["action"] == "bind" and s["target"] in binds} == set(binds)
    kubelet = json.loads(fakefs("apply", "kubelet", "--dry-run", "--json").stdout)["steps"]
    assert not any(s["target"] in binds and s["action"] == "bind" for s in kubelet)


def test_profile_errors_name_the_bad_view_key():
    scratch = tempfile.mkdtemp()
    try:
        for body, message in (('[procviews]\nviews = ["meminfo", "vmstat"]\n', "unknown view 'vmstat'"),
                              ('[procviews]\nlimits = "everyone"\n', "procviews.limits must be"),
                              ('[procviews]\nextra = 1\n', "unknown key 'extra' in [procviews]")):
            path = os.path.join(scratch, "p.toml")
            with open(path, "w") as f:
                f.write(body)
            res = fakefs("apply", path, "--dry-run")
            assert res.returncode != 0 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    finally:
        shutil.rmtree(scratch)


def test_reader_mode_views_are_served_by_the_fake_cgroup_daemon():
    from fakefs.manager.plan import make_plan
    from fakefs.manager.profile import load
    from fakefs.manager.run import choose_views

    profile = load("cgroup-v1-fake")
    choose_views(profile, limited=True, wanted=True)
    plan = make_plan(profile, "/run/fakefs/stage-x", probe=lambda c, n: (False, "no"))
    [daemon] = [s for s in plan.steps if s.action == "start-daemon"]
    assert daemon.options["tree"] == "cgroup" and daemon.options["procviews"] == {"views": ALL_VIEWS, "limits": "reader"}
    binds = [s for s in plan.steps if s.action == "bind" and s.target in VIEW_PATHS.values()]
    assert [s.source for s in binds] == [os.path.join(daemon.target, VIEWS_DIR, n) for n in ALL_VIEWS]
    choose_views(profile, limited=True, wanted=False)  # --no-proc-views
    assert not [s for s in make_plan(profile, "/x", probe=lambda c, n: (False, "no")).steps
                if s.target in VIEW_PATHS.values()]
