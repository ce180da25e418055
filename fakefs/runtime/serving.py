"""The serving process: builds the model for a tree, mounts it with pyfuse3
and runs the trio loop until unmounted or told to stop (SIGTERM/SIGINT)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from fakefs.errors import MountError
from fakefs.runtime import registry
from fakefs.host.mountinfo import mount_namespace_id

FUSE_OPTIONS = ("fsname=fakefs", "subtype=fakefs", "allow_other", "default_permissions")


@dataclass
class MountRequest:
    target: str
    tree: str = "cgroup"
    backend: str = "fuse"
    hierarchies: list[str] | None = None
    log: str = ""
    extra: dict = field(default_factory=dict)
    # Fake subtrees: hierarchy directory -> the real cgroup directory the
    # fake's top stands for (it will be mounted over it). The tops then follow
    # non-root rules and start with that cgroup's settings.
    subtree_of: dict[str, str] | None = None


def build_root(request: MountRequest):
    """The node tree for ``request.tree``, over a model of this machine."""
    from fakefs.vfs.cgroupfs import CgroupFsRoot
    from fakefs.host.facts import LiveProcessTable
    from fakefs.model.errors import KernelError
    from fakefs.model.tree import DEFAULT_HIERARCHIES, CgroupModel

    from fakefs.host.hostfiles import open_private_handles, real_path
    from fakefs.host.sysmount import in_private_mount_namespace

    # The machine's /proc and cpu/online through private mounts where views
    # of them may be bound over the real paths (a namespace fakefs made, or
    # a daemon serving views: one reading a view it serves would wait on
    # itself). Not in the host's namespace otherwise: the scratch mount
    # would propagate to its peers, if only for a moment.
    if in_private_mount_namespace() or request.tree == "procviews" or "procviews" in _spec(request):
        open_private_handles()
    if request.tree == "overlay":
        import json

        from fakefs.vfs.overlayfs import build_overlay_root

        try:
            with open(request.extra["spec"]) as f:
                root = build_overlay_root(json.load(f))
        except (OSError, KeyError, ValueError) as exc:
            raise MountError(f"overlay spec: {exc}") from None
        _overlay_state(root, request)
        return root
    if request.tree == "procviews":
        return _views(request)
    if request.tree != "cgroup":
        raise MountError(f"unknown tree {request.tree!r} (known: cgroup, overlay, procviews)")
    try:
        model = CgroupModel(host_facts(request.extra.get("host")), LiveProcessTable(),
                            request.hierarchies or list(DEFAULT_HIERARCHIES),
                            top_is_root=not request.subtree_of)
    except KernelError as exc:
        raise MountError(exc.detail) from None
    if request.subtree_of:
        _seed_subtrees(model, request.subtree_of)
    from fakefs.host.stats import LiveStats

    # Live statistics: the real processes' figures, sampled through a short cache.
    model.stats = LiveStats(proc=real_path("/proc"))
    _restore_state(model, request)
    root = CgroupFsRoot(model)
    if "procviews" in _spec(request):
        from fakefs.vfs.procviews import CgroupRootWithViews

        return CgroupRootWithViews(root, _views(request, model))
    return root


def _spec(request: MountRequest) -> dict:
    """The options the mount manager started this daemon with (none for
    ``fakefs mount``)."""
    import json

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


def _restore_state(model, request: MountRequest) -> None:
    """Serve what was there when this target was last served (statefile.py);
    run_serving() keeps the file up to date from now on."""
    from fakefs.runtime import statefile

    model.state_file = statefile.path_for(request.target)
    note = statefile.load_into(model, model.state_file)
    if note:
        print(f"fakefs: {note}", flush=True)


def _overlay_state(root, request: MountRequest) -> None:
    """Written sysctl values survive a crash: restored when the supervisor
    restarts the server, saved by run_serving (overlaystate.py)."""
    from fakefs.runtime import overlaystate, statefile

    root.sysctl_files = overlaystate.sysctl_files(root)
    root.state_file = statefile.path_for(request.target)
    if request.extra.get("recovering"):
        note = overlaystate.load_into(root.sysctl_files, root.state_file)
        if note:
            print(f"fakefs: {note}", flush=True)


def host_facts(overrides: dict | None = None):
    """This machine's facts, with the user's overrides (``fakefs mount
    --cpus``: the CPUs the root cpuset shows)."""
    import dataclasses

    from fakefs.host.facts import read_host_facts

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
    from fakefs.model.errors import KernelError
    from fakefs.model.subtree import seed_names, seed_top

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


def serve(request: MountRequest, on_ready=None) -> None:
    """Mount and serve until unmounted. ``on_ready(error_or_None)`` is called
    once: with None when the mount is live, or with a MountError's text."""
    if request.backend == "auto":
        _serve_auto(request, on_ready)
        return
    backend = BACKENDS.get(request.backend)
    if backend is None:
        msg = f"unknown backend {request.backend!r} (known: {', '.join(sorted(BACKENDS))})"
        _report(on_ready, msg)
        raise MountError(msg)
    backend(request, on_ready)


