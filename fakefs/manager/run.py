"""``fakefs run``: a command in a private mount namespace with a profile
applied, torn down when it exits, exiting with its status."""

from __future__ import annotations

import signal
import subprocess

from fakefs.errors import CliError
from fakefs.runtime.rundir import namespace_path
from fakefs.runtime.statefile import forget_all
from fakefs.host.sysmount import unshare_mount_namespace
from fakefs.manager.apply import apply, undo_all
from fakefs.manager.limits import join, parse_limits, prepare
from fakefs.manager.plan import make_plan
from fakefs.manager.profile import load
from fakefs.model.procviews import VIEW_PATHS


def stage_dir(profile: str) -> str:
    return namespace_path("stage", f"-{profile}")


# The profile --limit implies when none is given: every hierarchy fake.
LIMITS_PROFILE = "cgroup-v1-fake"


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
    if limits and not profile_name:
        profile_name = LIMITS_PROFILE
    profile = load(profile_name) if profile_name else None
    if profile is not None:
        limits = {**parse_limits(profile.limits), **limits}
        choose_views(profile, bool(limits), proc_views)
    try:
        # No propagation change is needed for privacy of new mounts in
        # gVisor; unshare_mount_namespace tolerates its refusal.
        unshare_mount_namespace()
    except OSError as exc:
        raise CliError(f"fakefs: cannot create a mount namespace: {exc.strerror}") from None
    # Saved trees are per mount namespace; one with this brand-new
    # namespace's id can only be left from a dead one whose id was reused.
    forget_all()
    try:
        if profile is not None:
            message = apply(make_plan(profile, stage_dir(profile.name), backend=backend))
            if not quiet:
                print(message)
        join_files = prepare(limits, profile.cgroup_target) if limits else []
        try:
            # The command joins its fake cgroups before exec: from its first
            # instruction the fake lists it there.
            child = subprocess.Popen(command, preexec_fn=(lambda: join(join_files)) if join_files else None)
        except OSError as exc:
            raise CliError(f"fakefs: cannot run {command[0]}: {exc.strerror}") from None
        forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {s: signal.signal(s, lambda n, _f: child.send_signal(n)) for s in forwarded}
        try:
            code = child.wait()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        return 128 - code if code < 0 else code
    finally:
        undo_all()
        forget_all()  # this namespace ends with the command
