"""The tmpfs fallback: the same node tree the FUSE backends serve, rendered
as plain files into a tmpfs, for sandboxes that refuse FUSE.

How it works: a private tmpfs is mounted in a scratch directory, the tree is
rendered into its ``fakefs-tree`` subdirectory (next to a ``work`` directory
consumers never see), ``fakefs-tree`` is bind-mounted at the target and the
scratch mount is detached (the daemon keeps it through directory fds). A
trio loop then watches every directory with inotify:

* a new directory in a cgroup gets its control files (the model's mkdir:
  inherited values, every controller's files), a directory made inside a
  tree that refuses mkdir (a /proc/sys view) is removed again;
* a directory removed on disk is removed from the model; if the model
  refuses (EBUSY: tasks or children) it comes back;
* a file closed after writing is handed to the model as write()s (one per
  line for ``cgroup.procs``, ``tasks``, ``devices.allow``/``deny``), then the
  written file is replaced whole by the model's value, as a read of the
  kernel's file shows it (``1G`` reads back as ``1073741824``; a refused
  text gives way to the old value, and the daemon log says why); every
  other file whose value changed is rewritten too (``tasks`` lists the
  whole thread group after ``cgroup.procs``);
* every second (longer when rendering them takes more than a quarter of
  the time), live values (``tasks``, ``cgroup.procs``, ``pids.current``,
  usage counters) are re-rendered, so exited processes disappear.

Updates are atomic (rename over the file): readers see old or new content.

What plain files cannot do (use a FUSE backend where one works):

* No validation at write time and no errnos: every write() succeeds, the
  model judges it afterwards. ``echo 0 > cgroup.procs`` ("the writer") cannot
  work: inotify does not say who wrote.
* ``rmdir(2)`` of a cgroup directory fails with ENOTEMPTY (its control files
  are real files); remove it recursively (``rm -r``, ``shutil.rmtree``) and
  the model follows. runc's ``RemovePath`` only rmdirs, so it fails here.
* Creating or unlinking files in a cgroup directory succeeds (cgroupfs gives
  EACCES / EPERM); a deleted control file stays gone until the cgroup is
  re-created.
* The race between mkdir and the first write: until the watcher has filled a
  new directory (milliseconds), opening a control file there gives ENOENT, or
  with O_CREAT makes a plain file, which the watcher then takes as the first
  write. A directory removed while it is being filled makes ``rm -r`` fail
  now and then (ENOTEMPTY: a file was added after it listed the directory).
* A write without O_TRUNC is laid over the start of the value on disk, and
  inotify says neither the open flags nor where a write ended: when it
  leaves a tail of the old value the model gets both (``512`` written over
  ``1024\n`` is ``5124\n``). Writers must truncate (shells' ``>``, Python's
  ``open(..., "w")`` and ``fakefs run --limit`` do; runc does not, but runc
  refuses tmpfs trees anyway). Until the watcher has handled a write (right
  after close), a reader sees the text as written. A file kept open across
  several writes is seen only when it is closed, as one value.
* Real /proc/sys entries in an overlay view are copies of their values at
  mount time (snapshots); a write to one is passed on to the real entry.
* mountinfo shows fstype ``tmpfs``: like the FUSE backends, not discovered
  as cgroupfs by runc, kubelet or cAdvisor.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time

import trio

from fakefs.backends import TMPFS_TREE_DIR, Session, is_fakefs_mount
from fakefs.backends.tmpfs import inotify as I
from fakefs.backends.tmpfs.inotify import Inotify
from fakefs.backends.tmpfs.mirror import Mirror
from fakefs.host.mountinfo import read_mounts
from fakefs.host.sysmount import MS_BIND, MS_NODEV, MS_NOSUID, clone_mount, mount, replace_mount, umount
from fakefs.vfs.ops import internal_error, one_line

TREE_DIR = TMPFS_TREE_DIR
WORK_DIR = "work"
REFRESH_INTERVAL = 1.0


def _still_mounted(target: str) -> bool:
    try:
        return any(m.mountpoint == target and m.fstype == "tmpfs" and is_fakefs_mount(m.fstype, m.source, m.root) for m in read_mounts())
    except OSError:
        return False


def _log(message: str) -> None:
    print(f"fakefs-tmpfs: {one_line(message)}", flush=True)


def serve(session: Session) -> None:
    target = session.target
    scratch = tempfile.mkdtemp(prefix="tmpfs-", dir=session.scratch_dir)
    try:
        mount("fakefs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700")
    except OSError as exc:
        os.rmdir(scratch)
        raise session.fail(f"tmpfs mount refused: {exc.strerror}") from None

    top_fd = tree_fd = work_fd = -1
    ino = None
    mounted = False
    try:
        try:
            top_fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            os.mkdir(TREE_DIR, 0o755, dir_fd=top_fd)
            os.mkdir(WORK_DIR, 0o700, dir_fd=top_fd)
            tree_fd = os.open(TREE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=top_fd)
            work_fd = os.open(WORK_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=top_fd)
            mirror = Mirror(session.root, tree_fd, work_fd, _log)
            mirror.render_all()
            _bind_tree(session, os.path.join(scratch, TREE_DIR))
            mounted = True
        except OSError as exc:
            raise session.fail(f"tmpfs tree at {target}: {exc.strerror or exc}") from None
        finally:
            # The daemon keeps the tmpfs through its fds; nobody else needs
            # the scratch mount.
            try:
                umount(scratch, detach=True)
                os.rmdir(scratch)
            except OSError as exc:
                _log(f"scratch mount {scratch}: {exc.strerror}")

        try:
            ino = Inotify()
            watcher = _Watcher(ino, mirror, target)
        except OSError as exc:
            raise session.fail(f"inotify on {target}: {exc.strerror or exc}") from None

        session.on_mounted("tmpfs")
        session.ready_before_serving()
        session.run_serving(watcher.run, None)
    finally:
        if mounted and _still_mounted(target):
            try:
                umount(target, detach=True)
            except OSError:
                pass
        if ino is not None:
            ino.close()
        for fd in (tree_fd, work_fd, top_fd):
            if fd >= 0:
                os.close(fd)


def _bind_tree(session: Session, tree: str) -> None:
    """Bind the rendered tree at the target; after a crash, in the place of
    the dead server's tree (see Session.replace_existing)."""
    if session.replace_existing:
        try:
            clone = clone_mount(tree)
            try:
                replace_mount(clone, session.target)
            finally:
                os.close(clone)
            return
        except OSError:
            session.clear_target()
    mount(tree, session.target, None, MS_BIND)


