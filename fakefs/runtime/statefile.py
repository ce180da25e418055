"""Keeping a cgroup tree's state on disk, so that a daemon started again on
the same target (after ``umount``, a crash or ``kill -9``) serves the same
tree, values and memberships.

Two files per mount namespace and target in the run directory
(``/run/fakefs`` or ``$FAKEFS_RUN_DIR``), mode 0600:

- the **journal** (``state-*.log``): every acknowledged change (mkdir,
  rmdir, rename, a write, chmod, an attach; CgroupModel.changed) is appended
  as one JSON line *before* the operation returns to the kernel, so nothing
  a caller saw succeed is lost when the server dies. Appends go to the page
  cache (no fsync): they must survive the process, not the machine.
- the **snapshot** (``state-*.json``): the whole model (model/state.py),
  replaced atomically (temporary file, fsync, rename) by the serving loop
  when the journal has grown or membership changed by forks and exits, and
  once more when it stops; then the journal is emptied. The snapshot names
  the last journal line it contains, so a crash between the two steps
  replays nothing twice.

A new daemon restores the snapshot and replays the journal lines after it.
``fakefs umount --forget`` deletes both.
"""

from __future__ import annotations

import json
import os

import trio

from fakefs.model.state import StateError, dump, replay, restore
from fakefs.runtime import rundir

# Poll period of the saver.
SAVE_INTERVAL = 0.04
# The snapshot is rewritten when the journal holds this many lines, or when
# something changed that is not journaled (forks, exits) and this long has
# passed: the journal makes acknowledged changes durable already, so the
# snapshot only bounds the journal and keeps membership.
COMPACT_LINES = 2000
COMPACT_AFTER = 1.0


def path_for(target: str, mntns: str | None = None) -> str:
    return rundir.path_for("state", target, ".json", mntns)


def journal_path_for(snapshot: str) -> str:
    return snapshot[: -len(".json")] + ".log"


class Store:
    """The saved state of one model: restore it, journal its changes, and
    compact the journal into the snapshot."""

    def __init__(self, model, path: str):
        self.model = model
        self.path = path
        self.journal_path = journal_path_for(path)
        self.seq = 0          # the last journal line written
        self.snapshot_seq = 0  # the last line the snapshot on disk contains
        self.lines = 0        # lines in the journal file now
        self.fd = -1
        self.saved_generation: int | None = None  # the model's, as of the snapshot on disk

    # -- restore ---------------------------------------------------------------
    def load(self) -> str | None:
        """Restore the snapshot and replay the journal after it. Returns a
        one-line note for the log (None: nothing was saved). A file that does
        not fit is renamed to ``*.bad`` so that the next save keeps it."""
        notes = []
        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read())
            restore(self.model, data)
            self.snapshot_seq = self.seq = int(data.get("journal_seq", 0))
            notes.append(f"state restored from {self.path}")
        except FileNotFoundError:
            pass
        except (OSError, ValueError, StateError, RecursionError) as exc:
            self._set_aside(self.path)
            self._set_aside(self.journal_path)
            return f"state file {self.path} not restored ({exc}); kept as {self.path}.bad"
        records = []
        try:
            with open(self.journal_path, "rb") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        break  # a line cut by the crash: it was never acknowledged
                    if isinstance(record, dict) and record.get("seq", 0) > self.snapshot_seq:
                        records.append(record)
                        self.seq = record["seq"]
        except FileNotFoundError:
            pass
        except OSError as exc:
            notes.append(f"journal {self.journal_path} not read ({exc.strerror})")
        if records:
            applied, skipped = replay(self.model, records)
            notes.append(f"{applied} journaled operations replayed"
                         + (f", {len(skipped)} skipped ({'; '.join(skipped[:3])})" if skipped else ""))
        return "; ".join(notes) or None

    @staticmethod
    def _set_aside(path: str) -> None:
        try:
            os.replace(path, path + ".bad")
        except OSError:
            pass

    # -- journal ---------------------------------------------------------------
    def start(self) -> None:
        """From now on every journaled change is written before it returns.
        The journal starts empty: what it held goes into the snapshot first
        (nothing is written where nothing was saved and nothing changed)."""
        if self.seq > self.snapshot_seq:
            self.save()
        else:
            self.saved_generation = self.model.generation
        rundir.ensure()
        self.fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600)
        os.ftruncate(self.fd, 0)
        self.lines = 0
        self.model.journal = self.append

    def append(self, record: dict) -> None:
        self.seq += 1
        data = (json.dumps({"seq": self.seq, **record}, separators=(",", ":")) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError as exc:
            print(f"fakefs: cannot journal a change to {self.journal_path}: {exc.strerror}", flush=True)
        self.lines += 1

    # -- snapshot --------------------------------------------------------------
    def save(self) -> None:
        """Write the snapshot (it contains every journaled line so far), then
        empty the journal."""
        data = dump(self.model)
        data["journal_seq"] = self.seq
        rundir.write_atomically(self.path, json.dumps(data, separators=(",", ":")).encode())
        self.snapshot_seq = self.seq
        self.saved_generation = self.model.generation
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            self.lines = 0

    def save_logged(self) -> None:
        try:
            self.save()
        except (OSError, StateError) as exc:
            # Serving goes on; the log says why the state is not kept.
            print(f"fakefs: cannot save state to {self.path}: {exc}", flush=True)

    async def keep_saved(self, interval: float = SAVE_INTERVAL) -> None:
        """trio task: compact the journal into the snapshot when it has grown
        or unjournaled changes (forks, exits) are waiting; once more when
        cancelled."""
        since = trio.current_time()
        try:
            while True:
                await trio.sleep(interval)
                if self.model.generation == self.saved_generation:
                    since = trio.current_time()
                    continue
                if self.lines >= COMPACT_LINES or trio.current_time() - since >= COMPACT_AFTER:
                    since = trio.current_time()
                    self.save_logged()
        finally:
            self.model.journal = None
            if self.model.generation != self.saved_generation or self.lines:
                self.save_logged()
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def forget(target: str, mntns: str | None = None) -> bool:
    """Delete the saved state of ``target``; True if there was one."""
    path = path_for(target, mntns)
    journal = rundir.remove(journal_path_for(path))
    return rundir.remove(path) or journal


def forget_all(mntns: str | None = None) -> int:
    """Delete every saved state of this mount namespace; how many there were."""
    count = sum(rundir.remove(path) for path in rundir.names_of("state", ".json", mntns))
    for path in rundir.names_of("state", ".log", mntns):
        rundir.remove(path)
    return count
