"""Least privilege and confinement.

* An unprivileged user (uid 65534) meets exactly the permissions of the
  kernel's cgroupfs: compared file by file with a throwaway child of this
  machine's real cgroup v1 hierarchies.
* ``cap_last_cap`` is read-only even for root through the overlay tree.
* Nothing written to ``release_agent``/``notify_on_release`` ever runs.
* Names with '/', '..', NUL or newline are refused; the merged /proc/sys
  views never follow a symlink out of the directory they cover; mount
  targets are checked where their symlinks lead.
* The CLI and the profile loader answer any input with a one-line error
  (hypothesis fuzzing), never a traceback.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from tests.support import REPO, require, require_root_and_fuse

NOBODY = 65534

# Run as uid/gid 65534: for each path, what opening it for reading (and
# reading it) and for writing gives, and for each directory what mkdir,
# rmdir and rename give.
PROBE = r'''
import errno, json, os, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
def name(e): return errno.errorcode[e.errno]
out = {}
for path in json.loads(sys.argv[1]):
    r = {}
    if os.path.isdir(path):
        for op, fn in (("mkdir", lambda: os.mkdir(os.path.join(path, "nobody"))),
                       ("rmdir", lambda: os.rmdir(path)),
                       ("rename", lambda: os.rename(path, path + "-moved"))):
            try:
                fn(); r[op] = "ok"
            except OSError as e:
                r[op] = name(e)
    else:
        try:
            fd = os.open(path, os.O_RDONLY)
            r["open_r"] = "ok"
            try:
                os.read(fd, 65536); r["read"] = "ok"
            except OSError as e:
                r["read"] = name(e)
            os.close(fd)
        except OSError as e:
            r["open_r"] = name(e)
        try:
            os.close(os.open(path, os.O_WRONLY)); r["open_w"] = "ok"
        except OSError as e:
            r["open_w"] = name(e)
    out[os.path.basename(path) if not os.path.isdir(path) else "<dir>"] = r
print(json.dumps(out))
'''


def _probe_as_nobody(paths: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(paths)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _files_of(d: str) -> list[str]:
    return sorted(os.path.join(d, e.name) for e in os.scandir(d) if e.is_file(follow_symlinks=False))


REAL = "/sys/fs/cgroup"
COMPARED = ["cpu", "memory", "pids", "devices", "freezer", "cpuset", "blkio"]


@pytest.mark.fuse
@pytest.mark.kernel
def test_nobody_meets_exactly_the_kernels_permissions(cgmount):
    for h in COMPARED:
        require(os.path.isfile(os.path.join(REAL, h, "cgroup.procs")), f"real cgroup v1 {h} hierarchy")
    name = f"fakefs-security-{uuid.uuid4().hex[:8]}"
    made = []
    try:
        for h in COMPARED:
            os.mkdir(cgmount.p(h, name))
            os.mkdir(os.path.join(REAL, h, name))
            made.append(os.path.join(REAL, h, name))
        for h in COMPARED:
            for where in ([h], [h, name]):
                fake_dir, real_dir = cgmount.p(*where), os.path.join(REAL, *where)
                fake = _probe_as_nobody([fake_dir] + _files_of(fake_dir))
                real = _probe_as_nobody([real_dir] + _files_of(real_dir))
                common = set(fake) & set(real)
                assert len(common) > 5, (h, where)
                diffs = {n: (fake[n], real[n]) for n in sorted(common) if fake[n] != real[n]}
                assert diffs == {}, f"{h}/{where}: fake vs real {diffs}"
                # and it really is least privilege: nothing writable, no tree change
                assert all(r.get("open_w", "EACCES") == "EACCES" for r in fake.values()), (h, where)
                assert fake["<dir>"]["mkdir"] == "EACCES", (h, where)
    finally:
        for d in made:
            os.rmdir(d)


@pytest.mark.fuse
def test_delegated_procs_file_moves_only_the_writers_own_tasks(cgmount):
    d = cgmount.p("pids", "deleg")
    os.mkdir(d)
    os.chown(os.path.join(d, "cgroup.procs"), NOBODY, NOBODY)
    mine = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)))
    roots = subprocess.Popen(["sleep", "30"])
    try:
        code = f"""
import errno, os
os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
for pid in ({mine.pid}, {roots.pid}):
    fd = os.open({os.path.join(d, 'cgroup.procs')!r}, os.O_WRONLY)
    try:
        os.write(fd, str(pid).encode()); print("ok")
    except OSError as e:
        print(errno.errorcode[e.errno])
    os.close(fd)
"""
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        # __cgroup1_procs_write(): EACCES for a task of another user
        assert r.stdout.split() == ["ok", "EACCES"]
        assert cgmount.read("pids", "deleg", "cgroup.procs").split() == [str(mine.pid)]
    finally:
        for p in (mine, roots):
            p.kill()
            p.wait()
    os.rmdir(d)


def test_model_refuses_moving_another_users_task():
    procs = StaticProcessTable()
    procs.spawn(10)
    procs.spawn(20)
    procs.owners[20] = (1000, 1000)
    model = CgroupModel(HostFacts(), procs, ["pids"])
    h = model.hierarchy("pids")
    cg = h.mkdir(h.root, "x")
    with pytest.raises(KernelError) as exc:
        h.write_file(cg, "cgroup.procs", b"10", WriteContext(tid=20, uid=1000))
    assert exc.value.errno == errno.EACCES
    h.write_file(cg, "cgroup.procs", b"0", WriteContext(tid=20, uid=1000))  # itself
    h.write_file(cg, "tasks", b"10", WriteContext(uid=0))  # root moves anyone
    assert h.tids_in(cg) == [10, 20]


# -- release_agent / notify_on_release ------------------------------------------

@pytest.mark.fuse
def test_release_agent_is_never_executed(cgmount):
    scratch = tempfile.mkdtemp(prefix="fakefs-agent-")
    marker = os.path.join(scratch, "ran")
    agent = os.path.join(scratch, "agent.sh")
    with open(agent, "w") as f:
        f.write(f"#!/bin/sh\necho \"$@\" >> {marker}\n")
    os.chmod(agent, 0o755)
    try:
        for h in ("pids", "memory", "systemd"):
            cgmount.write(f"{h}/release_agent", agent)
            assert cgmount.read(h, "release_agent") == agent + "\n"  # stored, as the kernel does
            cgmount.write(f"{h}/notify_on_release", "1")
            d = cgmount.p(h, "released")
            os.mkdir(d)
            assert cgmount.read(h, "released", "notify_on_release") == "1\n"  # inherited
            child = subprocess.Popen(["sleep", "0.2"])
            cgmount.write(f"{h}/released/cgroup.procs", str(child.pid))
            child.wait()  # the cgroup empties: the kernel would call the agent now
            assert cgmount.read(h, "released", "cgroup.procs") == ""
            os.rmdir(d)
        # a path written into notify_on_release is just a parse error
        with pytest.raises(OSError) as exc:
            cgmount.write("pids/notify_on_release", agent)
        assert exc.value.errno == errno.EINVAL
        time.sleep(1.0)
        assert not os.path.exists(marker), open(marker).read()
    finally:
        os.unlink(agent)
        if os.path.exists(marker):
            os.unlink(marker)
        os.rmdir(scratch)


def test_serving_code_never_starts_programs():
    """The model and the filesystem layers cannot execute anything: no
    subprocess, os.system/exec*/spawn*/posix_spawn/fork anywhere in them."""
    forbidden_modules = {"subprocess", "pty", "multiprocessing"}
    forbidden_calls = {"system", "popen", "posix_spawn", "posix_spawnp", "fork", "forkpty",
                       "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
                       "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe"}
    checked = 0
    for sub in ("model", "fs"):
        for dirpath, _, names in os.walk(os.path.join(REPO, "fakefs", sub)):
            for n in names:
                if not n.endswith(".py"):
                    continue
                path = os.path.join(dirpath, n)
                tree = ast.parse(open(path).read(), path)
                checked += 1
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        assert not {a.name.split(".")[0] for a in node.names} & forbidden_modules, path
                    elif isinstance(node, ast.ImportFrom):
                        assert (node.module or "").split(".")[0] not in forbidden_modules, path
                    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                            and node.value.id == "os":
                        assert node.attr not in forbidden_calls, f"{path}: os.{node.attr}"
    assert checked > 20


# -- names and paths ------------------------------------------------------------

@pytest.mark.parametrize("name", ["a/b", "/", "..", ".", "a\0b", "\0", "a\nb", "\n", ""])
def test_model_refuses_bad_names_in_mkdir_and_rename(name):
    model = CgroupModel(HostFacts(), StaticProcessTable(), ["pids"])
    h = model.hierarchy("pids")
    with pytest.raises(KernelError) as exc:
        h.mkdir(h.root, name)
    assert exc.value.errno == errno.EINVAL
    cg = h.mkdir(h.root, "ok")
    with pytest.raises(KernelError) as exc:
        h.rename(cg, h.root, name)
    assert exc.value.errno == errno.EINVAL
    assert list(h.root.children) == ["ok"]


@pytest.mark.fuse
def test_bad_names_through_the_mount(cgmount):
    base = cgmount.p("pids")
    for name, want in (("a\nb", errno.EINVAL), ("..", errno.EEXIST), (".", errno.EEXIST)):
        with pytest.raises(OSError) as exc:
            os.mkdir(os.path.join(base, name))
        assert exc.value.errno == want, name
    os.mkdir(os.path.join(base, "fine"))
    with pytest.raises(OSError) as exc:
        os.rename(os.path.join(base, "fine"), os.path.join(base, "bad\nname"))
    assert exc.value.errno == errno.EINVAL
    os.rmdir(os.path.join(base, "fine"))
    assert sorted(e.name for e in os.scandir(base) if e.is_dir()) == []


def _overlay_daemon(spec: dict, target: str):
    """Start the overlay tree's daemon on ``target`` as the mount manager does."""
    from fakefs.runtime.serving import MountRequest
    from fakefs.runtime.daemons import start

    spec_path = target + ".spec.json"
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    assert start(MountRequest(target=target, tree="overlay", backend="fuse", extra={"spec": spec_path})) == 0
    return spec_path


@pytest.mark.fuse
def test_merged_view_never_follows_a_symlink_out():
    require_root_and_fuse()
    from fakefs.runtime.daemons import stop

    scratch = tempfile.mkdtemp(prefix="fakefs-confine-")
    real = os.path.join(scratch, "real")
    outside = os.path.join(scratch, "outside")
    mnt = os.path.join(scratch, "mnt")
    for d in (real, outside, mnt, os.path.join(real, "sub")):
        os.mkdir(d)
    with open(os.path.join(outside, "secret"), "w") as f:
        f.write("secret\n")
    with open(os.path.join(real, "sub", "value"), "w") as f:
        f.write("inside\n")
    os.symlink(outside, os.path.join(real, "escape"))
    spec = {"views": {"view": {"real": real, "entries": [
        {"kind": "file", "path": os.path.join(real, "synthetic"), "content": "7\n", "mode": 0o444}]}}}
    spec_path = _overlay_daemon(spec, mnt)
    try:
        view = os.path.join(mnt, "view")
        assert sorted(os.listdir(view)) == ["escape", "sub", "synthetic"]
        # a real symlink is shown as a symlink: the daemon does not resolve it
        assert os.readlink(os.path.join(view, "escape")) == outside
        # hold the directory, then swap it for a symlink pointing outside
        fd = os.open(os.path.join(view, "sub"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert os.listdir(fd) == ["value"]
            os.rename(os.path.join(real, "sub"), os.path.join(scratch, "sub-old"))
            os.symlink(outside, os.path.join(real, "sub"))
            # through the held inode the daemon must not reach "outside"
            for attempt in (lambda: os.listdir(fd),
                            lambda: open(os.open("secret", os.O_RDONLY, dir_fd=fd)).read()):
                try:
                    got = attempt()
                except OSError as exc:
                    assert exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.ESTALE), exc
                else:
                    assert "secret" not in str(got), got
        finally:
            os.close(fd)
        # a fresh lookup sees the symlink as a symlink (resolved by the caller's kernel)
        assert os.readlink(os.path.join(view, "sub")) == outside
    finally:
        stop(mnt)
        os.unlink(spec_path)
        import shutil

        shutil.rmtree(scratch)


def test_symlinked_mount_target_is_checked_where_it_leads(monkeypatch, tmp_path):
    import fakefs.host.hiding as hiding
    import fakefs.runtime.daemons as mounting

    # This process stands for the init system: its namespace is the host's.
    monkeypatch.setattr(hiding, "INIT_PID", os.getpid())
    monkeypatch.delenv("FAKEFS_PRIVATE_MNTNS", raising=False)
    monkeypatch.setattr(mounting.os, "geteuid", lambda: 0)
    link = tmp_path / "innocent"
    link.symlink_to("/proc/sys")
    with pytest.raises(mounting.CliError, match="refusing to mount over .*-> /proc/sys.*the files of /proc/sys"):
        mounting.check_target(str(link), in_place=False)
    nested = tmp_path / "dev-link"
    nested.symlink_to("/dev/../sys/fs")
    with pytest.raises(mounting.CliError, match="refusing"):
        mounting.check_target(str(nested), in_place=False)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert mounting.check_target(str(plain), in_place=False) == str(plain)
    assert mounting.check_target(str(link), in_place=True) == "/proc/sys"
    for bad in ("", "a\0b", "x\ny"):
        with pytest.raises(mounting.CliError, match="bad mount target"):
            mounting.check_target(bad, in_place=False)


# -- CLI and profiles: one-line errors ----------------------------------------------

_WORDS = ["mount", "umount", "status", "apply", "run", "profiles", "--json", "--dry-run", "--all",
          "--backend", "--tree", "--hierarchy", "--foreground", "--in-place", "--profile", "--verbose",
          "--forget", "--", "kubelet", "nope", "cpu,cpuacct", "name=", "name=x/y", "bogus", "fuse", "auto",
          "/nonexistent", "", "-", "\0", "a\0b", "\udcff", "x" * 5000, "/proc/sys", "--version", "-h"]


def _safe_cli(monkeypatch):
    """The CLI with every action that would change the machine replaced by a
    recorder: only argument handling and validation run for real."""
    import fakefs.cli as cli
    import fakefs.manager.apply as apply_mod
    import fakefs.manager.run as run_mod
    import fakefs.runtime.daemons as mounting

    calls = []
    monkeypatch.setattr(mounting, "start", lambda *a, **k: calls.append(("start", a)) or 0)
    monkeypatch.setattr(mounting, "stop", lambda *a, **k: calls.append(("stop", a)) or "stopped")
    monkeypatch.setattr(mounting, "cleanup_stale", lambda *a, **k: calls.append(("cleanup", a)))
    monkeypatch.setattr(apply_mod, "apply", lambda *a, **k: calls.append(("apply", a)) or "applied")
    monkeypatch.setattr(apply_mod, "undo_all", lambda *a, **k: calls.append(("undo", a)) or [])
    monkeypatch.setattr(run_mod, "run", lambda *a, **k: calls.append(("run", a)) or 0)
    return cli, calls


def _one_line_or_usage(err: str) -> bool:
    if "Traceback" in err:
        return False
    if err.startswith("usage:"):
        # argparse: "usage: ..." (possibly wrapped) then "fakefs ...: error: ..."
        # (which echoes the bad argument as given, newlines included), or
        # the usage alone when no command is given
        return "error:" in err or len(err.strip().split("\n")) == 1
    return len([line for line in err.split("\n") if line.strip()]) <= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.one_of(st.sampled_from(_WORDS), st.text(max_size=12)), max_size=6))
