"""What apply did, step by step, on disk before it is relied on: so that
``fakefs umount --all`` can undo it in reverse even after the daemons were
killed or fakefs itself crashed mid-apply."""

from __future__ import annotations

import json
import os

from fakefs.host.mountinfo import mount_namespace_id
from fakefs.runtime.registry import run_dir, write_atomically


def journal_path(mntns: str | None = None) -> str:
    return os.path.join(run_dir(), f"journal-{mntns or mount_namespace_id()}.json")


def read(mntns: str | None = None) -> list[dict]:
    """Applied profiles, oldest first: [{"profile", "stage", "done": [step dicts]}]."""
    try:
        with open(journal_path(mntns)) as f:
            data = json.load(f)
        return data.get("applied", []) if isinstance(data, dict) else []
    except (OSError, ValueError):
        return []


def write(applied: list[dict], mntns: str | None = None) -> None:
    os.makedirs(run_dir(), mode=0o700, exist_ok=True)
    path = journal_path(mntns)
    if not applied:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    write_atomically(path, json.dumps({"applied": applied}, indent=1).encode())
