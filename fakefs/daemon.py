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

    record = registry.MountRecord(target=request.target, pid=os.getpid(), backend="fuse",
                                  tree=request.tree, mntns=mount_namespace_id(),
                                  started=time.time(), log=request.log)
    registry.save(record)
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
