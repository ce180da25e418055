"""The ``fakefs`` command line. Errors are one line on stderr and a non-zero
exit; no traceback reaches the user."""

from __future__ import annotations

import argparse
import json
import os
import sys

from fakefs import __version__
from fakefs.errors import CliError

DEFAULT_TARGET = "/sys/fs/cgroup"


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds between 0 and 3600")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fakefs", description="A kernel-exact fake cgroup v1 and /proc/sys filesystem.")
    p.add_argument("--version", action="version", version=f"fakefs {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("mount", help="mount a fake tree (default: cgroup v1 at /sys/fs/cgroup)")
    m.add_argument("target", nargs="?", default=DEFAULT_TARGET)
    m.add_argument("--backend", default="auto", help="auto (default: pyfuse3, then fallbacks), or one backend by name")
    m.add_argument("--tree", choices=["cgroup"], default="cgroup")
    m.add_argument("--hierarchy", action="append", dest="hierarchies", metavar="SPEC",
                   help="a hierarchy to serve, e.g. 'cpu,cpuacct' or 'name=systemd' (repeatable; "
                        "default: the systemd layout with every controller)")
    m.add_argument("--cpus", metavar="LIST", help="CPUs the root cpuset shows instead of this machine's (e.g. 0-3)")
    m.add_argument("--foreground", action="store_true", help="serve in this process until unmounted")
    m.add_argument("--in-place", action="store_true",
                   help="allow mounting over a system path in the host's mount namespace")
    m.add_argument("--dry-run", action="store_true",
                   help="print the layout the tree would have at TARGET, and why; mount nothing")

    u = sub.add_parser("umount", help="unmount a fake tree and stop its daemon")
    u.add_argument("target", nargs="?", default=DEFAULT_TARGET)
    u.add_argument("--all", action="store_true",
                   help="undo every applied profile (reverse order, from the journal) and stop every daemon")
    u.add_argument("--forget", action="store_true",
                   help="also discard the saved state (tree, values, memberships) instead of keeping it "
                        "for the next mount of the same target")

    a = sub.add_parser("apply", help="apply a mount profile from mounts/ (authentic first, fake fills gaps)")
    a.add_argument("profile")
    a.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    a.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    a.add_argument("--backend", default="auto", help="backend of the daemons it starts (auto, or one by name)")
    a.add_argument("--in-place", action="store_true",
                   help="allow overlaying system paths in the host's mount namespace")

    r = sub.add_parser("run", help="run CMD in a private mount namespace with a profile applied")
    r.add_argument("--profile")
    r.add_argument("--backend", default="auto", help="backend of the daemons it starts (auto, or one by name)")
    r.add_argument("--verbose", action="store_true")
    r.add_argument("--limit", action="append", dest="limits", metavar="KEY=VALUE", default=[],
                   help="memory=SIZE or cpus=N: set at CMD's own cgroup paths in the fake tree, for programs "
                        "that read cgroup v1 limits (implies --profile cgroup-v1-fake; repeatable); /proc/meminfo, "
                        "/proc/cpuinfo, /proc/stat, ... then follow each reader's limits (lxcfs-style views)")
    r.add_argument("--no-proc-views", action="store_true",
                   help="bind no /proc views (neither --limit's nor the profile's)")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    sub.add_parser("profiles", help="list the available profiles")

    pr = sub.add_parser("probe", help="what this sandbox allows: each check, the backend auto picks, "
                                      "what still stops kubelet and runc (exit 1: no backend works)")
    pr.add_argument("--json", action="store_true", help="one JSON object (keys documented in README)")
    pr.add_argument("--budget", type=_positive_seconds, metavar="SECONDS",
                    help="end within SECONDS (default 4.5); every check's deadline scales with it")

    s = sub.add_parser("status", help="what fakefs has mounted in this mount namespace")
    s.add_argument("--json", action="store_true")
    return p


def cmd_mount(args) -> int:
    from fakefs.runtime.serving import MountRequest
    from fakefs.runtime.daemons import check_target, start
    from fakefs.model.errors import KernelError
    from fakefs.model.tree import lay_out
    from fakefs.manager.layout import mount_layout

    _check_backend(args.backend)
    try:
        lay_out(args.hierarchies or [])  # as mount_layout() lays out hierarchies asked for
    except KernelError as exc:
        raise _cli_error(f"fakefs: --hierarchy: {exc.detail}")
    host = _host_overrides(args)
    if args.dry_run:
        target = os.path.realpath(args.target)
        print(mount_layout(target, args.hierarchies).describe(target))
        return 0
    target = check_target(args.target, args.in_place)
    layout = mount_layout(target, args.hierarchies)
    extra = {"host": host} if host else {}
    if layout.model_layout():
        extra["layout"] = layout.model_layout()
    if layout.authentic:
        extra["authentic"] = layout.authentic
    return start(MountRequest(target=target, tree=args.tree, backend=args.backend,
                              hierarchies=layout.hierarchies, extra=extra),
                 foreground=args.foreground)


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
    from fakefs.runtime import registry
    from fakefs.runtime.daemons import stop

    if args.all:
        from fakefs.manager.apply import undo_all

        problems = undo_all()
        for rec in registry.all_records():
            stop(rec.target, forget=args.forget)
        if args.forget:
            from fakefs.runtime.statefile import forget_all

            forget_all()
        if problems:
            raise CliError("fakefs: undo left problems: " + "; ".join(problems))
        print("fakefs: everything unmounted")
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
    from fakefs.manager.apply import apply
    from fakefs.manager.plan import NO_CHANGE, make_plan
    from fakefs.manager.run import stage_dir
    from fakefs.runtime.daemons import SYSTEM_PREFIXES
    from fakefs.host.sysmount import in_private_mount_namespace

    profile = _profile(args.profile)
    _check_backend(args.backend)
    plan = make_plan(profile, stage_dir(profile.name), backend=args.backend)
    if args.dry_run:
        if args.json:
            print(json.dumps({"profile": plan.profile, "stage": plan.stage,
                              "steps": [s.to_json() for s in plan.steps]}, indent=2))
        else:
            print(plan.describe())
        return 0
    touches_system = any(s.action not in NO_CHANGE and s.target.startswith(SYSTEM_PREFIXES)
                         for s in plan.steps)
    if touches_system and not in_private_mount_namespace() and not args.in_place:
        raise CliError("fakefs: refusing to overlay system paths in the host's mount namespace "
                       "(use `fakefs run`, a private namespace, or --in-place)")
    if os.geteuid() != 0:
        raise CliError("fakefs: must run as root")
    print(apply(plan))
    return 0


def cmd_run(args) -> int:
    from fakefs.manager.run import run

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if args.profile:
        profile = _profile(args.profile)
        if profile.limits:
            from fakefs.manager.limits import parse_limits

            parse_limits(profile.limits)
    if args.limits:
        from fakefs.manager.limits import parse_limits

        parse_limits(args.limits)
    _check_backend(args.backend)
    if os.geteuid() != 0:

        raise CliError("fakefs: must run as root")
    return run(args.profile, cmd, quiet=not args.verbose, backend=args.backend, limit_specs=args.limits,
               proc_views=not args.no_proc_views)


def cmd_profiles(args) -> int:
    from fakefs.manager.profile import available

    for name in available():
        print(f"{name}\t{_profile(name).description}")
    return 0


def cmd_status(args) -> int:
    from fakefs.runtime import registry
    from fakefs.runtime.daemons import is_stale

    rows = []
    for rec in registry.all_records():
        state = "running" if rec.alive and not is_stale(rec.target) else "stale"
        rows.append({"target": rec.target, "backend": rec.backend, "tree": rec.tree, "pid": rec.pid,
                     "state": state, "log": rec.log})
    if args.json:
        print(json.dumps({"mounts": rows}, indent=2))
    elif not rows:
        print("fakefs: nothing mounted")
    else:
        for r in rows:
            print(f"{r['target']}\t{r['tree']}\t{r['backend']}\tpid {r['pid']}\t{r['state']}")
    return 0


def cmd_probe(args) -> int:
    from fakefs.probe import main as probe_main

    return probe_main(as_json=args.json, budget=args.budget)


def _check_backend(name: str) -> None:
    from fakefs.backends import BACKENDS

    if name != "auto" and name not in BACKENDS:
        raise _cli_error(f"fakefs: unknown backend {name!r} (known: auto, {', '.join(sorted(BACKENDS))})")


def _cli_error(message: str):

    return CliError(message)


COMMANDS = {"mount": cmd_mount, "umount": cmd_umount, "status": cmd_status, "apply": cmd_apply,
            "run": cmd_run, "profiles": cmd_profiles, "probe": cmd_probe}


def main(argv: list[str] | None = None) -> int:

    args = _parser().parse_args(argv)
    if not args.command:
        _parser().print_usage(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"fakefs: {exc.strerror or exc}{': ' + exc.filename if exc.filename else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