class _Watcher:
    """inotify events -> Mirror actions, in a trio loop."""

    def __init__(self, ino, mirror: Mirror, target: str):
        self.I = I
        self.ino = ino
        self.mirror = mirror
        self.target = target
        self.mask = (I.IN_CREATE | I.IN_DELETE | I.IN_CLOSE_WRITE | I.IN_MOVED_FROM | I.IN_MOVED_TO
                     | I.IN_ONLYDIR | I.IN_DONT_FOLLOW)
        self.by_wd: dict[int, str] = {}
        self.by_rel: dict[str, int] = {}
        mirror.on_new_dir = self.watch
        mirror.on_gone_dir = self.unwatch
        mirror.on_moved_dir = self.moved
        for rel in list(mirror.dirs):
            self.watch(rel)

    def watch(self, rel: str) -> None:
        if rel in self.by_rel:
            return
        try:
            wd = self.ino.add_watch(os.path.join(self.target, rel) if rel else self.target, self.mask)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):  # else removed meanwhile: its event follows
                _log(f"cannot watch {rel or '/'}: {exc.strerror}")
            return
        self.by_wd[wd] = rel
        self.by_rel[rel] = wd

    def unwatch(self, rel: str) -> None:
        wd = self.by_rel.pop(rel, None)
        if wd is not None:
            self.by_wd.pop(wd, None)
            self.ino.rm_watch(wd)

    def moved(self, old: str, new: str) -> None:
        for rel in [r for r in self.by_rel if r == old or r.startswith(old + "/")]:
            wd = self.by_rel.pop(rel)
            moved = new + rel[len(old):]
            self.by_rel[moved] = wd
            self.by_wd[wd] = moved

    def handle(self, events) -> None:
        m = self.mirror
        model = getattr(m.root, "model", None)
        generation = model.generation if model is not None else None
        written: set[str] = set()
        moved_from: dict[int, tuple[str, str, bool]] = {}
        for ev in events:
            try:
                self._event(ev, written, moved_from)
            except Exception as exc:
                # The request boundary of this transport: whatever one event
                # does, the watcher goes on (a dead watcher is a dead mount).
                # The directory is compared with the model again instead.
                internal_error(f"event {ev.mask:#x} on {self.by_wd.get(ev.wd)!r}/{ev.name!r}", exc, _log,
                               "comparing that directory with the model")
                self._resync_after_error(self.by_wd.get(ev.wd))
        for parent, name, is_dir in moved_from.values():  # moved out of the tree
            if is_dir:
                self._guarded("move out of the tree", m.dir_removed, parent, name)
        if model is not None:
            # A cgroup write can change any file of the tree (membership,
            # inherited values): compare them all.
            if model.generation != generation:
                self._guarded("refresh", m.refresh)
        elif written:
            # Overlay views: each file stands alone, and real entries stay
            # the snapshots they were at mount time.
            self._guarded("refresh", m.refresh, only=written)

    def _guarded(self, what: str, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            internal_error(what, exc, _log, "comparing the tree with the model")
            self._resync_after_error("")

    def _resync_after_error(self, rel: str | None) -> None:
        try:
            self.mirror.resync(rel or "")
        except Exception as exc:
            internal_error("resync", exc, _log, "left for the next event")

    def _event(self, ev, written: set[str], moved_from: dict[int, tuple[str, str, bool]]) -> None:
        I, m = self.I, self.mirror
        if ev.mask & I.IN_Q_OVERFLOW:
            _log("inotify queue overflowed: comparing the whole tree")
            m.resync("")
            return
        if ev.mask & I.IN_IGNORED:
            rel = self.by_wd.pop(ev.wd, None)
            if rel is not None and self.by_rel.get(rel) == ev.wd:
                del self.by_rel[rel]
            return
        parent = self.by_wd.get(ev.wd)
        if parent is None or not ev.name:
            return
        rel = f"{parent}/{ev.name}" if parent else ev.name
        if ev.mask & I.IN_MOVED_FROM:
            moved_from[ev.cookie] = (parent, ev.name, ev.is_dir)
        elif ev.mask & I.IN_MOVED_TO and ev.cookie in moved_from:
            old_parent, old_name, is_dir = moved_from.pop(ev.cookie)
            if is_dir:
                m.dir_renamed(old_parent, old_name, parent, ev.name)
            else:
                m.file_written(rel)
                written.add(rel)
        elif ev.is_dir and ev.mask & (I.IN_CREATE | I.IN_MOVED_TO):
            m.dir_created(parent, ev.name)
        elif ev.is_dir and ev.mask & I.IN_DELETE:
            m.dir_removed(parent, ev.name)
        elif ev.mask & (I.IN_CLOSE_WRITE | I.IN_MOVED_TO):
            m.file_written(rel)
            written.add(rel)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            async def tick() -> None:
                pause = REFRESH_INTERVAL
                while True:
                    await trio.sleep(pause)
                    if not _still_mounted(self.target):
                        _log(f"{self.target} was unmounted: stopping")
                        nursery.cancel_scope.cancel()
                        return
                    started = time.monotonic()
                    self.mirror.refresh(live_only=True)
                    # Rendering live values costs what the model costs (every
                    # process of the machine for a root's cgroup.procs):
                    # never spend more than a quarter of the time on it.
                    pause = max(REFRESH_INTERVAL, 3 * (time.monotonic() - started))

            nursery.start_soon(tick)
            while True:
                await trio.lowlevel.wait_readable(self.ino.fd)
                self.handle(self.ino.read())
