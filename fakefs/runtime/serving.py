"""The serving process: builds the tree a mount request asks for, hands it
to a backend (fakefs.backends) and runs the daemon's trio loop beside the
backend's until unmounted or told to stop (SIGTERM/SIGINT)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from fakefs import backends
from fakefs.backends import AUTO_ORDER, STOP_SIGNALS, Session
from fakefs.errors import MountError
from fakefs.host.facts import LiveProcessTable, read_host_facts
from fakefs.host.forkwatch import open_watcher, watch
from fakefs.host.hostfiles import open_private_handles, real_path
from fakefs.host.mountinfo import mount_namespace_id
from fakefs.host.hiding import shares_init_namespace
from fakefs.host.sysmount import attach_mount, clone_mount
from fakefs.host.stats import LiveStats
from fakefs.model.errors import KernelError
from fakefs.model.subtree import seed_names, seed_top
from fakefs.model.tree import DEFAULT_HIERARCHIES, CgroupModel
from fakefs.runtime import registry, rundir, statefile
from fakefs.vfs.cgroupfs import CgroupFsRoot
from fakefs.vfs.nodes import Node

# The overlay (/proc/sys) and /proc views trees are imported where they are
# built: a cgroup mount, the common case, does without them and is ready
# that much sooner (`fakefs mount` to first read, make bench).


@dataclass
class MountRequest:
    target: str
    tree: str = "cgroup"
    backend: str = "fuse"
    hierarchies: list[str] | None = None
    log: str = ""
    # "host": overrides of this machine's facts (``--cpus``); "spec": the
    # overlay spec file of a ``tree="overlay"`` mount.
    extra: dict = field(default_factory=dict)
    # Fake subtrees: hierarchy directory -> the real cgroup directory the
    # fake's top stands for (it will be mounted over it). The tops then follow
    # non-root rules and start with that cgroup's settings.
    subtree_of: dict[str, str] | None = None
    # Authentic mounts bound back into the tree (extra["authentic"]:
    # directory -> mount point), held as detached copies made before the
    # tree covered them (hold_authentic), directory -> fd.
    authentic_fds: dict[str, int] = field(default_factory=dict)
    # A server restarted by the supervisor after a crash: overlays take up
    # their saved values (a profile applied afresh seeds them anew).
    recovering: bool = False


@dataclass
class SupervisorLink:
    """What a server run by the supervisor (supervisor.py) knows of it."""

    pid: int
    # The server's end of a socket to the supervisor: a backend whose
    # connection can outlive its server (fuse-raw) sends the fd there.
    conn: object
    # The connection a restarted fuse-raw server continues.
    held_connection: dict | None = None


@dataclass
class Tree:
    """A built tree and the daemon tasks that keep it: state saving, fork
    inheritance. Each task is an ``async () -> None`` run beside the backend."""

    root: Node
    tasks: list[Callable[[], Awaitable[None]]]


def build_tree(request: MountRequest) -> Tree:
    """The node tree for ``request.tree``, over a model of this machine."""
    state_path = statefile.path_for(request.target)
    # The machine's /proc and cpu/online through private mounts where views
    # of them may be bound over the real paths (a namespace other than the
    # init system's, or a daemon serving views: one reading a view it serves
    # would wait on itself). Not in the host's namespace otherwise: the
    # scratch mount would propagate to its peers, if only for a moment.
    if not shares_init_namespace() or request.tree == "procviews" or "procviews" in _spec(request):
        open_private_handles()
    if request.tree == "overlay":
        # The overlay and /proc views trees are imported where they are built
        # (here, below in build_tree, in _views): a cgroup mount needs neither, and
        # they cost it 21-88 ms of the 0.28-0.56 s this module takes to
        # import (python -X importtime, 3 runs at load 15).
        from fakefs.runtime import overlaystate
        from fakefs.vfs.overlayfs import build_overlay_root

        try:
            with open(request.extra["spec"]) as f:
                root = build_overlay_root(json.load(f))
        except (OSError, KeyError, ValueError) as exc:
            raise MountError(f"overlay spec: {exc}") from None
        # Written sysctl values survive a crash (overlaystate.py).
        files = overlaystate.sysctl_files(root)
        if request.recovering:
            _note(overlaystate.load_into(files, state_path))
        overlaystate.keep_saved(files, state_path)
        return Tree(root, [])
    if request.tree == "procviews":
        views = _views(request)
        return Tree(views, list(views.background_tasks))
    if request.tree != "cgroup":
        raise MountError(f"unknown tree {request.tree!r} (known: cgroup, overlay, procviews)")
    try:
        # Live statistics: the real processes' figures, sampled through a short cache.
        model = CgroupModel(host_facts(request.extra.get("host")), LiveProcessTable(),
                            request.hierarchies or list(DEFAULT_HIERARCHIES),
                            top_is_root=not request.subtree_of, stats=LiveStats(proc=real_path("/proc")),
                            **request.extra.get("layout", {}))
    except KernelError as exc:
        raise MountError(exc.detail) from None
    if request.subtree_of:
        _seed_subtrees(model, request.subtree_of)
    # Container runtimes use this tree (subtrees serve nothing else; a
    # profile says so with cgroup.runtimes): see watch_forks.
    runtimes = bool(request.subtree_of) or bool(request.extra.get("runtimes"))
    # Serve what was there when this target was last served, and journal
    # every change from now on (statefile.py).
    store = statefile.Store(model, state_path)
    _note(store.load())
    try:
        store.start()
    except OSError as exc:
        raise MountError(f"cannot keep the state in {state_path}: {exc.strerror}") from None
    root = CgroupFsRoot(model, tuple(request.extra.get("authentic", {})))
    tasks = [lambda: watch_forks(model, runtimes), store.keep_saved]
    if "procviews" in _spec(request):
        from fakefs.vfs.procviews import CgroupRootWithViews

        views = _views(request, model)
        return Tree(CgroupRootWithViews(root, views), [*tasks, *views.background_tasks])
    return Tree(root, tasks)


def _spec(request: MountRequest) -> dict:
    """The options the mount manager started this daemon with (none for
    ``fakefs mount``)."""
    path = request.extra.get("spec")
    if not path:
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise MountError(f"spec {path}: {exc}") from None


def _views(request: MountRequest, model=None):
    """The /proc views a spec asks for (vfs/procviews.py), reading the
    limits of ``model``'s fake cgroups where it has the controller."""
    from fakefs.vfs.procviews import build_views

    try:
        return build_views(_spec(request).get("procviews") or {}, model)
    except (OSError, ValueError) as exc:
        raise MountError(f"procviews: {exc.strerror if isinstance(exc, OSError) else exc}") from None


