"""Keeping a cgroup tree's state on disk, so that a daemon started again on
the same target (after ``umount``, a crash or ``kill -9``) serves the same
tree, values and memberships.

One JSON file per mount namespace and target in the run directory
(``/run/fakefs`` or ``$FAKEFS_RUN_DIR``), mode 0600, replaced atomically
(write a temporary file, fsync, rename). The serving loop saves it at most
``SAVE_INTERVAL`` after a change (the model's generation moved) and once
more when it stops; ``fakefs umount --forget`` deletes it.
"""

from __future__ import annotations

import hashlib
import json
import os

from fakefs.runtime import registry
from fakefs.model.state import StateError, dump, restore
from fakefs.host.mountinfo import mount_namespace_id

# Poll period of the saver: a change is on disk within this plus one save.
SAVE_INTERVAL = 0.04


def path_for(target: str, mntns: str | None = None) -> str:
    digest = hashlib.sha1(target.encode()).hexdigest()[:16]
    return os.path.join(registry.run_dir(), f"state-{mntns or mount_namespace_id()}-{digest}.json")


def save(model, path: str) -> None:
    registry.write_atomically(path, json.dumps(dump(model), separators=(",", ":")).encode())


def load_into(model, path: str) -> str | None:
    """Restore ``path`` into a freshly built model. Returns a one-line note
    for the log: what was restored, or why the file was set aside (it is
    renamed to ``*.bad`` so that the next save does not destroy it)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
        restore(model, data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, StateError, RecursionError) as exc:
        try:
            os.replace(path, path + ".bad")
        except OSError:
            pass
        return f"state file {path} not restored ({exc}); kept as {path}.bad"
    return f"state restored from {path}"


def forget(target: str, mntns: str | None = None) -> bool:
    """Delete the saved state of ``target``; True if there was one."""
    path = path_for(target, mntns)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def forget_all(mntns: str | None = None) -> int:
    """Delete every saved state of this mount namespace; how many there were."""
    prefix = f"state-{mntns or mount_namespace_id()}-"
    count = 0
    try:
        names = os.listdir(registry.run_dir())
    except OSError:
        return 0
    for name in names:
        if name.startswith(prefix) and name.endswith(".json"):
            try:
                os.unlink(os.path.join(registry.run_dir(), name))
                count += 1
            except FileNotFoundError:
                pass
    return count


async def keep_saved(model, path: str, interval: float = SAVE_INTERVAL) -> None:
    """trio task: save the model whenever it changed, and when cancelled."""
    import trio

    saved = model.generation
    try:
        while True:
            await trio.sleep(interval)
            if model.generation != saved:
                saved = model.generation
                _save_logged(model, path)
    finally:
        if model.generation != saved:
            _save_logged(model, path)


def _save_logged(model, path: str) -> None:
    try:
        save(model, path)
    except (OSError, StateError) as exc:
        # Serving goes on; the log says why the state is not kept.
        print(f"fakefs: cannot save state to {path}: {exc}", flush=True)
