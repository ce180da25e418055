"""The ``fakefs`` command line. Errors are one line on stderr and a non-zero
exit; no traceback reaches the user."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from fakefs import __version__
from fakefs.errors import CliError

DEFAULT_TARGET = "/sys/fs/cgroup"
USAGE_ERROR = 2
RUN_FAILED = 125  # `run`: fakefs itself failed (docker's and env's convention)
DEBUG_ENV = "FAKEFS_DEBUG"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too, with the exit status of the command
    (``run`` uses 125 for every failure of fakefs itself)."""

    usage_status = USAGE_ERROR

    def error(self, message: str):
        where = self.prog.removeprefix("fakefs").strip()
        self.exit(self.usage_status, f"fakefs: {where + ': ' if where else ''}{message} "
                                     f"(see `{self.prog} --help`)\n")


# The rule `mount` and `apply` follow (fakefs/host/hiding.py), for --help.
WHERE_IT_MOUNTS = """\
where fakefs mounts:
  In a mount namespace of its own (`fakefs run`, `unshare -m`) and in a gVisor
  sandbox: anywhere. In the init system's namespace (PID 1's): wherever the mount
  hides nothing the running system uses (an empty directory, a tmpfs with no
  cgroup mounts under it, any directory outside the kernel's file systems). It
  refuses, saying what it would hide and the way out, where it would hide live
  cgroup hierarchies from the init system (a systemd host's /sys/fs/cgroup) or
  other kernel files (e.g. /proc/sys/kernel); --in-place mounts there anyway."""

RUN_EPILOG = """\
limits (docker's meaning; for programs that read cgroup v1 limits by path):
  memory=SIZE   memory.limit_in_bytes: bytes or docker's sizes (512m, 512MiB, 1.5G)
  cpus=N        cpu.cfs_quota_us = N x cpu.cfs_period_us (100000): cpus=1.5
  pids=N        pids.max
  CMD runs in a fresh child cgroup of each real hierarchy it would otherwise sit
  at the root of (made and removed by fakefs), where the fake shows the limits.

exit status: CMD's own; 125 when fakefs itself fails, 126 when CMD cannot be
executed, 127 when it is not found. Everything started inside run ends with it."""


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds between 0 and 3600")
    return value


