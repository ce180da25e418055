"""The serving process: builds the model for a tree, mounts it with pyfuse3
and runs the trio loop until unmounted or told to stop (SIGTERM/SIGINT)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

from . import registry
from .mountinfo import mount_namespace_id

FUSE_OPTIONS = ("fsname=fakefs", "subtype=fakefs", "allow_other", "default_permissions")


@dataclass
class MountRequest:
    target: str
    tree: str = "cgroup"
    backend: str = "fuse"
    hierarchies: list[str] | None = None
    log: str = ""
    extra: dict = field(default_factory=dict)


class MountError(Exception):
    """A one-line reason the mount could not be made."""


def build_root(request: MountRequest):
    """The node tree for ``request.tree``, over a model of this machine."""
    from .fs.cgroupfs import CgroupFsRoot
    from .hostinfo import LiveProcessTable, read_host_facts
    from .model.errors import KernelError
    from .model.tree import DEFAULT_HIERARCHIES, CgroupModel

    if request.tree == "overlay":
        import json

        from .fs.overlayfs import build_overlay_root

        try:
            with open(request.extra["spec"]) as f:
                return build_overlay_root(json.load(f))
        except (OSError, KeyError, ValueError) as exc:
            raise MountError(f"overlay spec: {exc}") from None
    if request.tree != "cgroup":
        raise MountError(f"unknown tree {request.tree!r} (known: cgroup, overlay)")
    try:
        model = CgroupModel(read_host_facts(), LiveProcessTable(),
                            request.hierarchies or list(DEFAULT_HIERARCHIES))
    except KernelError as exc:
        raise MountError(exc.detail) from None
    return CgroupFsRoot(model)


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


def register_mount(request: MountRequest, backend: str) -> registry.MountRecord:
    """Record the live mount (called by a backend once it is mounted)."""
    record = registry.MountRecord(target=request.target, pid=os.getpid(), backend=backend,
                                  tree=request.tree, mntns=mount_namespace_id(),
                                  started=time.time(), log=request.log)
    registry.save(record)
    return record


def serve_pyfuse3(request: MountRequest, on_ready=None) -> None:
    try:
        import pyfuse3
        import trio
    except ImportError as exc:  # pragma: no cover - depends on the machine
        _report(on_ready, f"pyfuse3 is not usable here: {exc}")
        raise MountError(str(exc)) from None

    from .fs.ops import FsOps
    from .fs.pyfuse3_backend import make_operations

    try:
        root = build_root(request)
    except MountError as exc:
        _report(on_ready, str(exc))
        raise
    operations = make_operations(FsOps(root))
    try:
        pyfuse3.init(operations, request.target, set(FUSE_OPTIONS))
    except RuntimeError as exc:
        msg = f"FUSE mount at {request.target} refused: {exc}"
        _report(on_ready, msg)
        raise MountError(msg) from None

    record = register_mount(request, "fuse")
    _report(on_ready, None)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async def stop_on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        pyfuse3.terminate()
                        return

            nursery.start_soon(stop_on_signal)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        try:
            pyfuse3.close(unmount=True)
        finally:
            registry.remove(request.target, record.mntns)


def _report(on_ready, error: str | None) -> None:
    if on_ready is not None:
        on_ready(error)


# Backends by CLI name: each mounts request.target, calls on_ready once, and
# serves until unmounted or SIGTERM/SIGINT, removing its registry record.
BACKENDS = {
    "fuse": serve_pyfuse3,
}
# What --backend auto tries, in order.
AUTO_ORDER = ["fuse"]