def _note(note: str | None) -> None:
    if note:
        print(f"fakefs: {note}", flush=True)


def host_facts(overrides: dict | None = None):
    """This machine's facts, with the user's overrides (``fakefs mount
    --cpus``: the CPUs the root cpuset shows)."""
    facts = read_host_facts()
    if not overrides:
        return facts
    changes = {}
    if "cpus" in overrides:
        cpus = frozenset(overrides["cpus"])
        changes.update(online_cpus=cpus, nr_cpu_ids=max(facts.nr_cpu_ids, max(cpus) + 1))
    return dataclasses.replace(facts, **changes)


def _seed_subtrees(model, subtree_of: dict[str, str]) -> None:
    """Read each real cgroup's settings (before the fake covers it) and
    replay them into the fake top that stands for it."""
    for mounted in model.mounts:
        real = subtree_of.get(mounted.dirname)
        if real is None:
            raise MountError(f"subtree: no real cgroup given for hierarchy {mounted.dirname}")
        values = {}
        for name in seed_names(mounted.hierarchy):
            try:
                with open(os.path.join(real, name)) as f:
                    values[name] = f.read()
            except FileNotFoundError:
                continue  # this kernel lacks the file: the fake keeps its default
            except OSError as exc:
                raise MountError(f"subtree: cannot read {os.path.join(real, name)}: {exc.strerror}") from None
        try:
            seed_top(mounted.hierarchy, values)
        except KernelError as exc:
            raise MountError(f"subtree: seeding {mounted.dirname} from {real}: {exc.detail}") from None


def hold_authentic(request: MountRequest) -> None:
    """Keep a detached copy of each authentic mount the tree will cover
    (open_tree), to bind back into every server's tree (a restarted server's
    too: the one bound into a dead mount goes with it). Where the kernel
    cannot (gVisor), the mount stays hidden and the log says so."""
    for name, path in request.extra.get("authentic", {}).items():
        if name in request.authentic_fds:
            continue
        try:
            request.authentic_fds[name] = clone_mount(path)
        except OSError as exc:
            print(f"fakefs: {path} stays hidden under the tree: cannot hold it ({exc.strerror})", flush=True)


