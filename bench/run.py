"""The benchmark run: what is measured, in which order, and the results."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from . import load
from .report import machine_info, table
from .stats import ratio, summary
from .targets import REAL_MEMORY_STAT, FakefsMount, Lxcfs, RealChild, Tmpfs, kernel_mount_time, rss_kib

# fakefs's backends (columns), then the anchors.
FUSE_BACKENDS = ("fuse", "fuse-raw")
FAKEFS = (*FUSE_BACKENDS, "tmpfs-backend")
TARGETS = (*FAKEFS, "lxcfs", "kernel", "tmpfs")
BACKEND_OF = {"fuse": "fuse", "fuse-raw": "fuse-raw", "tmpfs-backend": "tmpfs"}
DEFAULT_SIZES = (10, 1000, 10000)
# Per-cgroup operations whose cost must not grow with the tree (issue 12):
# on one leaf cgroup of the tree, by every FUSE backend.
SCALE_OPERATIONS = (("listdir", "listdir of one cgroup", "listdir", ()),
                    ("live", "live read (cpuacct.usage of one cgroup)", "read", ("cpuacct.usage",)),
                    ("stat", "stat (cpu.stat of one cgroup)", "stat", ("cpu.stat",)))


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (default 3)")
    p.add_argument("--duration", type=float, default=1.0, help="seconds per read repetition (default 1)")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="cgroup counts for the RSS/scaling part (default 10,1000,10000)")
    p.add_argument("--out", default="bench-results", help="directory for the JSON and Markdown results")
    p.add_argument("--quick", action="store_true", help="1 repetition of 0.3 s, sizes 10,1000 (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.duration, args.sizes = 1, 0.3, "10,1000"
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error("--sizes: comma-separated integers")
    if args.reps < 1 or args.duration <= 0 or any(n < 1 for n in args.sizes):
        p.error("--reps, --duration and --sizes must be positive")
    return args


class Run:
    def __init__(self, args):
        self.args = args
        self.raw: dict[str, dict[str, list[float]]] = {}
        self.rows: list[dict] = []
        self.scale_rows: list[dict] = []
        self.notes: list[str] = []
        self.checks: list[dict] = []

    def add(self, key: str, target: str, value: float | None) -> None:
        if value is not None:
            self.raw.setdefault(key, {}).setdefault(target, []).append(value)

    def row(self, key: str, title: str, unit: str) -> None:
        """A table row; ratios of each FUSE backend to lxcfs and the kernel."""
        values = {t: summary(self.raw.get(key, {}).get(t, [])) for t in TARGETS}
        ratios = {f"{b}/{other}": ratio(values.get(b), values.get(other))
                  for b in FUSE_BACKENDS for other in ("lxcfs", "kernel")}
        self.rows.append({"key": key, "title": title, "unit": unit, "values": values, "ratios": ratios})

    def scale_row(self, key: str, title: str, unit: str, base: str | None) -> None:
        """A row of the scale table; ratios to the same measure at the
        smallest size (``base``), per FUSE backend."""
        values = {b: summary(self.raw.get(key, {}).get(b, [])) for b in FUSE_BACKENDS}
        ratios = {}
        if base is not None:
            for b in FUSE_BACKENDS:
                ratios[b] = ratio(values[b], summary(self.raw.get(base, {}).get(b, [])))
        self.scale_rows.append({"key": key, "title": title, "unit": unit, "values": values, "ratios": ratios})

    def note(self, text: str) -> None:
        print(f"bench: {text}", file=sys.stderr)
        self.notes.append(text)

    def median(self, key: str, target: str) -> float | None:
        s = summary(self.raw.get(key, {}).get(target, []))
        return s["median"] if s else None


def _section(run: Run, name: str):
    """Run a part of the benchmark; a failure becomes a note, not an exit status."""
    @contextlib.contextmanager
    def guard():
        t0 = time.monotonic()
        print(f"bench: {name}...", file=sys.stderr, flush=True)
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - the benchmark never fails
            run.note(f"{name} failed: {exc!r}")
            traceback.print_exc()
        finally:
            print(f"bench: {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    return guard()


def measure_mount_times(run: Run, scratch: str, have_lxcfs: bool, have_kernel: bool) -> None:
    for rep in range(run.args.reps):
        for target in FAKEFS:
            fake = FakefsMount(os.path.join(scratch, f"mount-time-{target}"), os.path.join(scratch, "run"),
                               BACKEND_OF[target])
            try:
                run.add("mount", target, fake.mount())
            finally:
                fake.close()
        if have_lxcfs:
            lx = Lxcfs(os.path.join(scratch, "mount-time-lxcfs"), os.path.join(scratch, "lxcfs-time.pid"),
                       os.path.join(scratch, "lxcfs.log"))
            try:
                run.add("mount", "lxcfs", lx.start())
            finally:
                lx.close()
        if have_kernel:
            run.add("mount", "kernel", kernel_mount_time(os.path.join(scratch, "mount-time-kernel")))


def measure_rw(run: Run, paths: dict[str, dict[str, str]], dirs: dict[str, str], write_paths: dict[str, str]) -> None:
    d = run.args.duration
    for rep in range(run.args.reps):
        for kind in ("small", "live"):
            for nproc in (1, 4):
                for target, path in paths[kind].items():
                    r = load.readers(path, nproc, d)
                    if r["errors"]:
                        run.note(f"{target} {kind} reads: {r['errors']} errors")
                    key = f"read_{kind}_{nproc}"
                    run.add(key, target, r["ops_per_s"])
                    run.add(key + "_p50", target, r["p50_us"])
                    run.add(key + "_p99", target, r["p99_us"])
        for target, path in write_paths.items():
            r = load.writes(path, d / 2)
            if r["errors"]:
                run.note(f"{target} writes: {r['errors']} errors")
            else:
                run.add("write", target, r["ops_per_s"])
        for target, parent in dirs.items():
            r = load.mkdir_rmdir(parent, d / 2, prefix=f"r{rep}-")
            if r["errors"]:
                run.note(f"{target} mkdir+rmdir: {r['errors']} errors")
            else:
                run.add("mkdir", target, r["ops_per_s"])


def _read(path: str) -> bytes:
    # No fstat: nothing but the kernel's cache may answer (fstat would ask
    # the server whenever the atime it holds is stale).
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def check_fresh(run: Run, fake: FakefsMount, cgroup: str) -> None:
    """What the speed must not cost: a write is visible to the very next
    read (through another file descriptor, and in stat's size), a refused
    write leaves the old value, and a process that exited is gone from
    cgroup.procs on the next read."""
    name = fake.backend
    path = fake.p("cpu,cpuacct", cgroup, "cpu.shares")
    ok = True
    for value, shown in ((b"3", b"3\n"), (b"0x3", b"3\n"), (b"123456", b"123456\n"), (b"1024", b"1024\n")):
        _read(path)
        os.stat(path)  # the kernel holds the page and every attribute
        fd = os.open(path, os.O_WRONLY)
        os.write(fd, value)
        os.close(fd)
        ok &= _read(path) == shown and os.stat(path).st_size == len(shown)
    run.checks.append({"check": f"{name}: a write is what the next read shows, and its size", "ok": bool(ok)})
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"junk")
        refused = False
    except OSError:
        refused = True
    finally:
        os.close(fd)
    run.checks.append({"check": f"{name}: a refused write leaves the old value",
                       "ok": refused and _read(path) == b"1024\n"})

    procs = fake.p("cpu,cpuacct", cgroup, "cgroup.procs")
    child = subprocess.Popen(["sleep", "30"])
    try:
        fd = os.open(procs, os.O_WRONLY)
        os.write(fd, str(child.pid).encode())
        os.close(fd)
        listed = _read(procs).split()
    finally:
        child.kill()
        child.wait()
    gone = _read(procs).split()
    run.checks.append({"check": f"{name}: a process that exited is gone from cgroup.procs on the next read",
                       "ok": listed == [str(child.pid).encode()] and gone == []})


def measure_scale(run: Run, scratch: str) -> None:
    """One fresh daemon per FUSE backend and size with N cgroups
    (cpu,cpuacct/kubepods/cN): its RSS, the rate of reads going round-robin
    over every cgroup's cpu.shares, and the per-cgroup operations on one
    leaf. The daemons run side by side and are measured in turn in each
    repetition, so a change in the machine's load hits every size alike."""
    daemons: list[tuple[str, int, FakefsMount, list[str]]] = []
    try:
        for backend in FUSE_BACKENDS:
            for n in run.args.sizes:
                fake = FakefsMount(os.path.join(scratch, f"scale-{backend}-{n}"), os.path.join(scratch, "run"),
                                   backend)
                daemons.append((backend, n, fake, []))
                fake.mount()
                base = fake.p("cpu,cpuacct", "kubepods")
                os.mkdir(base)
                t0 = time.monotonic()
                for i in range(n):
                    os.mkdir(os.path.join(base, f"c{i}"))
                made = time.monotonic() - t0
                run.add(f"scale_mkdir_{n}", backend, n / made if made else None)
                paths = daemons[-1][3]
                paths.extend(os.path.join(base, f"c{i}", "cpu.shares") for i in range(n))
                print(f"bench: {backend}: {n} cgroups made in {made:.1f} s", file=sys.stderr, flush=True)
                # Warm: the first look at each file is a lookup; steady state is what kubelet sees.
                for path in paths:
                    with open(path, "rb") as f:
                        f.read()
        for _ in range(run.args.reps):
            for backend, n, fake, paths in daemons:
                r = load.readers(paths, 1, run.args.duration)
                if r["errors"]:
                    run.note(f"{backend} scale {n}: {r['errors']} read errors")
                run.add(f"scale_read_{n}", backend, r["ops_per_s"])
                leaf = fake.p("cpu,cpuacct", "kubepods", "c0")
                for key, _title, operation, parts in SCALE_OPERATIONS:
                    r = load.readers(os.path.join(leaf, *parts), 1, run.args.duration, operation)
                    if r["errors"]:
                        run.note(f"{backend} scale {n} {key}: {r['errors']} errors")
                    run.add(f"scale_{key}_{n}", backend, r["ops_per_s"])
        for backend, n, fake, _ in daemons:
            pid = fake.pid
            kib = rss_kib(pid) if pid else None
            run.add(f"scale_rss_{n}", backend, kib / 1024 if kib else None)
    finally:
        for _, _, fake, _ in daemons:
            fake.close()


def goals(run: Run, load_avg: str) -> list[dict]:
    """The issue's targets, per FUSE backend, as met or not in this run."""
    out = []

    def goal(text, measured, met):
        out.append({"goal": text, "measured": measured, "met": met})

    def times(a, b):
        return a / b if a and b else None

    def shown(r, fmt="{:.2f}×"):
        return "–" if r is None else fmt.format(r)

    sizes = run.args.sizes
    big, small = max(sizes), min(sizes)
    for b in FUSE_BACKENDS:
        for nproc in (1, 4):
            readers = f"{nproc} reader{'s' if nproc > 1 else ''}"
            r = times(run.median(f"read_small_{nproc}", b), run.median(f"read_small_{nproc}", "kernel"))
            goal(f"{b}: control file reads ≥ 0.5× the kernel's cgroupfs, {readers}", shown(r),
                 None if r is None else r >= 0.5)
            r = times(run.median(f"read_live_{nproc}", b), run.median(f"read_live_{nproc}", "lxcfs"))
            goal(f"{b}: live statistics reads ≥ 2× lxcfs's, {readers}", shown(r), None if r is None else r >= 2)
        r = times(run.median("write", b), run.median("write", "lxcfs"))
        goal(f"{b}: open+write+close ≥ 2× lxcfs's", shown(r), None if r is None else r >= 2)
        r = times(run.median("mkdir", b), run.median("mkdir", "lxcfs"))
        goal(f"{b}: mkdir+rmdir ≥ 3× lxcfs's", shown(r), None if r is None else r >= 3)
        m = run.median("mount", b)
        goal(f"{b}: `fakefs mount` to first read ≤ 0.15 s", shown(m, "{:.3f} s"), None if m is None else m <= 0.15)
        m = run.median(f"scale_rss_{big}", b)
        goal(f"{b}: daemon RSS ≤ 60 MB at {big:,} cgroups", shown(m, "{:.1f} MB"),
             None if m is None or big < 10000 else m <= 60)
        r = times(run.median(f"scale_read_{big}", b), run.median(f"scale_read_{small}", b))
        goal(f"{b}: read rate at {big:,} cgroups ≥ 90% of the rate at {small:,}", shown(r, "{:.0%}"),
             None if r is None or big == small else r >= 0.9)
        for key, title, _, _ in SCALE_OPERATIONS:
            # "costs the same within 20%": time per operation ≤ 1.2×, so the rate ≥ 1/1.2.
            r = times(run.median(f"scale_{key}_{big}", b), run.median(f"scale_{key}_{small}", b))
            goal(f"{b}: {title} at {big:,} cgroups costs ≤ 1.2× its cost at {small:,}",
                 "–" if r is None else f"{1 / r:.2f}×", None if r is None or big == small else r >= 1 / 1.2)
    for g in out:
        g["load"] = load_avg
    return out


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = _parse(argv)
    run = Run(args)
    have_lxcfs = bool(Lxcfs.available())
    load_start = os.getloadavg()[0]
    results = {"machine": machine_info(Lxcfs.version() if have_lxcfs else "not installed"),
               "settings": {"reps": args.reps, "duration_s": args.duration, "sizes": args.sizes}}
    if os.geteuid() != 0:
        print("bench: needs root (FUSE mounts, lxcfs, a real child cgroup); nothing measured", file=sys.stderr)
        return 0
    # SIGTERM unwinds like Ctrl-C, so every mount, daemon and real cgroup is undone.
    signal.signal(signal.SIGTERM, _interrupt)
    from fakefs.host.sysmount import unshare_mount_namespace

    unshare_mount_namespace()
    _compile_fakefs(run)
    if not have_lxcfs:
        run.note("lxcfs is not installed (Debian package lxcfs): its column stays empty")
    have_kernel = RealChild.available()
    if not have_kernel:
        run.note("no cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu: the kernel column stays empty")
    t_start = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="fakefs-bench-")
    os.chmod(scratch, 0o755)
    try:
        with contextlib.ExitStack() as stack:
            with _section(run, "mount to first read"):
                measure_mount_times(run, scratch, have_lxcfs, have_kernel)

            paths: dict[str, dict[str, str]] = {"small": {}, "live": {}}
            dirs: dict[str, str] = {}
            writes: dict[str, str] = {}
            fakes: dict[str, FakefsMount] = {}
            lx = None
            with _section(run, "starting fakefs (each backend), lxcfs, the real child cgroup, tmpfs"):
                for target in FAKEFS:
                    fake = FakefsMount(os.path.join(scratch, target), os.path.join(scratch, "run"),
                                       BACKEND_OF[target])
                    stack.callback(fake.close)
                    fake.mount()
                    fakes[target] = fake
                    os.mkdir(fake.p("cpu,cpuacct", "fakefs-bench"))
                    # (the tmpfs backend's watcher fills a new directory a moment later)
                    paths["small"][target] = writes[target] = fake.wait_for("cpu,cpuacct", "fakefs-bench",
                                                                            "cpu.shares")
                    paths["live"][target] = fake.p("memory", "memory.stat")
                    if target != "tmpfs-backend":  # there rmdir of a filled cgroup is ENOTEMPTY (README)
                        dirs[target] = fake.p("cpu,cpuacct", "fakefs-bench")
                child = None
                if have_kernel:
                    child = RealChild()
                    stack.callback(child.close)
                    paths["small"]["kernel"] = writes["kernel"] = child.p("cpu.shares")
                    dirs["kernel"] = child.path
                    if os.path.exists(REAL_MEMORY_STAT):
                        paths["live"]["kernel"] = REAL_MEMORY_STAT
                if have_lxcfs:
                    lx = Lxcfs(os.path.join(scratch, "lxcfs"), os.path.join(scratch, "lxcfs.pid"),
                               os.path.join(scratch, "lxcfs.log"))
                    stack.callback(lx.close)
                    lx.start()
                    paths["live"]["lxcfs"] = lx.p("proc", "meminfo")
                    if child is not None:
                        paths["small"]["lxcfs"] = writes["lxcfs"] = lx.p("cgroup", "cpu", child.name, "cpu.shares")
                        dirs["lxcfs"] = lx.p("cgroup", "cpu", child.name)
                tmp = Tmpfs(os.path.join(scratch, "tmpfs"))
                stack.callback(tmp.close)
                paths["small"]["tmpfs"] = writes["tmpfs"] = tmp.put("cpu.shares", b"1024\n")
                with open(paths["live"].get("kernel") or paths["live"]["fuse"], "rb") as f:
                    paths["live"]["tmpfs"] = tmp.put("memory.stat", f.read())
                os.mkdir(tmp.p("dirs"))
                dirs["tmpfs"] = tmp.p("dirs")
                for kind in paths:
                    for target, path in list(paths[kind].items()):
                        try:
                            with open(path, "rb") as f:
                                f.read()
                        except OSError as exc:
                            run.note(f"{target}: cannot read {path}: {exc.strerror}")
                            del paths[kind][target]

            with _section(run, "reads, writes, mkdir+rmdir"):
                measure_rw(run, paths, dirs, writes)
            for target, pid in [*((t, f.pid) for t, f in fakes.items()), ("lxcfs", lx.pid if lx else None)]:
                kib = rss_kib(pid) if pid else None
                run.add("rss_after", target, kib / 1024 if kib else None)
            with _section(run, "freshness checks"):
                for target in FUSE_BACKENDS:
                    if target in fakes and fakes[target].mounted:
                        check_fresh(run, fakes[target], "fakefs-bench")
        with _section(run, "RSS and reads at scale"):
            measure_scale(run, scratch)
    except KeyboardInterrupt:
        run.note("interrupted: partial results")
    finally:
        _remove_scratch(scratch)

    _rows(run)
    load_avg = f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end ({os.cpu_count()} CPUs)"
    results["machine"]["load_average"] = load_avg
    results.update({"rows": run.rows, "scale_rows": run.scale_rows, "goals": goals(run, load_avg),
                    "checks": run.checks, "notes": run.notes, "elapsed_s": round(time.monotonic() - t_start, 1)})
    text = table(results)
    print(text)
    try:
        os.makedirs(args.out, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for name in (f"bench-{stamp}.json", "latest.json"):
            with open(os.path.join(args.out, name), "w") as f:
                json.dump(results, f, indent=2)
        with open(os.path.join(args.out, "latest.md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out, "readme.md"), "w") as f:
            f.write(table(results, compact=True))
        print(f"bench: results in {args.out}/latest.json and latest.md, README's rows in readme.md "
              f"({results['elapsed_s']} s)", file=sys.stderr)
    except OSError as exc:
        print(f"bench: cannot write results to {args.out}: {exc.strerror}", file=sys.stderr)
    return 0


def _compile_fakefs(run: Run) -> None:
    """Byte-compile fakefs first, as an installed package is: where
    PYTHONDONTWRITEBYTECODE is set (this sandbox) every `fakefs mount` would
    otherwise compile the whole package from source before mounting.
    Hash-checked, so an edit never runs stale bytecode."""
    import compileall
    import py_compile

    import fakefs

    if sys.dont_write_bytecode:
        run.note("PYTHONDONTWRITEBYTECODE is set: fakefs was byte-compiled once before measuring")
    compileall.compile_dir(os.path.dirname(fakefs.__file__), quiet=1,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


def _rows(run: Run) -> None:
    for kind, what in (("small", "control file (cpu.shares of a child cgroup)"),
                       ("live", "live statistics (memory.stat; lxcfs: proc/meminfo)")):
        for nproc in (1, 4):
            readers = f"{nproc} reader{'s' if nproc > 1 else ''}"
            run.row(f"read_{kind}_{nproc}", f"open+read+close, {what}, {readers}", "ops/s")
            run.row(f"read_{kind}_{nproc}_p50", f"  latency p50, {readers}", "µs")
            run.row(f"read_{kind}_{nproc}_p99", f"  latency p99, {readers}", "µs")
    run.row("write", "open+write+close of cpu.shares (one command)", "ops/s")
    run.row("mkdir", "mkdir+rmdir pairs", "pairs/s")
    run.row("mount", "mount command to first successful read", "s")
    run.row("rss_after", "daemon RSS after the runs above", "MB")
    small = min(run.args.sizes)
    for key, title, unit in (("read", "reads round-robin over every cgroup's cpu.shares", "ops/s"),
                             *((k, t, "ops/s") for k, t, _, _ in SCALE_OPERATIONS),
                             ("mkdir", "mkdir of the cgroups (rate)", "ops/s"),
                             ("rss", "daemon RSS", "MB")):
        for n in run.args.sizes:
            run.scale_row(f"scale_{key}_{n}", f"{title}, {n:,} cgroups", unit,
                          None if key in ("mkdir", "rss") else f"scale_{key}_{small}")


def _remove_scratch(scratch: str) -> None:
    from fakefs.host.sysmount import umount

    # Anything still mounted below the scratch directory goes first.
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        points = []
    for mp in sorted((p for p in points if p.startswith(scratch + "/")), key=len, reverse=True):
        try:
            umount(mp, detach=True)
        except OSError:
            pass
    _remove_tree(scratch, os.lstat(scratch).st_dev)


def _remove_tree(path: str, dev: int) -> None:
    """Remove our scratch files, never crossing into another filesystem (a
    mount left behind could be a real cgroup hierarchy)."""
    for entry in os.scandir(path):
        try:
            st = entry.stat(follow_symlinks=False)
            if st.st_dev != dev:
                print(f"bench: left {entry.path} (another filesystem)", file=sys.stderr)
                continue
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path, dev)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass
