"""``fakefs run``: a command in a private mount namespace with a profile
applied, torn down when it exits, exiting with its status.

Exit status, as docker and env give it: the command's own (128 + N when a
signal N ended it), 125 when fakefs itself fails, 126 when the command
cannot be executed, 127 when it is not found. Everything started inside
(daemons of ``fakefs mount`` run by the command, background processes) ends
with the command (fakefs/host/leftovers.py).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

from fakefs.errors import CliError
from fakefs.host.leftovers import become_subreaper, end_started_here
from fakefs.host.realcgroups import RunCgroups, own_cgroups, read_own_cgroups
from fakefs.host.sysmount import unshare_mount_namespace
from fakefs.manager.apply import apply, undo_all
from fakefs.manager.limits import controllers, join, parse_limits, prepare
from fakefs.manager.plan import make_plan
from fakefs.manager.profile import load
from fakefs.model.procviews import VIEW_PATHS
from fakefs.runtime import registry
from fakefs.runtime.daemons import stop
from fakefs.runtime.rundir import namespace_path
from fakefs.runtime.statefile import forget_all

RUN_FAILED = 125
CANNOT_EXECUTE = 126
NOT_FOUND = 127


def stage_dir(profile: str) -> str:
    return namespace_path("stage", f"-{profile}")


# The profile --limit implies when none is given: every hierarchy fake.
LIMITS_PROFILE = "cgroup-v1-fake"
# The profile of `run -- CMD` with neither --profile nor --limit: what a
# worker node's kubelet needs (authentic cgroups first, its sysctls, /dev/kmsg).
DEFAULT_PROFILE = "kubelet"


def default_profile(profile_name: str | None, limited: bool) -> str:
    return profile_name or (LIMITS_PROFILE if limited else DEFAULT_PROFILE)


def _start(command: list[str], cgroups: RunCgroups, join_files: list[str]) -> subprocess.Popen:
    def enter() -> None:
        # From its first instruction the command is in its cgroups: the real
        # children run made (so /proc/self/cgroup names them), then the fake
        # ones (so the fake lists it there).
        cgroups.join()
        join(join_files)

    try:
        return subprocess.Popen(command, preexec_fn=enter)
    except FileNotFoundError:
        raise CliError(f"fakefs: run: {command[0]}: command not found", NOT_FOUND) from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR, errno.EPERM):
            raise CliError(f"fakefs: run: {command[0]}: cannot execute: {exc.strerror}", CANNOT_EXECUTE) from None
        raise CliError(f"fakefs: run: {command[0]}: {exc.strerror}", RUN_FAILED) from None
    except subprocess.SubprocessError as exc:
        raise CliError(f"fakefs: run: cannot put {command[0]} in its cgroups: {exc}", RUN_FAILED) from None


def _wait(child: subprocess.Popen) -> int:
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {s: signal.signal(s, lambda n, _f: child.send_signal(n)) for s in forwarded}
    try:
        code = child.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 128 - code if code < 0 else code


def _end_everything(stage: str, cgroups: RunCgroups) -> list[str]:
    """Stop the daemons the command started (newest first), undo the
    profile, end every process left, remove the real cgroups. Returns
    problems."""
    problems: list[str] = []
    theirs = [r for r in registry.all_records() if not r.target.startswith(stage.rstrip("/") + "/")]
    for record in sorted(theirs, key=lambda r: r.started, reverse=True):
        try:
            stop(record.target)
        except CliError as exc:
            problems.append(str(exc).removeprefix("fakefs: "))
    problems += undo_all()
    left = end_started_here(also=cgroups.members)
    if left:
        problems.append(f"processes {', '.join(map(str, sorted(left)))} outlived SIGKILL")
    problems += cgroups.remove()
    forget_all()  # this namespace ends with the command
    return problems


def choose_views(profile, limited: bool, wanted: bool) -> None:
    """``--limit``: CMD and its children see their limits in /proc too (the
    lxcfs-style views of every file, each following its reader's cgroups);
    ``--no-proc-views`` drops every view, the profile's own included."""
    if not wanted:
        profile.procviews = []
    elif limited:
        profile.procviews = list(VIEW_PATHS)
        profile.procviews_limits = "reader"


def run(profile_name: str | None, command: list[str], quiet: bool = True, backend: str = "auto",
        limit_specs: list[str] | None = None, proc_views: bool = True) -> int:
    if not command:
        raise CliError("fakefs: run needs a command after --")
    limits = parse_limits(limit_specs or [])  # one-line errors before anything is mounted
    profile = load(default_profile(profile_name, bool(limits)))
    limits = {**parse_limits(profile.limits), **limits}
    choose_views(profile, bool(limits), proc_views)
    try:
        # No propagation change is needed for privacy of new mounts in
        # gVisor; unshare_mount_namespace tolerates its refusal.
        unshare_mount_namespace()
    except OSError as exc:
        raise CliError(f"fakefs: cannot create a mount namespace: {exc.strerror}") from None
    become_subreaper()
    # Saved trees are per mount namespace; one with this brand-new
    # namespace's id can only be left from a dead one whose id was reused.
    forget_all()
    stage = stage_dir(profile.name)
    cgroups = RunCgroups(f"fakefs-run-{os.getpid()}")
    try:
        own = None
        if limits:
            # Before the fake tree covers the real hierarchies.
            problems = cgroups.mount_unlisted(controllers(limits), profile.cgroup_target)
            if problems:
                raise CliError(f"fakefs: --limit {problems[0]}")
            own = own_cgroups(read_own_cgroups())
            try:
                own.update(cgroups.make_children(list(own)))
            except OSError as exc:
                raise CliError(f"fakefs: --limit: cannot make a child cgroup for the command: "
                               f"{exc.strerror}: {exc.filename}") from None
        message = apply(make_plan(profile, stage, backend=backend, command_cgroups=own))
        if not quiet:
            print(message, flush=True)
        join_files = prepare(limits, profile.cgroup_target, own) if limits else []
        return _wait(_start(command, cgroups, join_files))
    finally:
        problems = _end_everything(stage, cgroups)
        if problems:
            print(f"fakefs: run: cleaning up left problems: {'; '.join(problems)}", file=sys.stderr)
