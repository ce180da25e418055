"""The written values of an overlay tree's synthetic /proc/sys entries, kept
on disk so that a server restarted after a crash (supervisor.py) serves
what consumers wrote, not the seeds again.

Every accepted write is saved before it returns. Only a restart restores them (``request.extra["recovering"]``): a profile
applied afresh seeds its entries from the real files as before. The file is
the target's state file (statefile.path_for), so ``umount --forget``
discards it too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fakefs.runtime.rundir import write_atomically
from fakefs.vfs.overlayfs import SysctlFile

KIND = "overlay-sysctl"


def sysctl_files(root) -> dict:
    """entry path -> SysctlFile, for every synthetic sysctl in the tree."""
    found: dict = {}

    def walk(synthetic: Mapping) -> None:
        for node in synthetic.values():
            if isinstance(node, Mapping):
                walk(node)
            elif isinstance(node, SysctlFile):
                found[node.entry.path] = node

    for view in getattr(root, "children", {}).values():
        walk(getattr(view, "synthetic", {}))
    return found


def snapshot(files: dict) -> dict:
    return {path: list(node.values) for path, node in files.items()}


def save(files: dict, path: str) -> None:
    write_atomically(path, json.dumps({"kind": KIND, "values": snapshot(files)}).encode())


def load_into(files: dict, path: str) -> str | None:
    """Put the saved values back through each entry's own parser (a value
    the entry refuses keeps the seed). Returns a note for the log."""
    try:
        with open(path) as f:
            data = json.load(f)
        values = data["values"] if data.get("kind") == KIND else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        return f"overlay state {path} not restored ({exc})"
    if not isinstance(values, dict):
        return f"overlay state {path} not restored (not an overlay state)"
    restored = 0
    for entry_path, saved in values.items():
        node = files.get(entry_path)
        if node is None or not isinstance(saved, list) or len(saved) != len(node.values):
            continue
        if all(type(a) is type(b) for a, b in zip(saved, node.values)):
            node.values[:] = saved
            restored += 1
    return f"overlay state restored from {path} ({restored} entries)"


def keep_saved(files: dict, path: str) -> None:
    """From now on every accepted write to an entry is saved before the
    write returns (the file is small: a few values)."""
    def save_logged() -> None:
        try:
            save(files, path)
        except OSError as exc:
            print(f"fakefs: cannot save overlay state to {path}: {exc}", flush=True)

    for node in files.values():
        node.on_written = save_logged