def _parser() -> argparse.ArgumentParser:
    from fakefs.backends import AUTO_ORDER

    backends = ["auto", *AUTO_ORDER]
    backend_help = (f"{', '.join(backends)} (default auto: tries {', '.join(AUTO_ORDER)} in that order; "
                    "`fakefs probe` says which one it picks here)")
    raw = argparse.RawDescriptionHelpFormatter
    p = _Parser(prog="fakefs", description="A kernel-exact fake cgroup v1 and /proc/sys filesystem.")
    p.add_argument("--version", action="version", version=f"fakefs {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # Every subcommand that reads profiles takes --profiles.
    prof = argparse.ArgumentParser(add_help=False)
    prof.add_argument("--profiles", metavar="DIR", action="append", default=[],
                      help="a directory of your own PROFILE.toml files, searched before $FAKEFS_PROFILES and "
                           "the profiles shipped with fakefs (repeatable)")

    m = sub.add_parser("mount", help="mount a fake tree (default: cgroup v1 at /sys/fs/cgroup)",
                       description="Mount the fake cgroup v1 tree at TARGET; prints one line (target, backend,\n"
                                   "pid) once it is ready.", epilog=WHERE_IT_MOUNTS, formatter_class=raw)
    m.add_argument("target", nargs="?", default=DEFAULT_TARGET, metavar="TARGET",
                   help=f"the directory to mount on (default: {DEFAULT_TARGET})")
    m.add_argument("--backend", default="auto", choices=backends, metavar="BACKEND", help=backend_help)
    m.add_argument("--tree", choices=["cgroup"], default="cgroup", help="what to serve: cgroup (the only tree)")
    m.add_argument("--hierarchy", action="append", dest="hierarchies", metavar="SPEC",
                   help="a hierarchy to serve, e.g. 'cpu,cpuacct' or 'name=systemd' (repeatable; "
                        "default: the systemd layout with every controller)")
    m.add_argument("--cpus", metavar="LIST", help="CPUs the root cpuset shows instead of this machine's (e.g. 0-3)")
    m.add_argument("--foreground", action="store_true", help="serve in this process until unmounted")
    m.add_argument("--in-place", action="store_true",
                   help="mount even where it would hide live cgroup hierarchies or kernel files from the "
                        "init system (see below)")
    m.add_argument("--dry-run", action="store_true",
                   help="print the layout the tree would have at TARGET, and why; mount nothing")

    u = sub.add_parser("umount", help="unmount a fake tree and stop its daemon")
    u.add_argument("target", nargs="?", default=DEFAULT_TARGET, metavar="TARGET",
                   help=f"where it is mounted (default: {DEFAULT_TARGET})")
    u.add_argument("--all", action="store_true",
                   help="undo every applied profile (reverse order, from the journal) and stop every daemon")
    u.add_argument("--forget", action="store_true",
                   help="also discard the saved state (tree, values, memberships) instead of keeping it "
                        "for the next mount of the same target")

    a = sub.add_parser("apply", parents=[prof], epilog=WHERE_IT_MOUNTS, formatter_class=raw,
                       help="apply a mount profile (authentic first, fake fills gaps); see `fakefs profiles`")
    a.add_argument("profile", metavar="PROFILE",
                   help="a profile name (`fakefs profiles` lists them; no default) or a path to a .toml file")
    a.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    a.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    a.add_argument("--backend", default="auto", choices=backends, metavar="BACKEND",
                   help="backend of the daemons it starts: " + backend_help)
    a.add_argument("--in-place", action="store_true",
                   help="apply even where it would hide live cgroup hierarchies or kernel files from the "
                        "init system (see below)")

    r = sub.add_parser("run", parents=[prof], epilog=RUN_EPILOG, formatter_class=raw,
                       help="run CMD in a private mount namespace with a profile applied",
                       description="Run CMD in a mount namespace of its own with a profile applied; all of it "
                                   "is undone when CMD exits.")
    r.usage_status = RUN_FAILED
    r.add_argument("--profile", metavar="PROFILE",
                   help="the profile to apply (default: kubelet; with --limit and no --profile: cgroup-v1-fake)")
    r.add_argument("--backend", default="auto", choices=backends, metavar="BACKEND",
                   help="backend of the daemons it starts: " + backend_help)
    r.add_argument("--verbose", action="store_true", help="say what was applied before CMD starts")
    r.add_argument("--limit", action="append", dest="limits", metavar="KEY=VALUE", default=[],
                   help="memory=SIZE, cpus=N or pids=N, seen by CMD at its own cgroup paths (repeatable; "
                        "see below); /proc/meminfo, /proc/cpuinfo, /proc/stat, ... then follow each reader's "
                        "limits (lxcfs-style views)")
    r.add_argument("--no-proc-views", action="store_true",
                   help="bind no /proc views (neither --limit's nor the profile's)")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="the command to run")

    sub.add_parser("profiles", parents=[prof], help="list the available profiles (yours first, then the shipped ones)")

    pr = sub.add_parser("probe", help="what this sandbox allows: each check, the backend auto picks, "
                                      "what still stops kubelet and runc (exit 1: no backend works)")
    pr.add_argument("--json", action="store_true", help="one JSON object (keys documented in README)")
    pr.add_argument("--budget", type=_positive_seconds, metavar="SECONDS",
                    help="end within SECONDS (default 4.5); every check's deadline scales with it")

    s = sub.add_parser("status", help="what fakefs has mounted in this mount namespace")
    s.add_argument("--json", action="store_true", help='one JSON object: {"mounts": [...]}')
    return p