def _bind_authentic_then(request: MountRequest, report):
    """The readiness report, once the authentic mounts are bound back in. A
    thread does it: the lookups under the new mount are answered by this
    server, which may be inside a request's handler when it reports (pyfuse3
    reports from INIT)."""
    if not request.authentic_fds:
        return report

    def bind_all() -> None:
        for name, held in request.authentic_fds.items():
            where = os.path.join(request.target, name)
            try:
                copy = clone_mount(held)
                try:
                    attach_mount(copy, where)
                finally:
                    os.close(copy)
            except OSError as exc:
                print(f"fakefs: cannot bind the authentic mount back at {where}: {exc.strerror}", flush=True)
        report(None)

    def ready(error: str | None) -> None:
        if error is not None:
            report(error)
        else:
            threading.Thread(target=bind_all, name="authentic-binds", daemon=True).start()

    return ready


def serve(request: MountRequest, on_ready=None, supervisor: SupervisorLink | None = None) -> None:
    """Mount and serve until unmounted. ``on_ready(error_or_None)`` is called
    once: with None when the mount is live, or with a MountError's text."""
    hold_authentic(request)
    report = _bind_authentic_then(request, on_ready or (lambda _error: None))
    try:
        tree = build_tree(request)
    except MountError as exc:
        report(str(exc))
        raise
    if request.backend != "auto":
        _serve_with(request.backend, request, tree, report, supervisor)
        return
    # auto: a backend that fails before its mount is ready passes to the
    # next one, and the reasons are kept for the error.
    reasons = []
    for name in AUTO_ORDER:
        failure: list[str] = []

        def quiet_ready(err, _failure=failure):
            if err is None:
                report(None)
            else:
                _failure.append(err)

        try:
            _serve_with(name, request, tree, quiet_ready, supervisor)
            return
        except MountError as exc:
            reasons.append(f"{name}: {failure[0] if failure else exc}")
            print(f"fakefs: backend {name} passed over: {reasons[-1]}", flush=True)
    msg = "no backend could mount here (" + "; ".join(reasons) + ")"
    report(msg)
    raise MountError(msg)


def _serve_with(name: str, request: MountRequest, tree: Tree, report, supervisor: SupervisorLink | None) -> None:
    try:
        backend = backends.load(name)
    except MountError as exc:
        report(str(exc))
        raise
    records: list[registry.MountRecord] = []

    def mounted(backend_name: str) -> None:
        records.append(register_mount(request, backend_name, supervisor))

    session = Session(
        target=request.target, root=tree.root, scratch_dir=rundir.ensure(), on_ready=report,
        on_mounted=mounted, run_serving=lambda serve, stop=None: run_serving(serve, tree.tasks, stop),
        supervisor_conn=supervisor.conn if supervisor else None,
        held_connection=supervisor.held_connection if supervisor else None,
        inode_log=rundir.path_for("inodes", request.target, ".log"),
        replace_existing=request.recovering and request.tree == "cgroup",
        clear_target=lambda: registry.clear_dead_mounts(request.target))
    try:
        backend.serve(session)
    finally:
        for record in records:
            registry.remove(request.target, record.mntns)


def register_mount(request: MountRequest, backend: str, supervisor: SupervisorLink | None) -> registry.MountRecord:
    """Record the live mount. Under a supervisor the registry names it as the
    mount's daemon (umount signals it), and this process as its server."""
    record = registry.MountRecord(target=request.target, pid=supervisor.pid if supervisor else os.getpid(),
                                  backend=backend, tree=request.tree, mntns=mount_namespace_id(),
                                  started=time.time(), log=request.log, server_pid=os.getpid())
    registry.save(record)
    return record


def run_serving(serve: Callable[[], Awaitable[None]], tasks, stop: Callable[[], None] | None = None) -> None:
    """Run a backend's serving coroutine under trio with what every daemon
    needs: SIGTERM/SIGINT end it (``stop()`` first when the transport has its
    own way to finish, e.g. pyfuse3.terminate), and the tree's own tasks run
    beside it. Returns when ``serve()`` returns or a signal arrived."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async def stop_on_signal() -> None:
                with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                    async for _ in signals:
                        if stop is not None:
                            stop()
                        else:
                            nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(stop_on_signal)
            for task in tasks:
                nursery.start_soon(task)
            await serve()
            nursery.cancel_scope.cancel()

    trio.run(main)


async def watch_forks(model, runtimes: bool) -> None:
    """trio task for cgroup trees: children start in their parent's fake
    cgroups, as on the kernel (see host/forkwatch.py); without the kernel's
    process events, membership is only what was written."""
    # Container runtimes make their stage processes with CLONE_PARENT (see
    # forkwatch.py): placing those takes a guess, made only for their trees.
    watcher = open_watcher(clone_parent=runtimes)
    if isinstance(watcher, str):
        print(f"fakefs: fork inheritance off: {watcher}", flush=True)
        return
    await watch(watcher, model)
