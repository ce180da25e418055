"""The background daemon of ``fakefs mount``/``apply``: a small supervisor
that runs the serving process as its child and starts it again when it dies.

Why a separate process: a FUSE mount whose server died answers ENOTCONN
until someone remounts, and so does every bind mount of its files (the top
complaint about lxcfs). The supervisor keeps it serving:

- A server that exits other than cleanly (a signal the supervisor did not
  send, or an error exit after it was serving) is a crash, and a new server
  starts; it restores the tree from the state file (statefile.py; overlays:
  overlaystate.py).
- fuse-raw hands its /dev/fuse connection to the supervisor once INIT is
  done. Held here, the connection outlives the server: the mount never goes
  stale, requests queue in the kernel until the next server reads them, and
  that server continues the connection without INIT, answering the node ids
  the kernel kept from the inode log (backends/rawfuse/inodelog.py). Files opened
  before the crash answer EBADF; a request the dead server had read but not
  answered is lost: its caller waits until a signal, then gets EINTR.
- Other backends (pyfuse3: libfuse owns its fd; tmpfs): the supervisor
  detaches the bind mounts the manager's journal records with the dead mount
  as source, lazily unmounts it, starts a new server on the same target and
  redoes those binds (runtime/journal.py). Consumers see ENOTCONN (or, through
  an overlay's binds, the real directory) for the moment this takes; files
  opened before the crash stay dead.
- More than RESTART_LIMIT crashes within RESTART_WINDOW seconds: it gives up
  and leaves the mount stale (status, mount, apply and umount clean it up).
- SIGTERM/SIGINT to the supervisor (what ``fakefs umount`` sends to the pid
  in the registry) are forwarded to the server, which unmounts and removes
  its registry record; a server that does not finish within STOP_GRACE is
  killed, and that is not a crash.
- The server dies with the supervisor (PR_SET_PDEATHSIG): ``kill -9`` of the
  registry's pid still means "the daemon is gone", which leaves the stale
  mount the cleanup paths expect, never an unsupervised orphan.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import socket
import time
import traceback
from collections import deque

from fakefs.errors import MountError
from fakefs.runtime.registry import clear_dead_mounts
from fakefs.host.sysmount import libc
from fakefs.runtime import registry
from fakefs.runtime.journal import bind_from, unbind_from
from fakefs.runtime.readiness import await_report, reporter
from fakefs.runtime.serving import SupervisorLink, hold_authentic, serve

# FAKEFS_RESTART_LIMIT: how many crashes within the window a supervisor
# restarts from (a crash test kills its server more often than that).
RESTART_LIMIT = int(os.environ.get("FAKEFS_RESTART_LIMIT", "5"))
RESTART_WINDOW = 30.0
# Less than runtime.daemons.stop()'s 5 s, so that umount sees the supervisor finish
# the stop itself.
STOP_GRACE = 3.5
# How long a restarted server may take to report its mount ready.
READY_TIMEOUT = 20.0
PR_SET_PDEATHSIG = 1
FORWARDED = (signal.SIGTERM, signal.SIGINT)


class _Server:
    """One generation of the serving process."""

    def __init__(self, pid: int, ready_fd: int):
        self.pid, self.ready_fd = pid, ready_fd
        self.status: int | None = None  # the waitpid status once it exited

    def poll(self) -> bool:
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.status = status
        return self.status is not None

    def describe_exit(self) -> str:
        if self.status is None:
            return "running"
        if os.WIFSIGNALED(self.status):
            return f"killed by {signal.Signals(os.WTERMSIG(self.status)).name}"
        return f"exited with status {os.waitstatus_to_exitcode(self.status)}"

    @property
    def clean_exit(self) -> bool:
        return self.status is not None and os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0


class Supervisor:
    def __init__(self, request, log=None):
        self.request = request
        self.log = log or (lambda msg: print(f"fakefs[supervisor]: {msg}", flush=True))
        self.stopping: int | None = None  # the stop signal received
        self.stop_deadline = 0.0
        self.server: _Server | None = None
        self._wake_r, self._wake_w = os.pipe()
        # fuse-raw hands its /dev/fuse connection over here once INIT is
        # done: held, it outlives the server, and the next one continues it.
        self._sock, self._server_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.connection: dict | None = None
        self.generation = 0

    # -- signals ----------------------------------------------------------------------
    def _install_signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in FORWARDED:
            signal.signal(sig, self._on_stop_signal)
        # A handler (not SIG_DFL) so that SIGCHLD reaches the wakeup fd.
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def _on_stop_signal(self, signum, _frame) -> None:
        if self.stopping is None:
            self.stopping = signum
            self.stop_deadline = time.monotonic() + STOP_GRACE
        server = self.server
        if server is not None and server.status is None:
            try:
                os.kill(server.pid, signum)
            except ProcessLookupError:
                pass

    def _drain_wakeups(self, timeout: float) -> None:
        try:
            readable, _, _ = select.select([self._wake_r], [], [], max(0.0, timeout))
        except InterruptedError:
            return
        if readable:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass

    # -- one generation ---------------------------------------------------------------
    def _spawn(self, request, held_connection: dict | None = None) -> _Server:
        supervisor_pid = os.getpid()
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the server
            code = 1
            try:
                os.close(rfd)
                signal.set_wakeup_fd(-1)
                for sig in (*FORWARDED, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._sock.close()
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() != supervisor_pid:
                    os._exit(1)  # the supervisor died before prctl took effect
                link = SupervisorLink(supervisor_pid, self._server_sock, held_connection)

                try:
                    serve(request, reporter(wfd), link)
                    code = 0
                except MountError:
                    pass
                except BaseException:
                    traceback.print_exc()
            finally:
                os._exit(code)
        os.close(wfd)
        server = _Server(pid, rfd)
        self.server = server
        if self.stopping is not None:  # a stop signal came while forking
            os.kill(pid, self.stopping)
        return server

    def _await_ready(self, server: _Server, timeout: float) -> str | None:
        """None once the server reports its mount ready, else the reason."""
        outcome, reason = await_report(server.ready_fd, timeout)
        if outcome == "ok":
            return None
        if outcome == "error":
            return reason
        if outcome == "timeout":
            return "the server reported nothing in time"
        server.poll()
        return f"daemon failed before the mount was ready ({server.describe_exit()}; see {self.request.log or 'its log'})"

    def _wait_exit(self, server: _Server) -> None:
        killed = False
        while not server.poll():
            if self.stopping is not None and not killed and time.monotonic() >= self.stop_deadline:
                self.log(f"server {server.pid} did not stop within {STOP_GRACE}s: killing it")
                os.kill(server.pid, signal.SIGKILL)
                killed = True
            self._drain_wakeups(0.5 if self.stopping is None else 0.1)

    # -- recovery ---------------------------------------------------------------------
    def _clear_dead_mount(self) -> None:
        clear_dead_mounts(self.request.target)

    def _unbind(self) -> None:
        for problem in unbind_from(self.request.target):
            self.log(f"unbinding the dead mount: {problem}")

    def _rebind(self, replace: bool) -> None:
        for problem in bind_from(self.request.target, replace):
            self.log(f"rebinding: {problem}")

    def run(self, on_ready) -> int:
        """Serve until stopped; ``on_ready`` gets the first generation's
        readiness (None or a reason). Returns the exit code."""
        self._install_signals()
        request = self.request
        # Held here, before the first server covers them: every server
        # (forked from here) binds its own copy back in.
        hold_authentic(request)
        server = self._spawn(request)
        error = self._await_ready(server, READY_TIMEOUT * 3)
        on_ready(error)
        if error is not None:
            self._wait_exit(server)
            return 1
        self._take_connection()
        # Restarts use the backend the first generation settled on (auto).
        record = registry.load(request.target)
        if record is not None and request.backend == "auto":
            request = dataclasses.replace(request, backend=record.backend)
        # Restarted servers take up the saved state (overlaystate.py).
        request = dataclasses.replace(request, recovering=True)
        crashes: deque[float] = deque()
        while True:
            self._wait_exit(server)
            if self.stopping is not None:
                self._finish_stop(server)
                self._drop_connection()
                return 0
            if server.clean_exit:
                self._drop_connection()
                return 0  # unmounted by hand: nothing to keep alive
            now = time.monotonic()
            crashes.append(now)
            while crashes and now - crashes[0] > RESTART_WINDOW:
                crashes.popleft()
            if len(crashes) > RESTART_LIMIT:
                self.log(f"server {server.pid} {server.describe_exit()}: {len(crashes)} crashes within "
                         f"{RESTART_WINDOW:.0f}s, giving up (the mount stays stale)")
                # Released, the held connection ends: callers get ENOTCONN, not a hang.
                self._drop_connection()
                return 1
            if self.connection is not None:
                # The mount never went away: the kernel queues requests
                # until the next server reads them.
                self.generation += 1
                self.log(f"server {server.pid} {server.describe_exit()}: restarting on the held connection")
                server = self._spawn(request, {**self.connection, "generation": self.generation})
                error = self._await_ready(server, READY_TIMEOUT)
                if error is not None:
                    self.log(f"restart failed: {error}")
                    if server.status is None:
                        os.kill(server.pid, signal.SIGKILL)
                else:
                    self.log(f"server {server.pid} serves {request.target} again")
                continue
            self.log(f"server {server.pid} {server.describe_exit()}: restarting")
            # Binds first: they cover the real directories an overlay
            # server opens as it starts (consumers see those meanwhile).
            # A cgroup tree's new server takes the dead mount's place itself,
            # and its binds are replaced the same way afterwards: consumers
            # never reach the directories underneath (serving.py). An
            # overlay's server must open the real directories its dead mount
            # and binds cover, so those go first.
            replaced = request.tree == "cgroup"
            if not replaced:
                self._unbind()
                self._clear_dead_mount()
            server = self._spawn(request)
            error = self._await_ready(server, READY_TIMEOUT)
            if error is not None:
                self.log(f"restart failed: {error}")
                if server.status is None:
                    os.kill(server.pid, signal.SIGKILL)
                continue  # _wait_exit reaps it; counted as one more crash
            self._rebind(replaced)
            self.log(f"server {server.pid} serves {request.target} again")

    def _take_connection(self) -> None:
        """The connection the first server sent before reporting ready, if
        its backend hands one over (fuse-raw)."""
        self._sock.setblocking(False)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(self._sock, 4096, 1)
        except (BlockingIOError, OSError):
            return
        if fds:
            self.connection = {**json.loads(msg), "fd": fds[0]}

    def _drop_connection(self) -> None:
        if self.connection is not None:
            os.close(self.connection["fd"])
            self.connection = None

    def _finish_stop(self, server: _Server) -> None:
        """A server killed after STOP_GRACE did not unmount: do it for it."""
        if not server.clean_exit:
            self._clear_dead_mount()
            registry.remove(self.request.target)


def supervise(request, on_ready) -> int:
    return Supervisor(request).run(on_ready)
