"""Carrying out a plan, and undoing it."""

from __future__ import annotations

import errno
import json
import os

from fakefs.runtime import registry
from fakefs.runtime.serving import MountRequest
from fakefs.errors import CliError
from fakefs.runtime.daemons import is_stale, start, stop
from fakefs.host.hiding import refusal
from fakefs.host.sysmount import MS_NODEV, MS_NOEXEC, MS_NOSUID, bind, mount, umount
from fakefs.runtime import journal
from fakefs.manager.plan import NO_CHANGE, Plan, Step


def _do(step: Step, plan: Plan) -> dict | None:
    """Perform one step; return what undo needs (None: nothing to undo)."""
    a, t = step.action, step.target
    if a in NO_CHANGE:
        return None
    if a == "mkdir":
        if os.path.isdir(t):
            return None
        os.makedirs(t, mode=0o755)
        return {"undo": "rmdir"}
    if a == "touch":
        os.close(os.open(t, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return {"undo": "unlink"}
    if a == "symlink":
        if os.path.islink(t) and os.readlink(t) == step.source:
            return None
        os.symlink(step.source, t)
        return {"undo": "unlink"}
    if a == "mount-tmpfs":
        mount("tmpfs", t, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, step.options.get("data"))
        return {"undo": "umount"}
    if a == "mount-cgroup":
        fstype = step.options.get("fstype", "cgroup")
        mount(fstype, t, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, step.options["fstype_options"] or None)
        return {"undo": "umount"}
    if a == "bind":
        bind(step.source, t)
        return {"undo": "umount"}
    if a == "start-daemon":
        spec_path = os.path.join(plan.stage, f"{os.path.basename(t)}.spec.json")
        with open(spec_path, "w") as f:
            json.dump(step.options, f)
        extra = {"spec": spec_path, "runtimes": True} if step.options.get("runtimes") else {"spec": spec_path}
        request = MountRequest(target=t, tree=step.options["tree"], backend=step.options.get("backend", "auto"),
                               hierarchies=step.options.get("hierarchies"), extra=extra,
                               subtree_of=step.options.get("subtree_of"))
        try:
            start(request)
        except BaseException:
            os.unlink(spec_path)  # nothing else of this step is left to undo
            raise
        rec = registry.load(t)
        return {"undo": "stop-daemon", "pid": rec.pid if rec else 0, "spec": spec_path}
    raise CliError(f"fakefs: unknown plan step {a!r}")


MOUNTING_STEPS = ("mount-tmpfs", "mount-cgroup", "bind")


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def plan_refusal(plan: Plan) -> str | None:
    """Why applying ``plan`` here is refused (fakefs/host/hiding.py: what
    its mounts would hide from the running system), or None. Not counted:
    mounts in the plan's own staging directory, merged views (they show
    every real entry of what they cover), and authentic mounts the plan
    puts back where they were (stashed, then bound at their mount point)."""
    binds = [s for s in plan.steps if s.action == "bind"]
    put_back = frozenset(b.target for b in binds
                         if any(o.source == b.target and o.target == b.source for o in binds))
    views = [s.target for s in plan.steps if s.action == "start-daemon" and s.options.get("tree") == "overlay"]
    covered = [s.target for s in plan.steps
               if s.action in MOUNTING_STEPS and not _below(s.target, plan.stage)
               and not (s.action == "bind" and any(_below(s.source, v) for v in views))]
    return refusal(covered, keep=put_back)


def _undo_one(entry: dict) -> str | None:
    """Undo one journaled step; returns a problem description or None."""
    how, t = entry.get("undo"), entry["target"]
    try:
        if how == "umount":
            umount(t, detach=True)
        elif how == "stop-daemon":
            stop(t)
            if entry.get("spec"):
                os.unlink(entry["spec"])
        elif how == "rmdir":
            os.rmdir(t)
        elif how == "unlink":
            os.unlink(t)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINVAL, errno.ENOTCONN):
            return None  # already gone (e.g. its parent tmpfs was unmounted)
        return f"{how} {t}: {exc.strerror}"
    except CliError as exc:
        return str(exc)
    return None


def undo(applied: dict) -> list[str]:
    problems = []
    for entry in reversed(applied.get("done", [])):
        p = _undo_one(entry)
        if p:
            problems.append(p)
    return problems


def is_applied(record: dict) -> bool:
    """Every daemon it started still serves and nothing is stale."""
    for entry in record.get("done", []):
        if entry.get("undo") == "stop-daemon":
            rec = registry.load(entry["target"])
            if rec is None or not rec.alive or is_stale(entry["target"]):
                return False
        if entry.get("undo") == "umount" and is_stale(entry["target"]):
            return False
    return True


def apply(plan: Plan) -> str:
    applied = journal.read()
    for record in applied:
        if record["profile"] == plan.profile:
            if is_applied(record):
                return f"fakefs: profile {plan.profile} is already applied"
            undo(record)  # a killed daemon left stale mounts: start over
            applied.remove(record)
            journal.write(applied)
            break
    record = {"profile": plan.profile, "stage": plan.stage, "done": []}
    applied.append(record)
    for step in plan.steps:
        try:
            result = _do(step, plan)
        except (OSError, CliError) as exc:
            problems = undo(record)
            applied.remove(record)
            journal.write(applied)
            reason = exc.strerror if isinstance(exc, OSError) else str(exc).removeprefix("fakefs: ")
            extra = f" (undo problems: {'; '.join(problems)})" if problems else ""
            raise CliError(f"fakefs: step failed: {step.action} {step.target}: {reason}{extra}") from None
        if result is not None:
            record["done"].append({**step.to_json(), **result})
            journal.write(applied)
    return f"fakefs: applied profile {plan.profile} ({len(plan.steps)} steps)"


def undo_all() -> list[str]:
    applied = journal.read()
    problems: list[str] = []
    while applied:
        record = applied.pop()
        problems += undo(record)
        journal.write(applied)
    return problems