def _serve_auto(request: MountRequest, on_ready) -> None:
    """Try each backend in AUTO_ORDER; a backend that fails before its mount
    is ready passes to the next one, and the reasons are kept for the error."""
    import dataclasses

    reasons = []
    for name in AUTO_ORDER:
        failure: list[str] = []

        def quiet_ready(err, _failure=failure):
            if err is None:
                _report(on_ready, None)
            else:
                _failure.append(err)

        try:
            BACKENDS[name](dataclasses.replace(request, backend=name), quiet_ready)
            return
        except MountError as exc:
            reasons.append(f"{name}: {failure[0] if failure else exc}")
            print(f"fakefs: backend {name} passed over: {reasons[-1]}", flush=True)
    msg = "no backend could mount here (" + "; ".join(reasons) + ")"
    _report(on_ready, msg)
    raise MountError(msg)


# Set in a server run by supervisor.py: the registry names the supervisor as
# the mount's daemon (umount signals it), and this process as its server.
SUPERVISOR_PID: int | None = None
# The server's end of a socket to its supervisor: a backend whose connection
# can outlive its server (fuse-raw) sends the /dev/fuse fd there.
SUPERVISOR_CONN = None


def register_mount(request: MountRequest, backend: str) -> registry.MountRecord:
    """Record the live mount (called by a backend once it is mounted)."""
    record = registry.MountRecord(target=request.target, pid=SUPERVISOR_PID or os.getpid(), backend=backend,
                                  tree=request.tree, mntns=mount_namespace_id(),
                                  started=time.time(), log=request.log, server_pid=os.getpid())
    registry.save(record)
    return record


def serve_pyfuse3(request: MountRequest, on_ready=None) -> None:
    try:
        import pyfuse3
    except ImportError as exc:  # pragma: no cover - depends on the machine
        _report(on_ready, f"pyfuse3 is not usable here: {exc}")
        raise MountError(str(exc)) from None

    from fakefs.vfs.ops import FsOps
    from fakefs.backends.fuse import MAIN_TASKS, make_operations

    root = build_root_reporting(request, on_ready)
    operations = make_operations(FsOps(root))
    try:
        pyfuse3.init(operations, request.target, set(FUSE_OPTIONS))
    except RuntimeError as exc:
        msg = f"FUSE mount at {request.target} refused: {exc}"
        _report(on_ready, msg)
        raise MountError(msg) from None

    # The mount exists now, but the connection is only usable once pyfuse3
    # accepted the kernel's INIT (gVisor's lacks READDIRPLUS: pyfuse3 refuses
    # it). pyfuse3 calls Operations.init() right after accepting it, so
    # readiness is reported from there and a refused INIT is a MountError.
    records: list = []

    def initialised() -> None:
        records.append(register_mount(request, "fuse"))
        _report(on_ready, None)

    operations.init = initialised

    try:
        run_serving(lambda: pyfuse3.main(max_tasks=MAIN_TASKS), root, stop=pyfuse3.terminate)
    except Exception as exc:
        if records:
            raise
        detail = "; ".join(_leaf_messages(exc))
        msg = f"FUSE connection at {request.target} refused at INIT by pyfuse3: {detail}"
        _report(on_ready, msg)
        raise MountError(msg) from None
    finally:
        try:
            pyfuse3.close(unmount=True)
        finally:
            if records:
                registry.remove(request.target, records[0].mntns)