def test_cli_never_shows_a_traceback(monkeypatch, argv):
    cli, _ = _safe_cli(monkeypatch)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors, --help, --version
            code = exc.code
    assert isinstance(code, int), (argv, code)
    if code != 0:
        assert _one_line_or_usage(err.getvalue()), (argv, err.getvalue())


_TOML_KEYS = ["description", "include", "cgroup", "procsys", "files", "limits", "target", "hierarchies",
              "authentic", "subtree", "entries", "writable", "kind", "content", "mode", "optional", "colour",
              "/dev/kmsg", "relative", "cpu.max", "memory.max", "pids.max"]
_toml_scalar = st.one_of(st.text(max_size=10), st.integers(-2, 1 << 40), st.booleans(), st.floats(allow_nan=False),
                         st.sampled_from(["prefer", "never", "devnull", "text", "cpu,cpuacct", "name=systemd",
                                          "vm/panic_on_oom", "../../etc/passwd", "/abs", "kubelet", "missing"]))
_toml_value = st.recursive(_toml_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_TOML_KEYS), inner, max_size=3)), max_leaves=8)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not isinstance(value, float) or value == value and abs(value) != float("inf") \
            else "0.0"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(st.sampled_from(_TOML_KEYS), _toml_value, max_size=5),
       raw=st.one_of(st.none(), st.binary(max_size=60)))
