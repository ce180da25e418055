"""Fork inheritance for the fake cgroup tree, from the kernel's process
events connector (netlink ``NETLINK_CONNECTOR``, ``CN_IDX_PROC``).

On a real kernel a new process or thread starts in its parent's cgroups
(cgroup_post_fork). Container runtimes rely on it: runc writes the pid of
its short-lived ``runc init`` bootstrap process into ``cgroup.procs``; the
container's init is that process's grandchild and is never written
anywhere. The fake keeps membership per thread id, so it must see forks to
place children where their parent was, and exits to forget thread ids the
kernel may reuse.

The connector names the child's ``real_parent``, not always the task that
forked: a new thread reports its process's parent, and ``clone(CLONE_PARENT)``
(runc's nsexec makes its stage-1 and stage-2 children that way) reports the
forker's parent. ``ForkWatcher.forked`` recovers the forker: a thread
inherits from its thread-group leader. With ``clone_parent=True`` (fake
subtrees for container runtimes), a process whose reported parent is outside
the fake tree while that parent has placed children (all in one place)
inherits from them unless its environment block is the parent's: a plain
fork copies the forker's environment, and runc's stage children carry
runc init's, not runc's. This guess is needed because the stage processes
exit or exec within milliseconds, before their /proc entries can be read;
it would misplace a child the parent forks itself with an environment of
its own while a sibling is placed, which is why it is opt-in.

The connector needs CAP_NET_ADMIN and reports pids as the initial PID
namespace numbers them; where it cannot be opened (gVisor, no privilege)
``open_watcher`` says why and membership stays as written.
"""

from __future__ import annotations

import errno
import socket
import struct

import trio

from fakefs.host.procfs import read_text, status_value

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_FORK = struct.Struct("=IIII")  # parent_pid, parent_tgid, child_pid, child_tgid
_EXIT = struct.Struct("=II")  # process_pid, process_tgid


class ForkWatcher:
    """A listening proc-connector socket; ``drain`` applies pending events.

    It notes the parent and environment block of each task when it is
    attached or inherits a place (``remember``): runc's stage-0 and stage-1
    exit, and their /proc entries go, right after forking, often before
    their fork events are read."""

    def __init__(self, sock: socket.socket, clone_parent: bool = False):
        self.sock = sock
        self.clone_parent = clone_parent
        self.lost = 0  # receive-buffer overruns (events dropped by the kernel)
        self.known: dict[int, tuple[int | None, bytes | None]] = {}  # tid -> (ppid, environ)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self, model) -> int:
        """Apply every pending event to ``model`` (forked/exited); returns how
        many were applied. Never blocks."""
        applied = 0
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return applied
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                raise
            applied += self._apply(data, model)

    def close(self) -> None:
        try:
            self.sock.send(_listen_message(PROC_CN_MCAST_IGNORE))
        except OSError:
            pass
        self.sock.close()

    def remember(self, tids) -> None:
        """The model's on_attach hook: tids just written to cgroup.procs or tasks."""
        if not self.clone_parent:
            return
        for tid in tids:
            self.known[tid] = (_ppid(tid), _read(f"/proc/{tid}/environ"))

    def _apply(self, data: bytes, model) -> int:
        applied = 0
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length = _NLMSGHDR.unpack_from(data, offset)[0]
            if length < _NLMSGHDR.size:
                break
            body = offset + _NLMSGHDR.size + _CN_MSG.size
            if body + _EVENT_HEAD.size <= offset + length:
                what = _EVENT_HEAD.unpack_from(data, body)[0]
                event = body + _EVENT_HEAD.size
                if what == PROC_EVENT_FORK:
                    parent_tid, parent_tgid, child_tid, child_tgid = _FORK.unpack_from(data, event)
                    self.forked(model, parent_tid, parent_tgid, child_tid, child_tgid)
                    applied += 1
                elif what == PROC_EVENT_EXIT:
                    tid, _tgid = _EXIT.unpack_from(data, event)
                    model.exited(tid)
                    self.known.pop(tid, None)
                    applied += 1
            offset += (length + 3) & ~3  # NLMSG_ALIGN
        return applied

    def forked(self, model, parent_tid: int, parent_tgid: int, child_tid: int, child_tgid: int) -> None:
        self.known.pop(child_tid, None)  # a reused tid
        env = None
        source = parent_tid
        if child_tid != child_tgid:
            source = child_tgid  # a thread: the event names the process's parent
        elif self.clone_parent and not _placed(model, parent_tid):
            env = _read(f"/proc/{child_tid}/environ")
            source = self._clone_parent_forker(model, parent_tid, parent_tgid, child_tid, env)
        model.forked(source, child_tid)
        if self.clone_parent and _placed(model, child_tid):
            self.known[child_tid] = (parent_tgid, env if env is not None else _read(f"/proc/{child_tid}/environ"))

    def _clone_parent_forker(self, model, parent_tid: int, parent_tgid: int, child_tid: int,
                             env: bytes | None) -> int:
        """The reported parent is outside the fake tree: was the child made
        with CLONE_PARENT by a placed sibling? (See the module doc.)"""
        siblings = [t for t in sorted(self.known) if t != child_tid and self.known[t][0] == parent_tgid
                    and _placed(model, t)]
        if not siblings or (env and env == _read(f"/proc/{parent_tgid}/environ")):
            return parent_tid
        # A sibling with the child's environment is the surest forker.
        matches = [t for t in siblings if env and self.known[t][1] == env] or siblings
        places = {tuple(m.hierarchy.placed.get(t) for m in model.mounts) for t in matches}
        # Siblings in different places: the forker is unknowable here.
        return matches[0] if len(places) == 1 else parent_tid


def _listen_message(op: int) -> bytes:
    payload = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


def _placed(model, tid: int) -> bool:
    return any(tid in m.hierarchy.placed for m in model.mounts)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _ppid(tid: int) -> int | None:
    ppid = status_value(read_text(f"/proc/{tid}/status") or "", "PPid")
    return int(ppid) if ppid else None


def open_watcher(clone_parent: bool = False) -> ForkWatcher | str:
    """A listening watcher, or the one-line reason there is none."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
    except OSError as exc:
        return f"no proc connector socket: {exc.strerror}"
    try:
        sock.bind((0, CN_IDX_PROC))  # port id chosen by the kernel
        sock.send(_listen_message(PROC_CN_MCAST_LISTEN))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
    except OSError as exc:
        sock.close()
        return f"cannot listen to process events: {exc.strerror}"
    return ForkWatcher(sock, clone_parent)


async def watch(watcher: ForkWatcher, model) -> None:
    """trio task: apply events as they arrive, until cancelled."""
    model.on_attach = watcher.remember

    def refresh() -> None:
        try:
            watcher.drain(model)
        except OSError as exc:  # the task below reports it when it fails too
            print(f"fakefs: process events not read: {exc.strerror}", flush=True)

    model.refresh = refresh
    try:
        while True:
            await trio.lowlevel.wait_readable(watcher.sock)
            try:
                watcher.drain(model)
            except Exception as exc:  # never take the mount down with it
                print(f"fakefs: fork inheritance stopped: {exc!r}", flush=True)
                return
    finally:
        model.on_attach = None
        model.refresh = None
        watcher.close()