def cmd_mount(args) -> int:
    from fakefs.manager.layout import mount_layout
    from fakefs.runtime import registry, rundir
    from fakefs.runtime.serving import MountRequest
    from fakefs.runtime.daemons import check_target, start
    from fakefs.model.errors import KernelError
    from fakefs.model.tree import lay_out

    try:  # once, before any backend is tried, as mount_layout() lays them out
        lay_out(args.hierarchies or [])
    except KernelError as exc:
        raise _cli_error(f"fakefs: --hierarchy: {exc.detail}")
    host = _host_overrides(args)
    if args.dry_run:
        target = os.path.realpath(args.target)
        print(mount_layout(target, args.hierarchies).describe(target))
        return 0
    target = check_target(args.target, args.in_place)
    rundir.ensure_usable()
    layout = mount_layout(target, args.hierarchies)
    extra = {"host": host} if host else {}
    if layout.model_layout():
        extra["layout"] = layout.model_layout()
    if layout.authentic:
        extra["authentic"] = layout.authentic
    code = start(MountRequest(target=target, tree=args.tree, backend=args.backend,
                              hierarchies=layout.hierarchies, extra=extra),
                 foreground=args.foreground)
    record = registry.load(target)
    if not args.foreground and record is not None:
        print(f"fakefs: mounted {record.tree} at {target} (backend {record.backend}, pid {record.pid})")
    return code


def _host_overrides(args) -> dict:
    """--cpus, parsed like the kernel parses cpulists."""
    from fakefs.model.errors import KernelError
    from fakefs.model.kparse import parse_cpulist

    out: dict = {}
    if args.cpus is not None:
        try:
            cpus = sorted(parse_cpulist(args.cpus, 1 << 16))
        except KernelError:
            cpus = []
        if not cpus:
            raise _cli_error(f"fakefs: --cpus {args.cpus!r} is not a CPU list like 0-3,6")
        out["cpus"] = cpus
    return out


def cmd_umount(args) -> int:
    from fakefs.runtime import registry, rundir
    from fakefs.runtime.daemons import stop

    _require_root()  # the run directory and the mounts are root's
    rundir.listing()  # a one-line error when the run directory cannot be read
    if args.all:
        from fakefs.manager.apply import undo_all
        from fakefs.runtime import journal

        profiles = [record["profile"] for record in journal.read()]
        problems = undo_all()
        daemons = registry.all_records()
        for rec in daemons:
            stop(rec.target, forget=args.forget)
        if args.forget:
            from fakefs.runtime.statefile import forget_all

            forget_all()
        if problems:
            raise CliError("fakefs: undo left problems: " + "; ".join(problems))
        done = ([f"undid profile{'s' if len(profiles) > 1 else ''} {', '.join(profiles)}"] if profiles else []) + \
               ([f"unmounted {', '.join(rec.target for rec in daemons)}"] if daemons else [])
        print(f"fakefs: {'; '.join(done)}" if done else "fakefs: nothing mounted")
        return 0
    print(stop(args.target, forget=args.forget))
    return 0


def _profile(name: str):
    from fakefs.manager.profile import ProfileError, load

    try:
        return load(name)
    except ProfileError as exc:
        raise CliError(f"fakefs: {exc}") from None


def cmd_apply(args) -> int:
    from fakefs.host.hiding import WAY_OUT
    from fakefs.manager.apply import apply, plan_refusal
    from fakefs.manager.plan import make_plan
    from fakefs.manager.run import stage_dir
    from fakefs.runtime import rundir

    if args.json and not args.dry_run:
        raise CliError("fakefs: apply --json prints the plan: use it with --dry-run")
    # Planning probes which cgroup controllers can be mounted: without root
    # the plan would not be the one apply carries out.
    _require_root()
    profile = _profile(args.profile)
    plan = make_plan(profile, stage_dir(profile.name), backend=args.backend)
    refused = None if args.in_place else plan_refusal(plan)
    if args.dry_run:
        if args.json:
            print(json.dumps({"profile": plan.profile, "stage": plan.stage,
                              "steps": [s.to_json() for s in plan.steps], "refused": refused}, indent=2))
        else:
            print(plan.describe())
            if refused:
                print(f"apply would refuse this here: {refused}; {WAY_OUT}")
        return 0
    if refused:
        raise CliError(f"fakefs: refusing to apply {profile.name}: {refused}; {WAY_OUT}")
    rundir.ensure_usable()
    print(apply(plan))
    return 0


def _require_root() -> None:
    if os.geteuid() != 0:
        raise CliError("fakefs: must run as root")