def build_root_reporting(request: MountRequest, on_ready):
    """build_root(), telling on_ready when it fails (every backend starts so)."""
    try:
        return build_root(request)
    except MountError as exc:
        _report(on_ready, str(exc))
        raise


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def report_ready_before_serving(on_ready) -> None:
    """Report readiness for a backend that starts run_serving() afterwards:
    a SIGTERM sent as soon as the mount is announced must not kill the daemon
    before trio listens (it would leave a stale mount), so the stop signals
    stay blocked until run_serving's receiver is open."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    _report(on_ready, None)


def run_serving(serve, root, stop=None) -> None:
    """Run a backend's serving coroutine under trio with what every backend
    needs: SIGTERM/SIGINT end it (``stop()`` first when the transport has its
    own way to finish, e.g. pyfuse3.terminate), and cgroup trees get fork
    inheritance. Returns when ``serve()`` returns or a signal arrived."""
    import trio

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
            model = getattr(root, "model", None)
            if model is not None:
                nursery.start_soon(watch_forks, model)
                if getattr(model, "state_file", None):
                    from fakefs.runtime.statefile import keep_saved

                    nursery.start_soon(keep_saved, model, model.state_file)
            elif getattr(root, "sysctl_files", None):
                from fakefs.runtime.overlaystate import keep_saved as keep_overlay_saved

                nursery.start_soon(keep_overlay_saved, root.sysctl_files, root.state_file)
            for task in getattr(root, "background_tasks", ()):
                nursery.start_soon(task)
            await serve()
            nursery.cancel_scope.cancel()

    trio.run(main)


def _leaf_messages(exc: BaseException) -> list[str]:
    """The messages of the exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [m for sub in exc.exceptions for m in _leaf_messages(sub)]
    return [str(exc) or type(exc).__name__]


async def watch_forks(model) -> None:
    """trio task for cgroup trees: children start in their parent's fake
    cgroups, as on the kernel (see forkwatch.py); without the kernel's
    process events, membership is only what was written."""
    from fakefs.host.forkwatch import open_watcher, watch

    # Fake subtrees serve container runtimes, whose stage processes are
    # made with CLONE_PARENT (see forkwatch.py).
    watcher = open_watcher(clone_parent=any(not m.hierarchy.top_is_root for m in model.mounts))
    if isinstance(watcher, str):
        print(f"fakefs: fork inheritance off: {watcher}", flush=True)
        return
    await watch(watcher, model)


def _report(on_ready, error: str | None) -> None:
    if on_ready is not None:
        on_ready(error)


def serve_rawfuse(request: MountRequest, on_ready=None) -> None:
    """The FUSE protocol spoken over /dev/fuse without libfuse: works where
    pyfuse3 refuses the kernel's INIT (gVisor offers no READDIRPLUS)."""
    from fakefs.backends.rawfuse.server import serve_request

    serve_request(request, on_ready)


def serve_tmpfs(request: MountRequest, on_ready=None) -> None:
    """Plain files in a tmpfs, kept in step by an inotify watcher: where no
    FUSE backend works (see fakefs/tmpfsbackend for what it cannot do)."""
    from fakefs.backends.tmpfs import serve_tmpfs as serve_request

    serve_request(request, on_ready)


# Backends by CLI name: each mounts request.target, calls on_ready once, and
# serves until unmounted or SIGTERM/SIGINT, removing its registry record.
BACKENDS = {
    "fuse": serve_pyfuse3,
    "fuse-raw": serve_rawfuse,
    "tmpfs": serve_tmpfs,
}
# What --backend auto tries, in order.
AUTO_ORDER = ["fuse", "fuse-raw", "tmpfs"]