def test_profile_loader_gives_one_line_errors(monkeypatch, doc, raw):
    from fakefs.manager.profile import ProfileError, load

    with tempfile.TemporaryDirectory() as d:
        monkeypatch.setenv("FAKEFS_PROFILES", d)
        with open(os.path.join(d, "fuzz.toml"), "wb") as f:
            f.write(raw if raw is not None else "\n".join(f"{json.dumps(k)} = {_toml(v)}"
                                                          for k, v in doc.items()).encode())
        for name in ("kubelet.toml",):
            with open(os.path.join(d, name), "w") as f:
                f.write('description = "stand-in"\n')
        try:
            load("fuzz")
        except ProfileError as exc:
            assert str(exc) and "\n" not in str(exc), str(exc)


# -- cap_last_cap through the overlay tree ---------------------------------------

CAP_PROBE = r'''
import errno, json, os, sys
path, as_nobody = sys.argv[1], sys.argv[2] == "1"
if as_nobody:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {}
def attempt(name, fn):
    try:
        fn(); out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
attempt("read", lambda: open(path).read())
attempt("open_w", lambda: os.close(os.open(path, os.O_WRONLY)))
attempt("open_rw", lambda: os.close(os.open(path, os.O_RDWR)))
attempt("open_trunc", lambda: os.close(os.open(path, os.O_RDONLY | os.O_TRUNC)))
attempt("truncate", lambda: os.truncate(path, 0))
attempt("chmod", lambda: os.chmod(path, 0o666))
attempt("chown", lambda: os.chown(path, 65534, 65534))
out["value"] = open(path).read() if out["read"] == "ok" else None
print(json.dumps(out))
'''


def _cap_probe(path: str, as_nobody: bool) -> dict:
    r = subprocess.run([sys.executable, "-c", CAP_PROBE, path, "1" if as_nobody else "0"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.fuse
def test_cap_last_cap_is_read_only_even_for_root():
    require_root_and_fuse()
    from fakefs.runtime.daemons import stop

    real = "/proc/sys/kernel/cap_last_cap"
    require(os.path.exists(real), "a kernel with /proc/sys/kernel/cap_last_cap to compare with")
    scratch = tempfile.mkdtemp(prefix="fakefs-cap-")
    os.chmod(scratch, 0o755)  # searchable by uid 65534
    mnt = os.path.join(scratch, "mnt")
    os.mkdir(mnt)
    # override: the synthetic entry is served even though this kernel has one
    spec = {"views": {"kernel": {"real": "/proc/sys/kernel", "entries": [
        {"kind": "procsys", "path": "kernel/cap_last_cap", "override": True}]}}}
    spec_path = _overlay_daemon(spec, mnt)
    try:
        fake = os.path.join(mnt, "kernel", "cap_last_cap")
        for as_nobody in (False, True):
            got, want = _cap_probe(fake, as_nobody), _cap_probe(real, as_nobody)
            assert got == want, (as_nobody, got, want)
            assert got["open_w"] == "EACCES" and got["open_rw"] == "EACCES"
            assert got["value"] == open(real).read()
    finally:
        stop(mnt)
        os.unlink(spec_path)
        os.rmdir(mnt)
        os.rmdir(scratch)