def cmd_run(args) -> int:
    from fakefs.manager.limits import parse_limits
    from fakefs.manager.run import run
    from fakefs.runtime import rundir

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if args.profile:
        parse_limits(_profile(args.profile).limits)
    parse_limits(args.limits)
    _require_root()
    rundir.ensure_usable()
    return run(args.profile, cmd, quiet=not args.verbose, backend=args.backend, limit_specs=args.limits,
               proc_views=not args.no_proc_views)


def cmd_profiles(args) -> int:
    from fakefs.manager.profile import ProfileError, available, find, load, shipped_dir, user_dirs

    try:
        names = available()
    except ProfileError as exc:
        raise CliError(f"fakefs: {exc}") from None
    if not names:
        searched = user_dirs() + [str(shipped_dir())]
        raise CliError(f"fakefs: no profiles found (searched {', '.join(searched)})")
    broken = []
    for name in names:
        try:
            text = load(name).description
        except ProfileError as exc:
            broken.append(name)
            text = f"INVALID: {exc}"
        where = os.path.dirname(str(find(name)))
        print(f"{name}\t{text}" + ("" if where == str(shipped_dir()) else f"\t(from {where})"))
    if broken:
        raise CliError(f"fakefs: invalid profile{'s' if len(broken) > 1 else ''}: {', '.join(broken)}")
    return 0


def cmd_status(args) -> int:
    from fakefs.runtime import registry

    _require_root()  # the run directory is root's: another user would see nothing
    rows = []
    for rec in registry.all_records():
        state = "running" if rec.alive and not registry.is_stale(rec.target) else "stale"
        rows.append({"target": rec.target, "backend": rec.backend, "tree": rec.tree, "pid": rec.pid,
                     "state": state, "log": rec.log})
    if args.json:
        print(json.dumps({"mounts": rows}, indent=2))
    elif not rows:
        print("fakefs: nothing mounted")
    else:
        table = [("TARGET", "TREE", "BACKEND", "PID", "STATE", "LOG")]
        table += [(r["target"], r["tree"], r["backend"], str(r["pid"]), r["state"], r["log"] or "-") for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
        for row in table:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def cmd_probe(args) -> int:
    from fakefs.probe import main as probe_main

    return probe_main(as_json=args.json, budget=args.budget)


def _cli_error(message: str):

    return CliError(message)


COMMANDS = {"mount": cmd_mount, "umount": cmd_umount, "status": cmd_status, "apply": cmd_apply,
            "run": cmd_run, "profiles": cmd_profiles, "probe": cmd_probe}


def _subcommand(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Every failure ends as one line ``fakefs: ...`` on stderr: CliError as
    written, a profile error, an OSError with its file, and anything
    unexpected with its type (``FAKEFS_DEBUG=1`` shows the traceback)."""
    from fakefs.errors import Reason

    parser = _parser()
    if _subcommand(sys.argv[1:] if argv is None else argv) == "run":
        parser.usage_status = RUN_FAILED  # its unknown options are reported by the top parser
    args = parser.parse_args(argv)
    if not args.command:
        _parser().print_usage(sys.stderr)
        return USAGE_ERROR
    try:
        for directory in reversed(getattr(args, "profiles", [])):
            from fakefs.manager.profile import add_user_dir

            add_user_dir(directory)
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`fakefs ... | head`): end quietly, as a
        # program killed by SIGPIPE does, without a second error at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as exc:
        if isinstance(exc, CliError):
            message, code = str(exc), exc.code
        elif isinstance(exc, Reason):
            message, code = f"fakefs: {exc}", 1
        elif isinstance(exc, OSError):
            where = f": {exc.filename}" if exc.filename else ""
            message, code = f"fakefs: {exc.strerror or exc}{where}", 1
        else:
            if os.environ.get(DEBUG_ENV):
                raise
            message = (f"fakefs: internal error: {type(exc).__name__}: {exc} "
                       f"(run again with {DEBUG_ENV}=1 for the traceback)")
            code = 1
        if args.command == "run" and code == 1:
            code = RUN_FAILED
        print(_one_line(message), file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
